package attack

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"sluice/audit"
	"sluice/auditlog"
	"sluice/auth"
	"sluice/client"
	"sluice/config"
	"sluice/headend"
	"sluice/keys"
	"sluice/kms"
	"sluice/kms/filekms"
	"sluice/server"
	"sluice/store"
	"sluice/vend"
)

// A water tariff (rising blocks, free basic water, fixed charge, VAT, debt
// recovery): DOM-2026, a copy of tariff/tarifftest's. The lab ships in the
// sluice binary, which should not import a test package for it.
//
//go:embed testdata/tariff-domestic.json
var tariffJSON []byte

// try sends a request the attack expects may be refused and returns the
// HTTP status and, for a refusal, the API's error code; only a request that
// got no answer is an error.
func try(ctx context.Context, c *client.Client, key, method, path string, in, out any) (int, string, error) {
	status, err := c.DoIdempotent(ctx, key, method, path, in, out)
	var e *client.Error
	if errors.As(err, &e) {
		return e.Status, e.Code, nil
	}
	return status, "", err
}

// emptyJSON is the body sent to every route when probing who may call it.
var emptyJSON = json.RawMessage("{}")

// headendLab is a running head-end with a registered world and one
// logged-in client per role.
type headendLab struct {
	h       *headend.Headend
	url     string
	clients map[string]*client.Client
	meter   string
	// mqtt is the embedded broker's address (host:port).
	mqtt string
}

// headendNow is the head-end's clock in the lab: inside the tariff's first
// version. Vouchers it signs are valid around this time, so meters that load
// them run on it too.
var headendNow = time.Date(2026, 8, 3, 10, 0, 0, 0, time.UTC)

const labMeterNumber = "120000001"

func startHeadend(ctx context.Context, lab *Lab) (*headendLab, error) {
	dir, err := lab.TempDir("headend")
	if err != nil {
		return nil, err
	}
	cfg := config.Default()
	cfg.DataDir = dir
	cfg.Listen = "127.0.0.1:0"
	cfg.Database.URL = filepath.Join(dir, "sluice.db")
	cfg.KMS.File = filepath.Join(dir, "keys.sealed")
	cfg.KMS.Passphrase = fmt.Sprintf("attack lab head-end %d", lab.Seed)
	cfg.ShutdownTimeout.Duration = 5 * time.Second
	// The embedded MQTT broker on a free port, like the HTTP server: two
	// labs (or a lab and a running head-end) must not share one.
	cfg.MQTT.Mode, cfg.MQTT.Listen = "embedded", "127.0.0.1:0"
	h, err := headend.Start(ctx, cfg, slog.New(slog.DiscardHandler), headend.Options{
		Version:        "attack-lab",
		PasswordParams: &auth.Params{Memory: 64, Time: 1, Threads: 1},
		KMSOptions:     filekms.Options{Time: 1, MemoryKiB: 8 << 10, Threads: 1},
		Now:            func() time.Time { return headendNow },
	})
	if err != nil {
		return nil, fmt.Errorf("start head-end: %w", err)
	}
	hl := &headendLab{h: h, url: h.URL(), clients: map[string]*client.Client{}, meter: labMeterNumber, mqtt: h.MQTTAddr()}
	ok := false
	defer func() {
		if !ok {
			hl.stop()
		}
	}()
	if _, err := keys.Init(ctx, h.KMS(), kms.Ed25519); err != nil {
		return nil, err
	}
	admin := client.New(hl.url)
	if err := admin.FirstLogin(ctx, auth.BootstrapUsername, h.BootstrapPassword, "lab admin password "+fmt.Sprint(lab.Seed)); err != nil {
		return nil, err
	}
	hl.clients[auth.Admin] = admin
	if _, err := admin.CreateVendor(ctx, vend.NewVendor{Code: "LAB1", Name: "Lab vending point", DailyLimitCents: 10_000_000}); err != nil {
		return nil, fmt.Errorf("setup: %w", err)
	}
	if err := admin.PutTariff(ctx, "DOM-2026", tariffJSON); err != nil {
		return nil, fmt.Errorf("setup: %w", err)
	}
	if _, err := admin.CreateCustomer(ctx, vend.NewCustomer{Account: "ACC-LAB-1", Name: "Lab Customer", Area: "Lab"}); err != nil {
		return nil, fmt.Errorf("setup: %w", err)
	}
	if _, err := admin.CreateMeter(ctx, vend.NewMeter{Number: labMeterNumber, Kind: "card", Customer: "ACC-LAB-1", Tariff: "DOM-2026"}); err != nil {
		return nil, fmt.Errorf("setup: %w", err)
	}
	for _, role := range []string{auth.Supervisor, auth.Vendor, auth.Engineer, auth.Auditor} {
		n := auth.NewOperator{Username: role + "1", DisplayName: "Lab " + role, Role: role}
		if role == auth.Vendor {
			n.Vendor = "LAB1"
		}
		c, err := admin.Onboard(ctx, n, "lab password for "+role)
		if err != nil {
			return nil, fmt.Errorf("setup: %w", err)
		}
		hl.clients[role] = c
	}
	ok = true
	return hl, nil
}

