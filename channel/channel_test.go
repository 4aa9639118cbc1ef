package channel

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"sluice/auth"
	"sluice/kms/filekms/filekmstest"
	"sluice/server"
	"sluice/server/servertest"
	"sluice/store"
	"sluice/store/sqlstore"
	"sluice/store/storetest"
	"sluice/tariff/tarifftest"
	"sluice/vend"
)

const (
	pan      = "600727000000000009"
	amiMeter = "5800001"
)

type harness struct {
	db       *sqlstore.DB
	till     *servertest.Client // the channel's terminal
	cashier  *servertest.Client // a counter cashier (not a channel)
	super    *servertest.Client // a supervisor
	shop     store.Vendor
	supActor vend.Actor
	vend     *vend.Service
}

func newHarness(t *testing.T, db *sqlstore.DB) *harness {
	t.Helper()
	ctx := context.Background()
	km := filekmstest.WithVendingKey(t)
	def := tarifftest.Domestic()
	h := &harness{db: db}
	var admin store.Operator
	var err error
	err = db.Tx(ctx, func(tx store.Tx) error {
		if h.shop, err = tx.Vendors().Create(ctx, store.Vendor{Code: "MOMO", Name: "Mobile money", DailyLimitCents: 10_000_000}); err != nil {
			return err
		}
		office, err := tx.Vendors().Create(ctx, store.Vendor{Code: "OFFICE1", Name: "Office", DailyLimitCents: 10_000_000})
		if err != nil {
			return err
		}
		if admin, err = tx.Operators().Create(ctx, store.Operator{Username: "admin", DisplayName: "a", Role: auth.Admin, PasswordHash: "x"}); err != nil {
			return err
		}
		for _, o := range []store.Operator{{Username: "momo-api", Role: auth.Vendor, VendorID: h.shop.ID}, {Username: "cashier1", Role: auth.Vendor, VendorID: office.ID},
			{Username: "super1", Role: auth.Supervisor}} {
			o.DisplayName, o.PasswordHash = o.Username, "x"
			if o, err = tx.Operators().Create(ctx, o); err != nil {
				return err
			}
			if o.Role == auth.Supervisor {
				h.supActor = vend.Actor{OperatorID: o.ID, Username: o.Username, Role: o.Role}
			}
		}
		if err := tx.Tariffs().Put(ctx, store.Tariff{Code: "DOM-2026", Definition: def}); err != nil {
			return err
		}
		if err := tx.SupplyGroups().Create(ctx, store.SupplyGroup{Code: "123457", Name: "North", DKGA: "04", EA: "11", BaseDate: 2014, KRN: 1, TI: 1}); err != nil {
			return err
		}
		c1, err := tx.Customers().Create(ctx, store.Customer{Account: "ACC-001", Name: "Thandi"})
		if err != nil {
			return err
		}
		if _, err := tx.Meters().Create(ctx, store.Meter{Number: pan, Kind: store.MeterSTS, CustomerID: c1.ID, TariffCode: "DOM-2026", SGC: "123457", KRN: 1, TI: 1, KT: 2, BaseDate: 2014}); err != nil {
			return err
		}
		c2, err := tx.Customers().Create(ctx, store.Customer{Account: "ACC-002", Name: "Lindiwe"})
		if err != nil {
			return err
		}
		_, err = tx.Meters().Create(ctx, store.Meter{Number: amiMeter, Kind: store.MeterAMI, CustomerID: c2.ID, TariffCode: "DOM-2026"})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	clock := time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)
	now := func() time.Time { return clock }
	as := auth.NewService(db, auth.Params{Memory: 64, Time: 1, Threads: 1}, now)
	h.vend = vend.New(vend.Config{Store: db, Keys: vend.KMSKeys{KM: km}, Now: now})
	for _, code := range []string{"MOMO", "OFFICE1"} {
		if _, err := h.vend.Deposit(ctx, h.supActor, vend.DepositRequest{Vendor: code, AmountCents: 1_000_000, Reference: "SLIP-" + code}); err != nil {
			t.Fatal(err)
		}
	}
	svc := New(db, h.vend, now, "ZAR")
	by := auth.Principal{Operator: admin}
	if _, err := svc.Configure(ctx, by, "MOMO", Settings{FeeFixedCents: 150, FeeRateBP: 50, MaxPurchaseCents: 100_000}); err != nil {
		t.Fatal(err)
	}
	key := func(user string) string {
		_, k, err := as.CreateAPIKey(ctx, by, user, "test")
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	srv := server.New(server.Config{Store: db, Auth: as, Vend: h.vend, Extra: Routes(svc)})
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	h.till = servertest.WithAPIKey(t, ts.URL, key("momo-api"))
	h.cashier = servertest.WithAPIKey(t, ts.URL, key("cashier1"))
	h.super = servertest.WithAPIKey(t, ts.URL, key("super1"))
	return h
}

func (h *harness) float() int64 {
	var v store.Vendor
	h.db.Read(context.Background(), func(tx store.Tx) error {
		var err error
		v, err = tx.Vendors().ByID(context.Background(), h.shop.ID)
		return err
	})
	return v.FloatCents
}

func (h *harness) balance(account string) int64 {
	var b int64
	h.db.Read(context.Background(), func(tx store.Tx) error {
		var err error
		b, err = tx.Ledger().Balance(context.Background(), account, "ZAR")
		return err
	})
	return b
}

func TestPurchaseRetryReturnsTheSameResultAndOneFee(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *sqlstore.DB) {
		h := newHarness(t, db)
		var trial Trial
		h.till.Must(200, "POST", "/channel/trial", TrialRequest{Meter: pan, AmountCents: 20000}, &trial)
		if trial.Breakdown == nil || trial.FeeCents != 150+(int64(trial.Breakdown.Paid())*50+5000)/10000 || trial.Refusal != "" {
			t.Fatalf("trial %+v", trial)
		}
		start := h.float()
		req := PurchaseRequest{ClientPurchaseID: "MM-000123", Meter: pan, AmountCents: 20000}
		// Concurrent duplicates and a later retry: one sale, one fee.
		var wg sync.WaitGroup
		bodies := make([][]byte, 4)
		for i := range bodies {
			wg.Add(1)
			go func() {
				defer wg.Done()
				code, b := h.till.Do("POST", "/channel/purchases", req)
				if code != 200 {
					t.Errorf("purchase: %d %s", code, b)
				}
				bodies[i] = b
			}()
		}
		wg.Wait()
		var first, again Result
		json.Unmarshal(bodies[0], &first)
		h.till.Must(200, "POST", "/channel/purchases", req, &again)
		if !again.Replayed || !bytes.Equal(first.Receipt, again.Receipt) {
			t.Fatalf("retry returned another receipt:\n%s\n%s", first.Receipt, again.Receipt)
		}
		for _, b := range bodies {
			var r Result
			json.Unmarshal(b, &r)
			if !bytes.Equal(r.Receipt, first.Receipt) {
				t.Fatalf("concurrent duplicate returned another receipt")
			}
		}
		var rc vend.Receipt
		json.Unmarshal(first.Receipt, &rc)
		if got, want := start-h.float(), rc.Paid+first.FeeCents; got != want {
			t.Fatalf("float drawn %d, want paid %d + fee %d once", got, rc.Paid, first.FeeCents)
		}
		if got := h.balance("fees:MOMO"); got != -first.FeeCents {
			t.Fatalf("fee income %d, want %d", got, -first.FeeCents)
		}
		code, b := h.till.Do("POST", "/channel/purchases", PurchaseRequest{ClientPurchaseID: "MM-000123", Meter: pan, AmountCents: 30000})
		if code != 422 || !strings.Contains(string(b), "idempotency_key_reused") {
			t.Fatalf("same ID, other request: %d %s", code, b)
		}
		var last LastResponse
		h.till.Must(200, "GET", "/channel/purchases/MM-000123", nil, &last)
		if !bytes.Equal(last.Receipt, first.Receipt) || last.State != "completed" {
			t.Fatalf("lookup %+v", last)
		}
		// Handing the tokens out again is a reprint, audited as one.
		var reprints int
		h.db.Read(context.Background(), func(tx store.Tx) error {
			recs, err := tx.Audit().Pending(context.Background(), 1000)
			for _, r := range recs {
				if r.Action == "vend.reprint" && r.Actor == "operator:momo-api" {
					reprints++
				}
			}
			return err
		})
		if reprints != 1 {
			t.Fatalf("%d audited reprints after one lookup", reprints)
		}
		code, b = h.till.Do("POST", "/channel/purchases", PurchaseRequest{ClientPurchaseID: "MM-000124", Meter: pan, AmountCents: 100_001})
		if code != 422 || !strings.Contains(string(b), `"field":"amount_cents"`) {
			t.Fatalf("over the per-purchase maximum: %d %s", code, b)
		}
		code, b = h.cashier.Do("POST", "/channel/purchases", req)
		if code != 403 || !strings.Contains(string(b), "not_a_channel") {
			t.Fatalf("counter cashier on the channel API: %d %s", code, b)
		}
		code, _ = h.super.Do("POST", "/channel/purchases", req)
		if code != 403 {
			t.Fatalf("supervisor selling: %d", code)
		}
		code, _ = h.till.Do("GET", "/channel/purchases/unknown-id", nil)
		if code != 404 {
			t.Fatalf("lookup of an unknown ID: %d", code)
		}
	})
}

