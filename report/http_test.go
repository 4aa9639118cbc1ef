package report

import (
	"bytes"
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
	"sluice/server/servertest"
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
	sup, cash := servertest.WithAPIKey(t, ts.URL, super), servertest.WithAPIKey(t, ts.URL, cashier)
	q := "?from=2026-11-24&to=2026-11-25"
	var doc Document
	sup.Must(200, "GET", "/reports/vends"+q, nil, &doc)
	if len(doc.Rows) != 7 {
		t.Fatalf("JSON route: %d rows, want 7: %+v", len(doc.Rows), doc)
	}
	code, body, hd := plainGet(t, ts.URL+"/api/v1/reports/vends/export"+q, super)
	recs, err := csv.NewReader(bytes.NewReader(body)).ReadAll()
	if code != 200 || err != nil || len(recs) != 9 || !strings.HasPrefix(hd.Get("Content-Type"), "text/csv") {
		t.Fatalf("CSV export: %d %v %d records\n%s", code, err, len(recs), body)
	}
	if got := recs[len(recs)-1][doc.columnIndex("paid_cents")]; got != itoa(doc.Totals["paid_cents"]) {
		t.Fatalf("CSV total %s, JSON %d", got, doc.Totals["paid_cents"])
	}
	sup.Must(200, "GET", "/reports/sales/export"+q+"&format=json", nil, &doc)
	if doc.Report != "sales" {
		t.Fatalf("JSON export: report %q, want sales", doc.Report)
	}
	for _, c := range []struct {
		who  *servertest.Client // nil: no credentials
		path string
		code int
		want string
	}{
		{cash, "/reports/vends" + q, 403, "forbidden"},
		{cash, "/reports/vends/export" + q, 403, "forbidden"},
		{nil, "/reports/vends/export" + q, 401, "unauthenticated"},
		{servertest.WithAPIKey(t, ts.URL, "slk_nonsense"), "/reports/vends/export" + q, 401, "unauthenticated"},
		{sup, "/reports/nope" + q, 404, "not_found"},
		{sup, "/reports/nope/export" + q, 404, "not_found"},
		{sup, "/reports/vends?from=2026-11-24", 422, `"field":"to"`},
		{sup, "/reports/vends/export?from=yesterday&to=2026-11-25", 422, `"field":"from"`},
		{sup, "/reports/settlement" + q + "&supply_group=123457", 422, `"field":"supply_group"`},
		{sup, "/reports/vends/export" + q + "&format=xml", 422, `"field":"format"`},
	} {
		var code int
		var body []byte
		if c.who == nil {
			code, body, _ = plainGet(t, ts.URL+"/api/v1"+c.path, "")
		} else {
			code, body = c.who.Do("GET", c.path, nil)
		}
		if code != c.code || !strings.Contains(string(body), c.want) {
			t.Errorf("GET %s: %d %s, want %d with %s", c.path, code, body, c.code, c.want)
		}
	}
}

// plainGet calls url with key as its Bearer token, or with no credentials
// when key is empty, and returns the response headers too: servertest
// neither returns headers (the CSV export's Content-Type) nor calls without
// credentials.
func plainGet(t *testing.T, url, key string) (int, []byte, http.Header) {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b, resp.Header
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
