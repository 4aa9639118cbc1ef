package report

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"sluice/auth"
	"sluice/server"
	"sluice/store"
	"sluice/store/storetest"
)

// TestHTTP runs the JSON route through the server (roles, errors) and the
// streaming export beside it, mounted the way the head-end mounts it.
func TestHTTP(t *testing.T) {
	db := storetest.OpenSQLite(t, false)
	e := newEnv(t, db, day1)
	story(t, e)
	ctx := context.Background()
	as := auth.NewService(db, auth.Params{Memory: 64, Time: 1, Threads: 1}, nil)
	var admin store.Operator
	if err := db.Tx(ctx, func(tx store.Tx) error {
		var err error
		admin, err = tx.Operators().Create(ctx, store.Operator{Username: "admin", DisplayName: "a", Role: auth.Admin, PasswordHash: "x"})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	key := func(user string) string {
		_, k, err := as.CreateAPIKey(ctx, auth.Principal{Operator: admin}, user, "test")
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	super, cashier := key("super1"), key("cashier1")
	svc := New(db, time.UTC, nil)
	srv := server.New(server.Config{Store: db, Auth: as, Vend: e.svc, Extra: Routes(svc)})
	mux := http.NewServeMux()
	mux.Handle("GET /api/v1/reports/{name}/export", svc.ExportHandler(as))
	mux.Handle("/", srv.Handler())
	ts := httptest.NewServer(mux)
	defer ts.Close()
	get := func(k, path string) (int, string, http.Header) {
		req, _ := http.NewRequest("GET", ts.URL+"/api/v1"+path, nil)
		if k != "" {
			req.Header.Set("Authorization", "Bearer "+k)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), resp.Header
	}
	q := "?from=2026-11-24&to=2026-11-25"
	code, body, _ := get(super, "/reports/vends"+q)
	var doc Document
	if code != 200 || json.Unmarshal([]byte(body), &doc) != nil || len(doc.Rows) != 7 {
		t.Fatalf("JSON route: %d %s", code, body)
	}
	code, body, hd := get(super, "/reports/vends/export"+q)
	recs, err := csv.NewReader(strings.NewReader(body)).ReadAll()
	if code != 200 || err != nil || len(recs) != 9 || !strings.HasPrefix(hd.Get("Content-Type"), "text/csv") {
		t.Fatalf("CSV export: %d %v %d records\n%s", code, err, len(recs), body)
	}
	if got := recs[len(recs)-1][doc.columnIndex("paid_cents")]; got != itoa(doc.Totals["paid_cents"]) {
		t.Fatalf("CSV total %s, JSON %d", got, doc.Totals["paid_cents"])
	}
	code, body, _ = get(super, "/reports/sales/export"+q+"&format=json")
	if code != 200 || json.Unmarshal([]byte(body), &doc) != nil || doc.Report != "sales" {
		t.Fatalf("JSON export: %d %s", code, body)
	}
	for _, c := range []struct {
		key, path string
		code      int
		want      string
	}{
		{cashier, "/reports/vends" + q, 403, "forbidden"},
		{cashier, "/reports/vends/export" + q, 403, "forbidden"},
		{"", "/reports/vends/export" + q, 401, "unauthenticated"},
		{"slk_nonsense", "/reports/vends/export" + q, 401, "unauthenticated"},
		{super, "/reports/nope" + q, 404, "not_found"},
		{super, "/reports/nope/export" + q, 404, "not_found"},
		{super, "/reports/vends?from=2026-11-24", 422, `"field":"to"`},
		{super, "/reports/vends/export?from=yesterday&to=2026-11-25", 422, `"field":"from"`},
		{super, "/reports/settlement" + q + "&supply_group=123457", 422, `"field":"supply_group"`},
		{super, "/reports/vends/export" + q + "&format=xml", 422, `"field":"format"`},
	} {
		code, body, _ := get(c.key, c.path)
		if code != c.code || !strings.Contains(body, c.want) {
			t.Errorf("GET %s: %d %s, want %d with %s", c.path, code, body, c.code, c.want)
		}
	}
}

func (d *Document) columnIndex(name string) int {
	for i, c := range d.Columns {
		if c.Name == name {
			return i
		}
	}
	return -1
}

func itoa(n int64) string { b, _ := json.Marshal(n); return string(b) }