func TestAdvicesAreIdempotentAndFollowTheReversalRule(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *sqlstore.DB) {
		h := newHarness(t, db)
		buy := func(id, meter string) Result {
			var r Result
			h.till.Must(200, "POST", "/channel/purchases", PurchaseRequest{ClientPurchaseID: id, Meter: meter, AmountCents: 20000}, &r)
			return r
		}
		// Confirmation, delivered three times: one answer.
		buy("C-1", pan)
		a1 := h.till.Must(200, "POST", "/channel/purchases/C-1/confirmation", nil, nil)
		a2 := h.till.Must(200, "POST", "/channel/purchases/C-1/confirmation", struct{}{}, nil)
		if !bytes.Equal(a1, a2) || !strings.Contains(string(a1), `"outcome":"confirmed"`) {
			t.Fatalf("repeated confirmation:\n%s\n%s", a1, a2)
		}
		code, b := h.till.Do("POST", "/channel/purchases/C-1/reversal", AdviceRequest{Reason: "changed my mind"})
		if code != 409 || !strings.Contains(string(b), "advice_conflict") {
			t.Fatalf("reversal after confirmation: %d %s", code, b)
		}

		// STS token: credit may be in the meter, so the channel's reversal is
		// referred and the sale stands.
		buy("S-1", pan)
		before := h.float()
		r1 := h.till.Must(200, "POST", "/channel/purchases/S-1/reversal", AdviceRequest{Reason: "till crashed"}, nil)
		r2 := h.till.Must(200, "POST", "/channel/purchases/S-1/reversal", AdviceRequest{Reason: "till crashed"}, nil)
		if !bytes.Equal(r1, r2) || !strings.Contains(string(r1), `"outcome":"referred"`) {
			t.Fatalf("STS reversal advice:\n%s\n%s", r1, r2)
		}
		if h.float() != before {
			t.Fatalf("a referred reversal moved the float")
		}
		var last LastResponse
		h.till.Must(200, "GET", "/channel/purchases/S-1", nil, &last)
		if last.State != "completed" || !bytes.Equal(last.Advice, bytes.TrimSpace(r1)) {
			t.Fatalf("after referral: state %s advice %s", last.State, last.Advice)
		}
		var referred []Answer
		h.super.Must(200, "GET", "/channel/referred", nil, &referred)
		if len(referred) != 1 || referred[0].ClientPurchaseID != "S-1" {
			t.Fatalf("referred list %+v", referred)
		}
		if code, _ := h.till.Do("GET", "/channel/referred", nil); code != 403 {
			t.Fatalf("channel reading the referral queue: %d", code)
		}

		// AMI voucher not yet delivered: reversed outright, fee refunded.
		before = h.float()
		res := buy("A-1", amiMeter)
		var rc vend.Receipt
		json.Unmarshal(res.Receipt, &rc)
		if h.float() != before-rc.Paid-res.FeeCents {
			t.Fatalf("AMI purchase drew %d", before-h.float())
		}
		x1 := h.till.Must(200, "POST", "/channel/purchases/A-1/reversal", AdviceRequest{Reason: "customer left"}, nil)
		x2 := h.till.Must(200, "POST", "/channel/purchases/A-1/reversal", AdviceRequest{Reason: "customer left"}, nil)
		if !bytes.Equal(x1, x2) || !strings.Contains(string(x1), `"outcome":"reversed"`) {
			t.Fatalf("AMI reversal advice:\n%s\n%s", x1, x2)
		}
		if h.float() != before {
			t.Fatalf("after reversal the float is %d, want %d (money and fee back)", h.float(), before)
		}
		code, _ = h.till.Do("POST", "/channel/purchases/A-1/confirmation", nil)
		if code != 409 {
			t.Fatalf("confirmation after reversal: %d", code)
		}
		// The same advice delivered concurrently: one reversal, one fee
		// refund, one answer.
		before = h.float()
		res = buy("A-2", amiMeter)
		var wg sync.WaitGroup
		answers := make([][]byte, 4)
		for i := range answers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				code, b := h.till.Do("POST", "/channel/purchases/A-2/reversal", AdviceRequest{Reason: "network failure"})
				if code != 200 {
					t.Errorf("concurrent reversal advice: %d %s", code, b)
				}
				answers[i] = b
			}()
		}
		wg.Wait()
		for _, a := range answers[1:] {
			if !bytes.Equal(a, answers[0]) {
				t.Fatalf("concurrent advices answered differently:\n%s\n%s", answers[0], a)
			}
		}
		if !strings.Contains(string(answers[0]), `"outcome":"reversed"`) || h.float() != before {
			t.Fatalf("concurrent reversal advices: %s; float %d, want %d", answers[0], h.float(), before)
		}
		if fees := h.balance("fees:MOMO"); fees != -2*(150+(19642*50+5000)/10000) {
			// C-1 and S-1 (20000 tendered, 19642 paid) keep their fees; A-1
			// and A-2 had theirs refunded.
			t.Fatalf("fee income %d", fees)
		}
		code, _ = h.till.Do("POST", "/channel/purchases/NOPE/confirmation", nil)
		if code != 404 {
			t.Fatalf("advice for an unknown purchase: %d", code)
		}
	})
}

func TestOpenAPIDocumentsTheChannelRoutes(t *testing.T) {
	srv := server.New(server.Config{Store: storetest.OpenSQLite(t, false), Auth: &auth.Service{}, Vend: &vend.Service{}, Extra: Routes(&Service{})})
	doc, _ := json.Marshal(srv.OpenAPI())
	for _, p := range []string{"/api/v1/channel/trial", "/api/v1/channel/purchases/{client_id}/reversal", "Example"} {
		if !strings.Contains(string(doc), p) {
			t.Errorf("OpenAPI document lacks %s", p)
		}
	}
}
