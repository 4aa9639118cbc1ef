package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"sluice/auth"
	"sluice/kms/filekms/filekmstest"
	"sluice/store"
	"sluice/store/sqlstore"
	"sluice/store/storetest"
	"sluice/tariff/tarifftest"
	"sluice/vend"
)

var cheap = auth.Params{Memory: 64, Time: 1, Threads: 1}

const (
	testPAN   = "600727000000000009"
	adminPass = "correct horse battery staple"
)

// harness is a head-end API over a fresh store.
type harness struct {
	t   *testing.T
	srv *Server
	ts  *httptest.Server
	db  *sqlstore.DB
}

func newHarness(t *testing.T, db *sqlstore.DB) *harness {
	t.Helper()
	ctx := context.Background()
	km := filekmstest.WithVendingKey(t)
	pw, err := auth.Bootstrap(ctx, db, filepath.Join(t.TempDir(), "cred"), cheap)
	if err != nil {
		t.Fatal(err)
	}
	srv := New(Config{Store: db, Auth: auth.NewService(db, cheap, nil), Vend: vend.New(vend.Config{Store: db, Keys: vend.KMSKeys{KM: km}})})
	h := &harness{t: t, srv: srv, ts: httptest.NewServer(srv.Handler()), db: db}
	t.Cleanup(h.ts.Close)
	admin := h.login("admin", pw)
	admin.must(200, "POST", "/auth/password", PasswordRequest{CurrentPassword: pw, NewPassword: adminPass}, nil)
	return h
}

// client is one logged-in browser (cookie) or terminal (API key).
type client struct {
	h      *harness
	c      *http.Client
	apiKey string
}

func (h *harness) anonymous() *client {
	jar, _ := cookiejar.New(nil)
	return &client{h: h, c: &http.Client{Jar: jar}}
}

func (h *harness) login(user, pass string) *client {
	h.t.Helper()
	c := h.anonymous()
	c.must(200, "POST", "/auth/login", LoginRequest{Username: user, Password: pass}, nil)
	return c
}

