package webhook

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"sluice/auth"
	"sluice/channel"
	"sluice/report"
	"sluice/server"
	"sluice/store"
	"sluice/store/storetest"
	"sluice/vend"
)

// TestRoleMatrix walks every route of the report, channel and webhook
// packages with every role and without credentials: a role outside a
// route's list gets 403, no credentials 401, and a role in it gets past
// the check (whatever the handler then says about the empty request).
func TestRoleMatrix(t *testing.T) {
	db := storetest.OpenSQLite(t, false)
	ctx := context.Background()
	as := auth.NewService(db, auth.Params{Memory: 64, Time: 1, Threads: 1}, nil)
	ops := map[string]store.Operator{}
	err := db.Tx(ctx, func(tx store.Tx) error {
		v, err := tx.Vendors().Create(ctx, store.Vendor{Code: "MOMO", Name: "Mobile money", DailyLimitCents: 1000})
		if err != nil {
			return err
		}
		if err := tx.Channels().Put(ctx, store.Channel{VendorID: v.ID, MaxPurchaseCents: 1000}); err != nil {
			return err
		}
		for _, role := range auth.Roles {
			o := store.Operator{Username: role + "1", DisplayName: role, Role: role, PasswordHash: "x"}
			if role == auth.Vendor {
				o.VendorID = v.ID
			}
			if ops[role], err = tx.Operators().Create(ctx, o); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string]string{"anonymous": ""}
	for role, o := range ops {
		_, k, err := as.CreateAPIKey(ctx, auth.Principal{Operator: ops[auth.Admin]}, o.Username, "test")
		if err != nil {
			t.Fatal(err)
		}
		keys[role] = k
	}
	vs := vend.New(vend.Config{Store: db})
	routes := slices.Concat(report.Routes(report.New(db, nil, nil)), channel.Routes(channel.New(db, vs, nil, "")), Routes(NewAdmin(db, nil, nil)))
	srv := server.New(server.Config{Store: db, Auth: as, Vend: vs, Extra: routes})
	ts := httptest.NewServer(srv.Handler())
	defer ts.Close()
	fill := strings.NewReplacer("{name}", "vends", "{client_id}", "X-1", "{vendor}", "MOMO", "{id}", "1")
	for _, rt := range routes {
		for who, key := range keys {
			var body io.Reader
			if rt.Method != "GET" {
				body = strings.NewReader("{}")
			}
			req, _ := http.NewRequest(rt.Method, ts.URL+"/api/v1"+fill.Replace(rt.Path), body)
			req.Header.Set("Content-Type", "application/json")
			if key != "" {
				req.Header.Set("Authorization", "Bearer "+key)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			code := resp.StatusCode
			switch {
			case rt.Roles == nil:
				t.Errorf("%s %s is public", rt.Method, rt.Path)
			case who == "anonymous":
				if code != 401 {
					t.Errorf("%s %s without credentials: %d %s", rt.Method, rt.Path, code, b)
				}
			case slices.Contains(rt.Roles, who):
				if code == 401 || code == 403 {
					t.Errorf("%s %s as %s (allowed): %d %s", rt.Method, rt.Path, who, code, b)
				}
			default:
				if code != 403 || !strings.Contains(string(b), `"forbidden"`) {
					t.Errorf("%s %s as %s (not allowed): %d %s", rt.Method, rt.Path, who, code, b)
				}
			}
		}
	}
	doc := srv.OpenAPI()
	paths := doc["paths"].(map[string]map[string]any)
	for _, rt := range routes {
		if paths["/api/v1"+rt.Path][strings.ToLower(rt.Method)] == nil {
			t.Errorf("OpenAPI document lacks %s %s", rt.Method, rt.Path)
		}
	}
}