func (hl *headendLab) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	hl.h.Shutdown(ctx)
}

// float reads a vending point's float as a supervisor sees it.
func (hl *headendLab) float(ctx context.Context, code string) (int64, error) {
	vs, err := hl.clients[auth.Supervisor].Vendors(ctx)
	if err != nil {
		return 0, err
	}
	for _, v := range vs {
		if v.Code == code {
			return v.FloatCents, nil
		}
	}
	return 0, fmt.Errorf("no vending point %s", code)
}

// operation is one route of the OpenAPI document.
type operation struct {
	method, path string
	roles        []string // nil: public
}

var pathParam = regexp.MustCompile(`\{[^}]+\}`)

func (hl *headendLab) operations(ctx context.Context) ([]operation, error) {
	var doc struct {
		Paths map[string]map[string]struct {
			Security *[]any   `json:"security"`
			Roles    []string `json:"x-roles"`
		} `json:"paths"`
	}
	if _, err := client.New(hl.url).Do(ctx, "GET", "/openapi.json", nil, &doc); err != nil {
		return nil, err
	}
	var ops []operation
	for p, ms := range doc.Paths {
		// The client's paths are relative to /api/v1.
		p = strings.TrimPrefix(p, "/api/v1")
		for m, op := range ms {
			o := operation{method: strings.ToUpper(m), path: pathParam.ReplaceAllString(p, "1")}
			if op.Security == nil || len(*op.Security) > 0 {
				o.roles = op.Roles
				if o.roles == nil {
					o.roles = []string{}
				}
			}
			ops = append(ops, o)
		}
	}
	sort.Slice(ops, func(i, j int) bool { return ops[i].path+ops[i].method < ops[j].path+ops[j].method })
	return ops, nil
}

// tableCounts is a fingerprint of the database's contents.
func (hl *headendLab) tableCounts(ctx context.Context) (map[string]int64, error) {
	db := hl.h.Store().SQL()
	rows, err := db.QueryContext(ctx, `SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name`)
	if err != nil {
		return nil, err
	}
	var names []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			rows.Close()
			return nil, err
		}
		names = append(names, n)
	}
	rows.Close()
	out := map[string]int64{}
	for _, n := range names {
		var c int64
		if err := db.QueryRowContext(ctx, `SELECT count(*) FROM "`+n+`"`).Scan(&c); err != nil {
			return nil, err
		}
		out[n] = c
	}
	return out, nil
}

