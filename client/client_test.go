package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"testing"

	"sluice/auth"
	"sluice/client"
	"sluice/config"
	"sluice/headend"
	"sluice/keys"
	"sluice/kms"
	"sluice/kms/filekms"
	"sluice/server"
	"sluice/vend"
)

// tariff is the smallest tariff the head-end takes: one block, no VAT.
const tariff = `{"code": "T1", "name": "Test", "currency": "ZAR", "versions": [
	{"effective": "2020-01-01", "vat_bp": 0, "debt_recovery_bp": 0, "free_basic_kl": 0,
	 "blocks": [{"price_per_kl": 1000}], "fixed_charges": []}]}`

// world is a running head-end with an administrator, a supervisor, a
// cashier's session and terminal, a vending point with a float and a card
// meter, all set up through the client.
type world struct {
	h                   *headend.Headend
	admin, sup, cashier *client.Client
	terminal            *client.Client
	meter               string
	floatCents          int64
}

func start(t *testing.T) *world {
	t.Helper()
	ctx := context.Background()
	cfg, err := config.Load("", nil, []config.Override{
		{Key: "data_dir", Value: t.TempDir()}, {Key: "listen", Value: "127.0.0.1:0"}, {Key: "mqtt.mode", Value: "off"},
	})
	if err != nil {
		t.Fatal(err)
	}
	h, err := headend.Start(ctx, cfg, slog.New(slog.DiscardHandler), headend.Options{
		PasswordParams: &auth.Params{Memory: 64, Time: 1, Threads: 1},
		KMSOptions:     filekms.Options{Time: 1, MemoryKiB: 64, Threads: 1},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Shutdown(context.Background()) })
	// Card meters take signed vouchers: the head-end needs its signing key.
	if _, err := keys.Init(ctx, h.KMS(), kms.Ed25519); err != nil {
		t.Fatal(err)
	}
	w := &world{h: h, meter: "120000001", floatCents: 100_000}
	w.admin = client.New(h.URL())
	if err := w.admin.FirstLogin(ctx, auth.BootstrapUsername, h.BootstrapPassword, "test administrator password"); err != nil {
		t.Fatal(err)
	}
	must := func(_ any, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(nil, w.admin.PutTariff(ctx, "T1", json.RawMessage(tariff)))
	must(w.admin.CreateVendor(ctx, vend.NewVendor{Code: "V1", Name: "Till", DailyLimitCents: 10_000_000}))
	must(w.admin.CreateCustomer(ctx, vend.NewCustomer{Account: "A1", Name: "Customer"}))
	must(w.admin.CreateMeter(ctx, vend.NewMeter{Number: w.meter, Kind: "card", Customer: "A1", Tariff: "T1"}))
	if w.sup, err = w.admin.Onboard(ctx, auth.NewOperator{Username: "sup", DisplayName: "Sup", Role: auth.Supervisor}, "supervisor password"); err != nil {
		t.Fatal(err)
	}
	if w.cashier, err = w.admin.Onboard(ctx, auth.NewOperator{Username: "cash", DisplayName: "Cash", Role: auth.Vendor, Vendor: "V1"}, "cashier password"); err != nil {
		t.Fatal(err)
	}
	must(w.sup.Deposit(ctx, "V1", server.DepositBody{AmountCents: w.floatCents, Reference: "SLIP-1"}))
	k, err := w.admin.CreateAPIKey(ctx, "cash", "till 1")
	if err != nil {
		t.Fatal(err)
	}
	w.terminal = client.New(h.URL(), client.WithAPIKey(k.Key))
	return w
}

// apiError requires err to be an *Error with status and code.
func apiError(t *testing.T, err error, status int, code string) *client.Error {
	t.Helper()
	var e *client.Error
	if !errors.As(err, &e) {
		t.Fatalf("err = %v (%T), want *client.Error", err, err)
	}
	if e.Status != status || e.Code != code {
		t.Fatalf("err = %v, want %d %s", err, status, code)
	}
	return e
}

func TestSessionsAndKeys(t *testing.T) {
	ctx := context.Background()
	w := start(t)

	anon := client.New(w.h.URL())
	_, err := anon.Vendors(ctx)
	apiError(t, err, http.StatusUnauthorized, "unauthenticated")
	if !errors.Is(err, client.ErrUnauthenticated) {
		t.Errorf("errors.Is(%v, ErrUnauthenticated) = false", err)
	}

	if _, err := anon.Login(ctx, "sup", "not the password"); !errors.Is(err, client.ErrUnauthenticated) {
		t.Errorf("login with a wrong password: %v", err)
	}

	forged := client.New(w.h.URL(), client.WithAPIKey("slk_0000000000000000000000000000000000000000"))
	if _, err := forged.Vendors(ctx); !errors.Is(err, client.ErrUnauthenticated) {
		t.Errorf("made-up API key: %v", err)
	}

	// A new operator's session must change its password first.
	created, err := w.admin.CreateOperator(ctx, auth.NewOperator{Username: "aud", DisplayName: "Aud", Role: auth.Auditor})
	if err != nil {
		t.Fatal(err)
	}
	aud := client.New(w.h.URL())
	me, err := aud.Login(ctx, "aud", created.OneTimePassword)
	if err != nil {
		t.Fatal(err)
	}
	if !me.MustChangePassword || me.Operator.Username != "aud" {
		t.Errorf("login answered %+v", me)
	}
	_, err = aud.Vendors(ctx)
	apiError(t, err, http.StatusForbidden, "password_change_required")
	if !errors.Is(err, client.ErrPasswordChangeRequired) {
		t.Errorf("errors.Is(%v, ErrPasswordChangeRequired) = false", err)
	}
	if err := aud.ChangePassword(ctx, created.OneTimePassword, "auditor password"); err != nil {
		t.Fatal(err)
	}
	if _, err := aud.Vendors(ctx); err != nil {
		t.Errorf("after the password change: %v", err)
	}

	// The wrong role is refused with a field-less forbidden.
	_, err = w.cashier.Deposit(ctx, "V1", server.DepositBody{AmountCents: 1, Reference: "X"})
	apiError(t, err, http.StatusForbidden, "forbidden")
	if !errors.Is(err, client.ErrForbidden) || errors.Is(err, client.ErrUnauthenticated) {
		t.Errorf("sentinels of %v", err)
	}
}

func TestPurchase(t *testing.T) {
	ctx := context.Background()
	w := start(t)
	req := vend.PurchaseRequest{Meter: w.meter, AmountCents: 5_000}

	p, err := w.cashier.Preview(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if p.Meter != w.meter || p.Breakdown == nil || p.Breakdown.Litres <= 0 {
		t.Errorf("preview = %+v", p)
	}

	// The terminal's API key sells; a retry under the same key is the same
	// purchase.
	var first, again vend.Receipt
	replayed, err := w.terminal.Purchase(ctx, "till-1", req, &first)
	if err != nil || replayed {
		t.Fatalf("purchase: replayed %v, %v", replayed, err)
	}
	if first.PurchaseID == 0 || len(first.Tokens) == 0 || first.Paid <= 0 {
		t.Fatalf("receipt = %+v", first)
	}
	replayed, err = w.terminal.Purchase(ctx, "till-1", req, &again)
	if err != nil || !replayed || again.PurchaseID != first.PurchaseID {
		t.Fatalf("retry: replayed %v, purchase %d (first %d), %v", replayed, again.PurchaseID, first.PurchaseID, err)
	}

	// The same key with another request.
	req2 := req
	req2.AmountCents = 6_000
	_, err = w.terminal.Purchase(ctx, "till-1", req2, nil)
	e := apiError(t, err, http.StatusUnprocessableEntity, "idempotency_key_reused")
	if e.Field != "Idempotency-Key" || !errors.Is(err, client.ErrIdempotencyKeyReused) {
		t.Errorf("err = %+v", e)
	}

	// Beyond the float.
	_, err = w.cashier.Purchase(ctx, "till-2", vend.PurchaseRequest{Meter: w.meter, AmountCents: 2 * w.floatCents}, nil)
	apiError(t, err, http.StatusConflict, "insufficient_float")
	if !errors.Is(err, client.ErrInsufficientFloat) {
		t.Errorf("errors.Is(%v, ErrInsufficientFloat) = false", err)
	}

	// A receipt not asked for is not decoded, and the sale still happens.
	if _, err := w.cashier.Purchase(ctx, "till-3", req, nil); err != nil {
		t.Fatal(err)
	}
	vs, err := w.sup.Vendors(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(vs) != 1 || vs[0].FloatCents != w.floatCents-2*first.Paid {
		t.Errorf("vendors = %+v, want float %d", vs, w.floatCents-2*first.Paid)
	}
}

func TestProbesAndMetrics(t *testing.T) {
	ctx := context.Background()
	w := start(t)
	c := client.New(w.h.URL())
	for _, p := range []string{"/healthz", "/readyz"} {
		if m, err := c.Probe(ctx, p); err != nil || len(m) == 0 {
			t.Errorf("%s = %v, %v", p, m, err)
		}
	}
	m, err := c.Metrics(ctx)
	if err != nil || len(m) == 0 {
		t.Errorf("metrics: %d bytes, %v", len(m), err)
	}
}