// do sends a request and returns the status and body.
func (c *client) do(method, path string, body any, header map[string]string) (int, []byte) {
	c.h.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
	case string:
		rd = strings.NewReader(b)
	default:
		js, err := json.Marshal(b)
		if err != nil {
			c.h.t.Fatal(err)
		}
		rd = bytes.NewReader(js)
	}
	req, err := http.NewRequest(method, c.h.ts.URL+"/api/v1"+path, rd)
	if err != nil {
		c.h.t.Fatal(err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("X-Sluice-Console", "1")
	if c.apiKey != "" {
		req.Header.Set("Authorization", "Bearer "+c.apiKey)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := c.c.Do(req)
	if err != nil {
		c.h.t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, out
}

// must sends a request, requires the status and decodes the answer.
func (c *client) must(status int, method, path string, body, out any, header ...map[string]string) {
	c.h.t.Helper()
	var hd map[string]string
	if len(header) > 0 {
		hd = header[0]
	}
	code, b := c.do(method, path, body, hd)
	if code != status {
		c.h.t.Fatalf("%s %s = %d, want %d: %s", method, path, code, status, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			c.h.t.Fatalf("%s %s: %v: %s", method, path, err, b)
		}
	}
}

// setup registers what vending needs, through the API, and returns a
// logged-in client per role.
func (h *harness) setup() map[string]*client {
	h.t.Helper()
	admin := h.login("admin", adminPass)
	admin.must(201, "POST", "/vendors", vend.NewVendor{Code: "OFFICE1", Name: "Main office", DailyLimitCents: 5_000_000}, nil)
	admin.must(200, "PUT", "/supply-groups/123457", vend.SupplyGroupSpec{Code: "123457", Name: "North", DKGA: "04", EA: "11", BaseDate: 2014, KRN: 1, TI: 1}, nil)
	admin.must(200, "PUT", "/tariffs/DOM-2026", tarifftest.Domestic(), nil)
	admin.must(201, "POST", "/customers", vend.NewCustomer{Account: "ACC-001", Name: "Thandi Nkosi", Area: "Soweto"}, nil)
	admin.must(201, "POST", "/meters", vend.NewMeter{Number: testPAN, Kind: "sts", Customer: "ACC-001", Tariff: "DOM-2026", SupplyGroup: "123457"}, nil)
	clients := map[string]*client{auth.Admin: admin}
	for _, role := range []string{auth.Supervisor, auth.Vendor, auth.Engineer, auth.Auditor} {
		n := auth.NewOperator{Username: role + "1", DisplayName: "Test " + role, Role: role}
		if role == auth.Vendor {
			n.Vendor = "OFFICE1"
		}
		var created NewOperatorResponse
		admin.must(201, "POST", "/operators", n, &created)
		c := h.login(n.Username, created.OneTimePassword)
		c.must(200, "POST", "/auth/password", PasswordRequest{CurrentPassword: created.OneTimePassword, NewPassword: "a long enough password " + role}, nil)
		clients[role] = c
	}
	clients[auth.Supervisor].must(201, "POST", "/vendors/OFFICE1/deposits", DepositBody{AmountCents: 1_000_000, Reference: "SLIP-1"}, nil)
	return clients
}

func TestVendOverHTTP(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *sqlstore.DB) {
		h := newHarness(t, db)
		c := h.setup()
		cashier := c[auth.Vendor]
		var prev vend.Preview
		cashier.must(200, "POST", "/purchases/preview", vend.PurchaseRequest{Meter: testPAN, AmountCents: 30000}, &prev)
		if prev.Breakdown.Tendered != 30000 || prev.Customer.Account != "ACC-001" {
			t.Fatalf("preview %+v", prev)
		}
		key := map[string]string{"Idempotency-Key": "till-7-000001"}
		var r1, r2 vend.Receipt
		cashier.must(201, "POST", "/purchases", vend.PurchaseRequest{Meter: testPAN, AmountCents: 30000}, &r1, key)
		cashier.must(200, "POST", "/purchases", vend.PurchaseRequest{Meter: testPAN, AmountCents: 30000}, &r2, key)
		if len(r1.Tokens) == 0 || fmt.Sprint(r1.Tokens) != fmt.Sprint(r2.Tokens) {
			t.Fatalf("retry returned other tokens:\n%v\n%v", r1.Tokens, r2.Tokens)
		}
		code, body := cashier.do("POST", "/purchases", vend.PurchaseRequest{Meter: testPAN, AmountCents: 40000}, key)
		if code != 422 || !strings.Contains(string(body), "idempotency_key_reused") {
			t.Fatalf("same key, other body: %d %s", code, body)
		}
		code, body = cashier.do("POST", "/purchases", vend.PurchaseRequest{Meter: testPAN, AmountCents: 30000}, nil)
		if code != 422 || !strings.Contains(string(body), `"field":"Idempotency-Key"`) {
			t.Fatalf("no key: %d %s", code, body)
		}
		code, body = cashier.do("POST", "/purchases", vend.PurchaseRequest{Meter: testPAN, AmountCents: 2_000_000}, map[string]string{"Idempotency-Key": "big"})
		if code != 409 || !strings.Contains(string(body), "insufficient_float") {
			t.Fatalf("beyond the float: %d %s", code, body)
		}
		var rp vend.Receipt
		cashier.must(200, "GET", fmt.Sprintf("/purchases/%d", r1.PurchaseID), nil, &rp)
		if fmt.Sprint(rp.Tokens) != fmt.Sprint(r1.Tokens) {
			t.Fatal("reprint differs")
		}
		var rev vend.Reversal
		c[auth.Supervisor].must(200, "POST", fmt.Sprintf("/purchases/%d/reverse", r1.PurchaseID), vend.ReversalRequest{Reason: "wrong meter", Compensate: true}, &rev)
		if rev.Mode != "compensated" {
			t.Fatalf("reversal %+v", rev)
		}
		var audit []AuditRecord
		c[auth.Auditor].must(200, "GET", "/audit", nil, &audit) // sealed records only (none until the sealer runs)
	})
}

func TestAPIKeyTerminal(t *testing.T) {
	h := newHarness(t, storetest.OpenSQLite(t, false))
	c := h.setup()
	var k NewAPIKeyResponse
	c[auth.Admin].must(201, "POST", "/api-keys", APIKeyRequest{Operator: "vendor1", Label: "till 7"}, &k)
	if !strings.HasPrefix(k.Key, auth.APIKeyPrefix) {
		t.Fatalf("key %q", k.Key)
	}
	term := &client{h: h, c: http.DefaultClient, apiKey: k.Key}
	term.must(201, "POST", "/purchases", vend.PurchaseRequest{Meter: testPAN, AmountCents: 30000}, nil, map[string]string{"Idempotency-Key": "t1"})
	c[auth.Admin].must(200, "DELETE", fmt.Sprintf("/api-keys/%d", k.APIKey.ID), nil, nil)
	term.must(401, "POST", "/purchases", vend.PurchaseRequest{Meter: testPAN, AmountCents: 30000}, nil, map[string]string{"Idempotency-Key": "t2"})
}

// TestRoleMatrix walks every route with every role and with no credentials,
// and checks the role rule is what the table says.
func TestRoleMatrix(t *testing.T) {
	h := newHarness(t, storetest.OpenSQLite(t, false))
	clients := h.setup()
	clients["anonymous"] = h.anonymous()
	fill := strings.NewReplacer("{username}", "engineer1", "{id}", "1", "{code}", "OFFICE1", "{account}", "ACC-001", "{number}", testPAN)
	// Logging out ends the session the other calls ride on: walk it last.
	table := slices.Clone(h.srv.table)
	slices.SortStableFunc(table, func(a, b route) int {
		return boolInt(a.Path == "/auth/logout") - boolInt(b.Path == "/auth/logout")
	})
	for _, rt := range table {
		for who, c := range clients {
			path := fill.Replace(rt.Path)
			var body any
			if rt.Method != "GET" && rt.Method != "DELETE" {
				body = "{}"
			}
			code, resp := c.do(rt.Method, path, body, nil)
			var want string
			switch {
			case rt.Roles == nil:
				want = "public"
				if code == 401 || code == 403 {
					t.Errorf("%s %s as %s: %d on a public route: %s", rt.Method, rt.Path, who, code, resp)
				}
			case who == "anonymous":
				want = "401"
				if code != 401 {
					t.Errorf("%s %s without credentials: %d, want 401: %s", rt.Method, rt.Path, code, resp)
				}
			case slices.Contains(rt.Roles, who):
				want = "allowed"
				if code == 401 || code == 403 {
					t.Errorf("%s %s as %s: %d, but the role is allowed: %s", rt.Method, rt.Path, who, code, resp)
				}
			default:
				want = "403"
				if code != 403 {
					t.Errorf("%s %s as %s: %d, want 403: %s", rt.Method, rt.Path, who, code, resp)
				}
			}
			_ = want
		}
	}
}

func TestBadInputIsAClearErrorAndChangesNothing(t *testing.T) {
	h := newHarness(t, storetest.OpenSQLite(t, false))
	c := h.setup()
	cashier := c[auth.Vendor]
	key := map[string]string{"Idempotency-Key": "x1"}
	cases := []struct {
		body       any
		ctype      string
		wantStatus int
		wantInBody string
	}{
		{`{"meter":"` + testPAN + `","amount_cents":100,"colour":"red"}`, "", 400, `"field":"colour"`},
		{`{"meter":`, "", 400, "invalid_json"},
		{`{"meter":"` + testPAN + `","amount_cents":"ten"}`, "", 400, `"field":"amount_cents"`},
		{`{"meter":"","amount_cents":100}`, "", 422, `"field":"meter"`},
		{`{"meter":"` + testPAN + `","amount_cents":-5}`, "", 422, `"field":"amount_cents"`},
		{`{"meter":"x"} {"meter":"y"}`, "", 400, "exactly one JSON object"},
		{`{"meter":"` + testPAN + `","amount_cents":100}`, "text/plain", 415, "unsupported_media_type"},
		{`{"meter":"` + strings.Repeat("9", 70000) + `","amount_cents":100}`, "", 413, "body_too_large"},
		{`{"meter":"1' OR '1'='1","amount_cents":100}`, "", 422, `"field":"meter"`},
	}
	for _, tc := range cases {
		hd := map[string]string{"Idempotency-Key": key["Idempotency-Key"]}
		if tc.ctype != "" {
			hd["Content-Type"] = tc.ctype
		}
		code, body := cashier.do("POST", "/purchases", tc.body, hd)
		if code != tc.wantStatus || !strings.Contains(string(body), tc.wantInBody) {
			t.Errorf("%.60s: %d %s; want %d with %s", tc.body, code, body, tc.wantStatus, tc.wantInBody)
		}
	}
	var vs []Vendor
	c[auth.Supervisor].must(200, "GET", "/vendors", nil, &vs)
	if vs[0].FloatCents != 1_000_000 || vs[0].SoldTodayCents != 0 {
		t.Fatalf("bad requests changed the float: %+v", vs[0])
	}
	h.db.Read(context.Background(), func(tx store.Tx) error {
		if _, err := tx.Purchases().ByKey(context.Background(), 1, "x1"); err == nil {
			t.Error("a refused request claimed the idempotency key")
		}
		return nil
	})
}

func TestLoginRateLimitAndPasswordChange(t *testing.T) {
	h := newHarness(t, storetest.OpenSQLite(t, false))
	admin := h.login("admin", adminPass)
	var created NewOperatorResponse
	admin.must(201, "POST", "/operators", auth.NewOperator{Username: "sam", DisplayName: "Sam", Role: auth.Auditor}, &created)
	sam := h.login("sam", created.OneTimePassword)
	code, body := sam.do("GET", "/operators", nil, nil)
	if code != 403 || !strings.Contains(string(body), "password_change_required") {
		t.Fatalf("before changing the one-time password: %d %s", code, body)
	}
	anon := h.anonymous()
	for i := 0; i < auth.MaxFailuresPerUser; i++ {
		if code, _ := anon.do("POST", "/auth/login", LoginRequest{Username: "sam", Password: "guess"}, nil); code != 401 {
			t.Fatalf("wrong password: %d", code)
		}
	}
	if code, body := anon.do("POST", "/auth/login", LoginRequest{Username: "sam", Password: created.OneTimePassword}, nil); code != 429 {
		t.Fatalf("after %d failures the right password must wait: %d %s", auth.MaxFailuresPerUser, code, body)
	}
	code, body = anon.do("POST", "/auth/login", LoginRequest{Username: "nobody", Password: "x"}, nil)
	if code != 401 || strings.Contains(string(body), "nobody") {
		t.Fatalf("unknown user: %d %s", code, body)
	}
}

func TestCookieWritesNeedTheConsoleHeader(t *testing.T) {
	h := newHarness(t, storetest.OpenSQLite(t, false))
	admin := h.login("admin", adminPass)
	req, _ := http.NewRequest("POST", h.ts.URL+"/api/v1/vendors", strings.NewReader(`{"code":"X","name":"X","daily_limit_cents":1}`))
	req.Header.Set("Content-Type", "application/json")
	resp, err := admin.c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 403 {
		t.Fatalf("cross-site style write with the session cookie: %d, want 403", resp.StatusCode)
	}
}

// TestOpenAPIMatchesRoutes checks the served document lists every route and
// that every documented operation reaches a handler.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	h := newHarness(t, storetest.OpenSQLite(t, false))
	code, body := h.anonymous().do("GET", "/openapi.json", nil, nil)
	if code != 200 {
		t.Fatalf("openapi.json: %d", code)
	}
	var doc struct {
		OpenAPI string                               `json:"openapi"`
		Paths   map[string]map[string]map[string]any `json:"paths"`
	}
	if err := json.Unmarshal(body, &doc); err != nil || doc.OpenAPI != "3.0.3" {
		t.Fatalf("document: %v %s", err, doc.OpenAPI)
	}
	documented := 0
	param := regexp.MustCompile(`\{[a-z_]+\}`)
	for p, ops := range doc.Paths {
		for m := range ops {
			documented++
			path := param.ReplaceAllString(strings.TrimPrefix(p, "/api/v1"), "1")
			req, _ := http.NewRequest(strings.ToUpper(m), h.ts.URL+"/api/v1"+path, nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if strings.Contains(string(b), "no such API route") || resp.StatusCode == http.StatusMethodNotAllowed {
				t.Errorf("documented %s %s has no handler", m, p)
			}
		}
	}
	if documented != len(h.srv.table) {
		t.Errorf("%d operations documented, %d routes served", documented, len(h.srv.table))
	}
	for _, rt := range h.srv.table {
		if doc.Paths["/api/v1"+rt.Path][strings.ToLower(rt.Method)] == nil {
			t.Errorf("route %s %s is not documented", rt.Method, rt.Path)
		}
	}
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func TestMeterReadingsAndOwnVendor(t *testing.T) {
	h := newHarness(t, storetest.OpenSQLite(t, false))
	c := h.setup()
	ctx := context.Background()
	at := time.Now().UTC().Add(-time.Hour).Truncate(time.Second)
	err := h.db.Tx(ctx, func(tx store.Tx) error {
		m, err := tx.Meters().ByNumber(ctx, testPAN)
		if err != nil {
			return err
		}
		return tx.Telemetry().StoreReadings(ctx, []store.Reading{{MeterID: m.ID, Time: at, ReceivedAt: at, Forward: 12345, Credit: 800, Loaded: 9000, Unit: 1}})
	})
	if err != nil {
		t.Fatal(err)
	}
	var rows []ReadingRow
	c[auth.Engineer].must(200, "GET", "/meters/"+testPAN+"/readings", nil, &rows)
	if len(rows) != 1 || rows[0].Forward != 12345 || rows[0].Unit != "litres" || !rows[0].Time.Equal(at) {
		t.Fatalf("readings %+v", rows)
	}
	code, body := c[auth.Engineer].do("GET", "/meters/"+testPAN+"/readings?from=yesterday", nil, nil)
	if code != 400 || !strings.Contains(string(body), `"field":"from"`) {
		t.Fatalf("bad from: %d %s", code, body)
	}
	var evs []EventRow
	c[auth.Auditor].must(200, "GET", "/meters/"+testPAN+"/events", nil, &evs)
	if evs == nil || len(evs) != 0 {
		t.Fatalf("events %+v, want an empty list", evs)
	}
	var v Vendor
	c[auth.Vendor].must(200, "GET", "/vendors/mine", nil, &v)
	if v.Code != "OFFICE1" || v.FloatCents != 1_000_000 {
		t.Fatalf("own vendor %+v", v)
	}
}