func headendAttack() Attack {
	return Attack{
		ID:       "12",
		Name:     "head-end API: authentication, roles, float, idempotency, injection, audit tampering",
		Weakness: "vending back-ends are where ghost vending happens: unauthenticated or over-privileged calls, floats driven negative, retried purchases issuing twice, injectable queries, audit trails edited after the fact",
		Defence:  "every route has an explicit role rule enforced before its handler; the float check and idempotency key are database constraints in the purchase's transaction; strict JSON with bounded bodies and parameterised SQL; a hash-chained audit log with KMS-keyed anchors",
		Play: func(ctx context.Context, lab *Lab, r *Recorder) error {
			hl, err := startHeadend(ctx, lab)
			if err != nil {
				return err
			}
			defer hl.stop()
			ops, err := hl.operations(ctx)
			if err != nil {
				return err
			}
			if err := unauthenticated(ctx, hl, ops, r); err != nil {
				return err
			}
			if err := wrongRole(ctx, hl, ops, r); err != nil {
				return err
			}
			if err := floatAndIdempotency(ctx, hl, r); err != nil {
				return err
			}
			if err := injection(ctx, hl, r); err != nil {
				return err
			}
			return auditTamper(ctx, hl, r)
		},
	}
}

func unauthenticated(ctx context.Context, hl *headendLab, ops []operation, r *Recorder) error {
	before, err := hl.tableCounts(ctx)
	if err != nil {
		return err
	}
	anon := client.New(hl.url)
	forged := client.New(hl.url, client.WithAPIKey("slk_0000000000000000000000000000000000000000"))
	jar, _ := cookiejar.New(nil)
	u, _ := url.Parse(hl.url)
	jar.SetCookies(u, []*http.Cookie{{Name: "sluice_session", Value: strings.Repeat("A", 43)}})
	cookie := client.New(hl.url, client.WithHTTPClient(&http.Client{Jar: jar, Timeout: client.DefaultTimeout}))
	tried, let := 0, 0
	var leaks []string
	for _, op := range ops {
		if op.roles == nil {
			continue // public (login)
		}
		for _, c := range []*client.Client{anon, forged, cookie} {
			code, _, err := try(ctx, c, "", op.method, op.path, emptyJSON, nil)
			if err != nil {
				return err
			}
			tried++
			if code != http.StatusUnauthorized {
				let++
				leaks = append(leaks, fmt.Sprintf("%s %s=%d", op.method, op.path, code))
			}
		}
	}
	after, err := hl.tableCounts(ctx)
	if err != nil {
		return err
	}
	changed := changedTables(before, after, "login_failures", "audit_log")
	r.Measure("unauthenticated_requests", float64(tried))
	r.Observe("requests without authentication", let == 0 && len(changed) == 0,
		"%d protected routes (from the served OpenAPI document) x {no credentials, a made-up API key, a forged session cookie} = %d requests: %d not answered 401 %v; tables changed: %v",
		tried/3, tried, let, leaks, changed)
	return nil
}

// changedTables lists tables whose row count changed, ignoring some.
func changedTables(a, b map[string]int64, ignore ...string) []string {
	var out []string
	for n, c := range b {
		if a[n] != c && !slices.Contains(ignore, n) {
			out = append(out, fmt.Sprintf("%s %d->%d", n, a[n], c))
		}
	}
	sort.Strings(out)
	return out
}

func wrongRole(ctx context.Context, hl *headendLab, ops []operation, r *Recorder) error {
	before, err := hl.tableCounts(ctx)
	if err != nil {
		return err
	}
	tried, let := 0, 0
	var leaks []string
	for _, op := range ops {
		if op.roles == nil {
			continue
		}
		for _, role := range auth.Roles {
			if slices.Contains(op.roles, role) {
				continue
			}
			code, _, err := try(ctx, hl.clients[role], "wrong-role", op.method, op.path, emptyJSON, nil)
			if err != nil {
				return err
			}
			tried++
			if code != http.StatusForbidden {
				let++
				leaks = append(leaks, fmt.Sprintf("%s %s as %s=%d", op.method, op.path, role, code))
			}
		}
	}
	after, err := hl.tableCounts(ctx)
	if err != nil {
		return err
	}
	changed := changedTables(before, after, "audit_log")
	r.Measure("wrong_role_requests", float64(tried))
	r.Observe("requests with the wrong role", tried > 0 && let == 0 && len(changed) == 0,
		"every route x every role its x-roles rule excludes: %d requests, %d not answered 403 %v; tables changed: %v",
		tried, let, leaks, changed)
	return nil
}

