package webhook

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"sluice/auth"
	"sluice/channel"
	"sluice/report"
	"sluice/server"
	"sluice/server/servertest"
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
	vs := vend.New(vend.Config{Store: db})
	routes := slices.Concat(report.Routes(report.New(db, nil, nil)), channel.Routes(channel.New(db, vs, nil, "")), Routes(NewAdmin(db, nil, nil)))
	srv := server.New(server.Config{Store: db, Auth: as, Vend: vs, Extra: routes})
	ts := httptest.NewServer(srv.Handler())
	defer ts.Close()
	callers := map[string]func(method, path string, body any) (int, []byte){}
	for role, o := range ops {
		_, k, err := as.CreateAPIKey(ctx, auth.Principal{Operator: ops[auth.Admin]}, o.Username, "test")
		if err != nil {
			t.Fatal(err)
		}
		callers[role] = servertest.WithAPIKey(t, ts.URL, k).Do
	}
	callers["anonymous"] = servertest.Anonymous(t, ts.URL).Do
	fill := strings.NewReplacer("{name}", "vends", "{client_id}", "X-1", "{vendor}", "MOMO", "{id}", "1")
	for _, rt := range routes {
		for who, call := range callers {
			var body any // an untyped nil sends no body; a nil RawMessage would send null
			if rt.Method != "GET" {
				body = json.RawMessage("{}")
			}
			code, b := call(rt.Method, fill.Replace(rt.Path), body)
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