func floatAndIdempotency(ctx context.Context, hl *headendLab, r *Recorder) error {
	sup, cashier := hl.clients[auth.Supervisor], hl.clients[auth.Vendor]
	const deposit = 200_000
	if _, err := sup.Deposit(ctx, "LAB1", server.DepositBody{AmountCents: deposit, Reference: "LAB-SLIP-1"}); err != nil {
		return err
	}
	f0, err := hl.float(ctx, "LAB1")
	if err != nil {
		return err
	}
	// Beyond the float, at once.
	code, errCode, err := try(ctx, cashier, "beyond-1", "POST", "/purchases", map[string]any{"meter": hl.meter, "amount_cents": 2*f0 + 10_000}, nil)
	if err != nil {
		return err
	}
	f1, err := hl.float(ctx, "LAB1")
	if err != nil {
		return err
	}
	// Beyond the float, by concurrent purchases that each fit.
	const n, each = 16, 30_000
	var wg sync.WaitGroup
	codes := make([]int, n)
	paid := make([]int64, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			var rc struct {
				Paid int64 `json:"paid_cents"`
			}
			codes[i], _, _ = try(ctx, cashier, fmt.Sprintf("race-%d", i), "POST", "/purchases", map[string]any{"meter": hl.meter, "amount_cents": each}, &rc)
			paid[i] = rc.Paid
		}(i)
	}
	wg.Wait()
	ok, refused, other := 0, 0, 0
	var sold int64
	for i, c := range codes {
		switch c {
		case 201:
			ok++
			sold += paid[i]
		case 409:
			refused++
		default:
			other++
		}
	}
	f2, err := hl.float(ctx, "LAB1")
	if err != nil {
		return err
	}
	r.Measure("float_cents_after", float64(f2))
	r.Observe("vend beyond float", code == http.StatusConflict && f1 == f0 && f2 >= 0 && f2 == f0-sold && refused > 0 && other == 0,
		"float %d cents; a purchase tendering %d: %d %s, float unchanged: %v; %d concurrent purchases of %d each (%d in all): %d sold, %d refused 409, %d other; float %d = %d - %d paid: %v, never negative: %v",
		f0, 2*f0+10_000, code, errCode, f1 == f0, n, each, n*each, ok, refused, other, f2, f0, sold, f2 == f0-sold, f2 >= 0)

	// The same Idempotency-Key with another body.
	const key = "lab-idem-1"
	var r1, r2 struct {
		PurchaseID int64 `json:"purchase_id"`
		Tokens     []any `json:"tokens"`
	}
	if c1, err := cashier.DoIdempotent(ctx, key, "POST", "/purchases", map[string]any{"meter": hl.meter, "amount_cents": 5_000}, &r1); err != nil || c1 != http.StatusCreated {
		return fmt.Errorf("purchase under a new key: %d, %v", c1, err)
	}
	g1, err := hl.float(ctx, "LAB1")
	if err != nil {
		return err
	}
	c2, code2, err := try(ctx, cashier, key, "POST", "/purchases", map[string]any{"meter": hl.meter, "amount_cents": 9_000}, nil)
	if err != nil {
		return err
	}
	c3, _, err := try(ctx, cashier, key, "POST", "/purchases", map[string]any{"meter": hl.meter, "amount_cents": 5_000}, &r2)
	if err != nil {
		return err
	}
	g2, err := hl.float(ctx, "LAB1")
	if err != nil {
		return err
	}
	same := c3 == 200 && r2.PurchaseID == r1.PurchaseID && fmt.Sprint(r2.Tokens) == fmt.Sprint(r1.Tokens)
	r.Observe("idempotency key reused with another body", c2 == http.StatusUnprocessableEntity && same && g2 == g1,
		"purchase under one key: 201; same key, amount changed: %d %s; same key, same body: %d, same purchase and tokens: %v; float unchanged by the retries: %v",
		c2, code2, c3, same, g2 == g1)
	return nil
}

// injectionPayloads are what an attacker types into every text field.
var injectionPayloads = []string{
	`' OR '1'='1`,
	`'; DROP TABLE operators; --`,
	`" OR ""="`,
	`1; UPDATE vendors SET float_cents = 99999999 --`,
	`') UNION SELECT password_hash FROM operators --`,
	"nul\x00byte",
	`<script>alert(1)</script>`,
	strings.Repeat("A", 4096),
}

func injection(ctx context.Context, hl *headendLab, r *Recorder) error {
	before, err := hl.tableCounts(ctx)
	if err != nil {
		return err
	}
	f0, err := hl.float(ctx, "LAB1")
	if err != nil {
		return err
	}
	admin, sup, cashier := hl.clients[auth.Admin], hl.clients[auth.Supervisor], hl.clients[auth.Vendor]
	type target struct {
		c            *client.Client
		method, path string
		body         map[string]any
		fields       []string
	}
	targets := []target{
		{client.New(hl.url), "POST", "/auth/login", map[string]any{"username": "x", "password": "y"}, []string{"username", "password"}},
		{admin, "POST", "/operators", map[string]any{"username": "u", "display_name": "d", "role": "vendor", "vendor": "LAB1"}, []string{"username", "display_name", "role", "vendor"}},
		{admin, "POST", "/api-keys", map[string]any{"operator": "vendor1", "label": "l"}, []string{"operator", "label"}},
		{admin, "POST", "/vendors", map[string]any{"code": "V", "name": "n", "daily_limit_cents": 100}, []string{"code", "name"}},
		{sup, "POST", "/vendors/LAB1/deposits", map[string]any{"amount_cents": 1, "bank": "b", "reference": "r"}, []string{"bank", "reference"}},
		{admin, "PUT", "/supply-groups/600999", map[string]any{"code": "600999", "name": "n", "dkga": "04", "ea": "11", "base_date": 2014, "krn": 1, "ti": 1}, []string{"code", "name", "dkga", "ea"}},
		{admin, "POST", "/customers", map[string]any{"account": "A", "name": "n", "address": "a", "phone": "p", "area": "r"}, []string{"account", "name", "address", "phone", "area"}},
		{sup, "POST", "/customers/ACC-LAB-1/debt", map[string]any{"amount_cents": 1, "reference": "r"}, []string{"reference"}},
		{admin, "POST", "/meters", map[string]any{"number": "120000099", "kind": "card", "customer": "ACC-LAB-1", "tariff": "DOM-2026", "area": "a"}, []string{"number", "kind", "customer", "tariff", "area"}},
		{admin, "POST", "/meters/" + labMeterNumber + "/assign", map[string]any{"customer": "ACC-LAB-1"}, []string{"customer"}},
		{cashier, "POST", "/purchases/preview", map[string]any{"meter": labMeterNumber, "amount_cents": 100}, []string{"meter"}},
		{cashier, "POST", "/purchases", map[string]any{"meter": labMeterNumber, "amount_cents": 100}, []string{"meter"}},
		{sup, "POST", "/purchases/1/reverse", map[string]any{"reason": "r"}, []string{"reason"}},
	}
	fields := 0
	for _, t := range targets {
		fields += len(t.fields)
	}
	requests, server5xx, accepted := 0, 0, 0
	var fails []string
	seq := 0
	for _, t := range targets {
		for _, f := range t.fields {
			for _, p := range injectionPayloads {
				b := map[string]any{}
				for k, v := range t.body {
					b[k] = v
				}
				b[f] = p
				seq++
				code, errCode, err := try(ctx, t.c, fmt.Sprintf("inj-%d", seq), t.method, t.path, b, nil)
				if err != nil {
					return err
				}
				requests++
				if code >= 500 {
					server5xx++
					fails = append(fails, fmt.Sprintf("%s %s %s=%.20q: %d %s", t.method, t.path, f, p, code, errCode))
				}
				if code < 300 {
					accepted++
				}
			}
		}
	}
	// Query strings and path segments.
	for _, p := range injectionPayloads {
		for _, path := range []string{"/customers?q=", "/meters?q=", "/customers/", "/meters/", "/audit?from="} {
			code, _, err := try(ctx, admin, "", "GET", path+urlEscape(p), nil, nil)
			if err != nil {
				return err
			}
			requests++
			if code >= 500 {
				server5xx++
				fails = append(fails, fmt.Sprintf("GET %s%.20q: %d", path, p, code))
			}
		}
	}
	// Oversized bodies: a megabyte in one field, on every write route above.
	big := strings.Repeat("B", 1<<20)
	over := 0
	for _, t := range targets {
		b := map[string]any{}
		for k, v := range t.body {
			b[k] = v
		}
		b[t.fields[0]] = big
		code, _, err := try(ctx, t.c, "oversized", t.method, t.path, b, nil)
		if err != nil {
			return err
		}
		requests++
		if code == http.StatusRequestEntityTooLarge {
			over++
		} else if code >= 500 {
			server5xx++
		}
	}
	// What did it do to the database?
	after, err := hl.tableCounts(ctx)
	if err != nil {
		return err
	}
	var integrity string
	if err := hl.h.Store().SQL().QueryRowContext(ctx, `PRAGMA integrity_check`).Scan(&integrity); err != nil {
		return err
	}
	lost := []string{}
	for n := range before {
		if _, ok := after[n]; !ok {
			lost = append(lost, n)
		}
	}
	f1, err := hl.float(ctx, "LAB1")
	if err != nil {
		return err
	}
	// A payload stored as a name reads back byte for byte: data, not code.
	payload := injectionPayloads[1]
	var detail struct {
		Customer struct {
			Name string `json:"name"`
		} `json:"customer"`
	}
	if _, err := admin.CreateCustomer(ctx, vend.NewCustomer{Account: "INJ-1", Name: payload}); err != nil {
		return err
	}
	if _, err := admin.Do(ctx, "GET", "/customers/INJ-1", nil, &detail); err != nil {
		return err
	}
	roundTrip := detail.Customer.Name == payload
	operators := after["operators"]
	r.Measure("injection_requests", float64(requests))
	r.Measure("server_errors", float64(server5xx))
	r.Observe("SQL injection and oversized payloads", server5xx == 0 && len(lost) == 0 && integrity == "ok" && over == len(targets) && operators >= 5,
		"%d requests: %d string fields of %d write routes x %d payloads (quotes, stacked statements, UNION, NUL, markup, 4 KiB), 5 query/path parameters x %d payloads, and a 1 MiB field on each route: %d answered 5xx %v, %d accepted as plain data, %d of %d oversized bodies refused 413; database integrity %q, tables lost: %v, float %d -> %d (moved only by accepted purchases), stored payloads read back: %v",
		requests, fields, len(targets), len(injectionPayloads), len(injectionPayloads), server5xx, fails, accepted, over, len(targets), integrity, lost, f0, f1, roundTrip)
	return nil
}

func urlEscape(s string) string {
	var b strings.Builder
	for _, c := range []byte(s) {
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

func auditTamper(ctx context.Context, hl *headendLab, r *Recorder) error {
	st := hl.h.Store()
	anchors, err := auditlog.NewKMSAnchors(ctx, hl.h.KMS())
	if err != nil {
		return err
	}
	if _, err := auditlog.Seal(ctx, st, anchors, 0); err != nil {
		return fmt.Errorf("seal: %w", err)
	}
	rep0, err := auditlog.Verify(ctx, st, anchors)
	if err != nil {
		return err
	}
	if !rep0.OK || rep0.Records < 10 {
		return fmt.Errorf("the untouched audit chain does not verify: %+v", rep0)
	}
	db := st.SQL()
	// Edit one record's details, as someone with database access would.
	target := rep0.Records / 2
	var details []byte
	if err := db.QueryRowContext(ctx, `SELECT details FROM audit_log WHERE seq = ?`, target).Scan(&details); err != nil {
		return err
	}
	edited := bytes.Replace(details, []byte(`"`), []byte(`" `), 1)
	if bytes.Equal(edited, details) {
		edited = append(details, ' ')
	}
	if _, err := db.ExecContext(ctx, `UPDATE audit_log SET details = ? WHERE seq = ?`, edited, target); err != nil {
		return err
	}
	rep1, err := auditlog.Verify(ctx, st, anchors)
	if err != nil {
		return err
	}
	// Put it back, then delete one.
	if _, err := db.ExecContext(ctx, `UPDATE audit_log SET details = ? WHERE seq = ?`, details, target); err != nil {
		return err
	}
	var saved []any
	cols := `id, at, actor, action, object, details, seq, prev_hash, hash, anchor`
	row := db.QueryRowContext(ctx, `SELECT `+cols+` FROM audit_log WHERE seq = ?`, target)
	vals := make([]any, 10)
	ptrs := make([]any, 10)
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	if err := row.Scan(ptrs...); err != nil {
		return err
	}
	saved = vals
	if _, err := db.ExecContext(ctx, `DELETE FROM audit_log WHERE seq = ?`, target); err != nil {
		return err
	}
	rep2, err := auditlog.Verify(ctx, st, anchors)
	if err != nil {
		return err
	}
	if _, err := db.ExecContext(ctx, `INSERT INTO audit_log (`+cols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, saved...); err != nil {
		return err
	}
	rep3, err := auditlog.Verify(ctx, st, anchors)
	if err != nil {
		return err
	}
	r.Observe("audit record edited in the database", !rep1.OK && rep1.FirstBad == target && !rep2.OK && rep3.OK,
		"%d sealed records (%d anchored) verified; one byte inserted into the details of record %d: verify fails at %d (%s); record deleted: verify fails at %d (%s); restored: verifies again: %v",
		rep0.Records, rep0.Anchored, target, rep1.FirstBad, rep1.Problem, rep2.FirstBad, rep2.Problem, rep3.OK)
	// The insider who knows the chain format: edit a record, then recompute
	// every hash from it to the head so the chain is consistent again. Only
	// the anchors, made with a key the database does not hold, can tell.
	var recs []store.AuditRecord
	if err := st.Read(ctx, func(tx store.Tx) error {
		return tx.Audit().Each(ctx, int64(target-1), func(a store.AuditRecord) error {
			recs = append(recs, a)
			return nil
		})
	}); err != nil {
		return err
	}
	if len(recs) < 2 {
		return fmt.Errorf("audit chain too short to rewrite")
	}
	head := audit.Head{Seq: uint64(recs[0].Seq), Hash: audit.Hash(recs[0].Hash)}
	for i, a := range recs[1:] {
		d := a.Details
		if i == 0 {
			d = edited
		}
		nr, err := audit.Next(head, audit.Event{Time: a.At, Actor: a.Actor, Action: a.Action, Object: a.Object, Details: d})
		if err != nil {
			return err
		}
		if _, err := db.ExecContext(ctx, `UPDATE audit_log SET details = ?, prev_hash = ?, hash = ? WHERE seq = ?`,
			d, nr.Prev[:], nr.Hash[:], a.Seq); err != nil {
			return err
		}
		head = nr.Head()
	}
	rep4, err := auditlog.Verify(ctx, st, anchors)
	if err != nil {
		return err
	}
	rep5, err := auditlog.Verify(ctx, st, nil)
	if err != nil {
		return err
	}
	r.Measure("audit_records", float64(rep0.Records))
	r.Measure("audit_records_rehashed", float64(len(recs)-1))
	r.Observe("audit chain rewritten and rehashed", !rep4.OK && rep4.Problem != "" && rep5.OK,
		"record %d edited and all %d hashes from it to the head recomputed: the chain alone verifies (%v), the KMS-keyed anchors do not: verify fails at %d (%s)",
		target, len(recs)-1, rep5.OK, rep4.FirstBad, rep4.Problem)
	return nil
}
