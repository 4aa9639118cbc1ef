package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"sluice/auditlog"
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

const pan = "600727000000000009"

// clock is the test's time, shared by vending, the dispatcher and the
// receivers.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

type harness struct {
	t       *testing.T
	db      *sqlstore.DB
	clock   *clock
	vend    *vend.Service
	cashier vend.Actor
	admin   *servertest.Client // an administrator's API key
	auditor *servertest.Client // an auditor's API key
	box     *Box
}

func newHarness(t *testing.T, db *sqlstore.DB) *harness {
	t.Helper()
	ctx := context.Background()
	km := filekmstest.WithVendingKey(t)
	def := tarifftest.Domestic()
	h := &harness{t: t, db: db, clock: &clock{t: time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)}}
	var admin store.Operator
	err := db.Tx(ctx, func(tx store.Tx) error {
		v, err := tx.Vendors().Create(ctx, store.Vendor{Code: "OFFICE1", Name: "Office", DailyLimitCents: 10_000_000, FloatCents: 0})
		if err != nil {
			return err
		}
		if admin, err = tx.Operators().Create(ctx, store.Operator{Username: "admin", DisplayName: "a", Role: auth.Admin, PasswordHash: "x"}); err != nil {
			return err
		}
		if _, err = tx.Operators().Create(ctx, store.Operator{Username: "auditor1", DisplayName: "a", Role: auth.Auditor, PasswordHash: "x"}); err != nil {
			return err
		}
		c, err := tx.Operators().Create(ctx, store.Operator{Username: "cashier1", DisplayName: "c", Role: auth.Vendor, PasswordHash: "x", VendorID: v.ID})
		if err != nil {
			return err
		}
		h.cashier = vend.Actor{OperatorID: c.ID, Username: c.Username, Role: c.Role, VendorID: v.ID}
		if err := tx.Tariffs().Put(ctx, store.Tariff{Code: "DOM-2026", Definition: def}); err != nil {
			return err
		}
		if err := tx.SupplyGroups().Create(ctx, store.SupplyGroup{Code: "123457", Name: "North", DKGA: "04", EA: "11", BaseDate: 2014, KRN: 1, TI: 1}); err != nil {
			return err
		}
		cu, err := tx.Customers().Create(ctx, store.Customer{Account: "ACC-001", Name: "Thandi"})
		if err != nil {
			return err
		}
		_, err = tx.Meters().Create(ctx, store.Meter{Number: pan, Kind: store.MeterSTS, CustomerID: cu.ID, TariffCode: "DOM-2026", SGC: "123457", KRN: 1, TI: 1, KT: 2, BaseDate: 2014})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if h.box, err = NewBox(ctx, km); err != nil {
		t.Fatal(err)
	}
	as := auth.NewService(db, auth.Params{Memory: 64, Time: 1, Threads: 1}, h.clock.now)
	h.vend = vend.New(vend.Config{Store: db, Keys: vend.KMSKeys{KM: km}, Now: h.clock.now})
	if _, err := h.vend.Deposit(ctx, h.cashier, vend.DepositRequest{Vendor: "OFFICE1", AmountCents: 1_000_000, Reference: "SLIP-1"}); err != nil {
		t.Fatal(err)
	}
	by := auth.Principal{Operator: admin}
	srv := server.New(server.Config{Store: db, Auth: as, Vend: h.vend, Extra: Routes(NewAdmin(db, h.box, h.clock.now))})
	ts := httptest.NewServer(srv.Handler())
	t.Cleanup(ts.Close)
	for user, dst := range map[string]**servertest.Client{"admin": &h.admin, "auditor1": &h.auditor} {
		_, k, err := as.CreateAPIKey(ctx, by, user, "test")
		if err != nil {
			t.Fatal(err)
		}
		*dst = servertest.WithAPIKey(t, ts.URL, k)
	}
	return h
}

// seal chains the pending audit records, as the head-end's sealer does.
func (h *harness) seal() {
	h.t.Helper()
	if _, err := auditlog.Seal(context.Background(), h.db, nil, 100); err != nil {
		h.t.Fatal(err)
	}
}

// receiver is a subscriber's endpoint: it fails the first `fail`
// deliveries (fail < 0: all), checks every signature and keeps the events.
type receiver struct {
	mu     sync.Mutex
	secret []byte
	clock  *clock
	fail   int
	calls  int
	events []Event
	bad    []string
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.calls++
	if err := Verify(rc.secret, r.Header.Get(SignatureHeader), body, rc.clock.now(), DefaultTolerance); err != nil {
		rc.bad = append(rc.bad, err.Error())
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	if rc.fail < 0 || rc.calls <= rc.fail {
		http.Error(w, "try later", http.StatusServiceUnavailable)
		return
	}
	var ev Event
	json.Unmarshal(body, &ev)
	if ev.ID != r.Header.Get("Sluice-Event-Id") || ev.Type != r.Header.Get("Sluice-Event-Type") {
		rc.bad = append(rc.bad, "headers do not match the body")
	}
	rc.events = append(rc.events, ev)
	w.WriteHeader(http.StatusNoContent)
}

func (h *harness) subscribe(name string, rc *receiver, events ...string) NewSubscriberResponse {
	h.t.Helper()
	ts := httptest.NewServer(rc)
	h.t.Cleanup(ts.Close)
	var out NewSubscriberResponse
	h.admin.Must(201, "POST", "/webhooks/subscribers", SubscriberRequest{Name: name, URL: ts.URL + "/hook", Events: events}, &out)
	rc.secret = []byte(out.Secret)
	return out
}

func TestDeliveryRetriesWithBackoffUntilTheReceiverAnswers(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *sqlstore.DB) {
		h := newHarness(t, db)
		ctx := context.Background()
		rc := &receiver{clock: h.clock, fail: 2}
		h.subscribe("billing", rc, PurchaseCompleted, TokenReprinted)

		h.clock.add(time.Minute)
		res, err := h.vend.Purchase(ctx, h.cashier, "till-1", vend.PurchaseRequest{Meter: pan, AmountCents: 20000})
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := h.vend.Receipt(ctx, h.cashier, res.Receipt.PurchaseID, true); err != nil {
			t.Fatal(err)
		}
		d := New(Config{Store: db, Now: h.clock.now, BaseDelay: 10 * time.Second, MaxDelay: time.Minute, MaxAttempts: 5, Box: h.box})
		if n, err := d.Pump(ctx); err != nil || n != 0 {
			t.Fatalf("pump before sealing: %d %v", n, err)
		}
		h.seal()
		if n, err := d.Pump(ctx); err != nil || n == 0 {
			t.Fatalf("pump: %d %v", n, err)
		}
		if n, err := d.Pump(ctx); err != nil || n != 0 {
			t.Fatalf("second pump read %d records again (%v)", n, err)
		}
		// Rewinding the cursor (another replica, a crash before commit)
		// queues nothing twice.
		if err := db.Tx(ctx, func(tx store.Tx) error { return tx.Settings().Put(ctx, CursorKey, "0") }); err != nil {
			t.Fatal(err)
		}
		if _, err := d.Pump(ctx); err != nil {
			t.Fatal(err)
		}
		var pending []Message
		h.admin.Must(200, "GET", "/webhooks/messages?q=pending", nil, &pending)
		if len(pending) != 2 {
			t.Fatalf("%d pending messages, want 2 (purchase, reprint): %+v", len(pending), pending)
		}

		h.clock.add(time.Second)
		if n, err := d.Deliver(ctx); err != nil || n != 2 {
			t.Fatalf("first round attempted %d (%v)", n, err)
		}
		if n, _ := d.Deliver(ctx); n != 0 {
			t.Fatalf("retried %d before the back-off", n)
		}
		for round := 0; round < 3; round++ {
			h.clock.add(time.Minute + time.Second)
			if _, err := d.Deliver(ctx); err != nil {
				t.Fatal(err)
			}
		}
		rc.mu.Lock()
		defer rc.mu.Unlock()
		if len(rc.bad) > 0 {
			t.Fatalf("receiver refused: %v", rc.bad)
		}
		if len(rc.events) != 2 || rc.calls != 4 {
			t.Fatalf("receiver got %d events in %d calls, want 2 in 4", len(rc.events), rc.calls)
		}
		types := map[string]Event{}
		for _, ev := range rc.events {
			types[ev.Type] = ev
		}
		pe := types[PurchaseCompleted]
		if pe.Object != "purchase/"+itoa(res.Receipt.PurchaseID) || !strings.Contains(string(pe.Data), `"meter":"`+pan+`"`) {
			t.Fatalf("purchase event %+v %s", pe, pe.Data)
		}
		if strings.Contains(string(pe.Data), res.Receipt.Tokens[0].Token) {
			t.Fatalf("the payload carries the token digits")
		}
		if types[TokenReprinted].ID == "" {
			t.Fatalf("no reprint event: %+v", rc.events)
		}
		var delivered []Message
		h.auditor.Must(200, "GET", "/webhooks/messages?q=delivered", nil, &delivered)
		if len(delivered) != 2 {
			t.Fatalf("delivered %+v", delivered)
		}
		var detail MessageDetail
		h.auditor.Must(200, "GET", "/webhooks/messages/"+itoa(delivered[0].ID), nil, &detail)
		if len(detail.Deliveries) < 2 || detail.Deliveries[0].Status != 503 || detail.Deliveries[len(detail.Deliveries)-1].Status != 204 {
			t.Fatalf("delivery log %+v", detail.Deliveries)
		}
	})
}

func TestReceiverThatAlwaysFailsEndsInTheDeadLetterList(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *sqlstore.DB) {
		h := newHarness(t, db)
		ctx := context.Background()
		rc := &receiver{clock: h.clock, fail: -1}
		h.subscribe("broken", rc, AlertRaised)
		other := &receiver{clock: h.clock}
		h.subscribe("purchases-only", other, PurchaseCompleted)
		h.clock.add(time.Minute)
		// A producer that writes its event in its own transaction.
		err := db.Tx(ctx, func(tx store.Tx) error {
			return Emit(ctx, tx, Event{ID: "alert/17", Type: AlertRaised, Time: h.clock.now(), Object: "meter/" + pan,
				Data: json.RawMessage(`{"rule":"night-flow","severity":"high"}`)})
		})
		if err != nil {
			t.Fatal(err)
		}
		d := New(Config{Store: db, Now: h.clock.now, BaseDelay: time.Second, MaxDelay: 4 * time.Second, MaxAttempts: 3, Box: h.box})
		for round := 0; round < 5; round++ {
			if _, err := d.Deliver(ctx); err != nil {
				t.Fatal(err)
			}
			h.clock.add(5 * time.Second)
		}
		if calls, _, _ := rc.counts(); calls != 3 {
			t.Fatalf("broken receiver called %d times, want 3", calls)
		}
		if calls, _, _ := other.counts(); calls != 0 {
			t.Fatalf("a subscriber of other events was called %d times", calls)
		}
		var dead []Message
		h.admin.Must(200, "GET", "/webhooks/dead-letters", nil, &dead)
		if len(dead) != 1 || dead[0].EventID != "alert/17" || dead[0].Attempts != 3 {
			t.Fatalf("dead letters %+v", dead)
		}
		h.auditor.Must(403, "GET", "/webhooks/dead-letters", nil, nil)
		if !strings.Contains(dead[0].LastError, "503") {
			t.Fatalf("last error %q", dead[0].LastError)
		}
		// Retried by an administrator once the receiver is fixed.
		rc.mu.Lock()
		rc.fail = 0
		rc.mu.Unlock()
		var m Message
		h.admin.Must(200, "POST", "/webhooks/dead-letters/"+itoa(dead[0].ID)+"/retry", nil, &m)
		if m.State != "pending" {
			t.Fatalf("retry %+v", m)
		}
		// Retrying a pending message is a conflict.
		h.admin.Must(409, "POST", "/webhooks/dead-letters/"+itoa(dead[0].ID)+"/retry", nil, nil)
		if _, err := d.Deliver(ctx); err != nil {
			t.Fatal(err)
		}
		if _, events, bad := rc.counts(); len(events) != 1 || events[0].ID != "alert/17" || len(bad) != 0 {
			t.Fatalf("after retry: %+v %v", events, bad)
		}
	})
}

func TestSubscriberValidation(t *testing.T) {
	h := newHarness(t, storetest.OpenSQLite(t, false))
	for _, c := range []struct {
		req   SubscriberRequest
		field string
	}{
		{SubscriberRequest{Name: "x", URL: "http://billing.example/hook", Events: []string{PurchaseCompleted}}, "url"},
		{SubscriberRequest{Name: "x", URL: "https://user:pw@billing.example/hook", Events: []string{PurchaseCompleted}}, "url"},
		{SubscriberRequest{Name: "x", URL: "https://billing.example/hook", Events: []string{"purchase.deleted"}}, "events"},
		{SubscriberRequest{Name: "", URL: "https://billing.example/hook", Events: []string{PurchaseCompleted}}, "name"},
	} {
		if code, b := h.admin.Do("POST", "/webhooks/subscribers", c.req); code != 422 {
			t.Errorf("%+v: %d, want 422 on %s: %s", c.req, code, c.field, b)
		}
	}
	if code, b := h.auditor.Do("POST", "/webhooks/subscribers", SubscriberRequest{Name: "x", URL: "https://a.example/", Events: []string{PurchaseCompleted}}); code != 403 {
		t.Errorf("auditor subscribing: %d %s", code, b)
	}
}

func TestBackoffGrowsAndIsCapped(t *testing.T) {
	d := New(Config{BaseDelay: 10 * time.Second, MaxDelay: time.Hour})
	for n, want := range map[int]time.Duration{1: 10 * time.Second, 2: 20 * time.Second, 5: 160 * time.Second, 12: time.Hour, 40: time.Hour} {
		for i := 0; i < 20; i++ {
			if got := d.Backoff(n); got < want/2 || got > want {
				t.Fatalf("Backoff(%d) = %s, want within [%s, %s]", n, got, want/2, want)
			}
		}
	}
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func (rc *receiver) counts() (calls int, events []Event, bad []string) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return rc.calls, slices.Clone(rc.events), slices.Clone(rc.bad)
}

func TestRunDeliversInTheBackgroundAndStops(t *testing.T) {
	db := storetest.OpenSQLite(t, false)
	h := newHarness(t, db)
	rc := &receiver{clock: h.clock}
	h.subscribe("crm", rc, PurchaseCompleted)
	h.clock.add(time.Minute)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		New(Config{Store: db, Now: h.clock.now, Poll: 10 * time.Millisecond, Box: h.box}).Run(ctx)
		close(done)
	}()
	if _, err := h.vend.Purchase(context.Background(), h.cashier, "bg-1", vend.PurchaseRequest{Meter: pan, AmountCents: 10000}); err != nil {
		t.Fatal(err)
	}
	h.seal()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, events, _ := rc.counts(); len(events) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no delivery within 10 s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}

// TestSecretsAreSealedAtRest: the database holds no secret in clear, a
// dispatcher without the box cannot sign (and says why), and a sealed
// secret moved to another subscriber does not open.
func TestSecretsAreSealedAtRest(t *testing.T) {
	db := storetest.OpenSQLite(t, false)
	h := newHarness(t, db)
	ctx := context.Background()
	rc := &receiver{clock: h.clock}
	created := h.subscribe("crm", rc, AlertRaised)
	other := h.subscribe("other", &receiver{clock: h.clock}, AlertRaised)
	var subs []store.WebhookSubscriber
	if err := db.Read(ctx, func(tx store.Tx) error {
		var err error
		subs, err = tx.Webhooks().Subscribers(ctx)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	for _, s := range subs {
		if bytes.Contains(s.Secret, []byte("whsec_")) || bytes.Contains(s.Secret, []byte(created.Secret[6:])) {
			t.Fatalf("subscriber %s: secret stored in clear", s.Name)
		}
		got, err := openSecret(h.box, s.Name, s.Secret)
		want := created.Secret
		if s.Name == "other" {
			want = other.Secret
		}
		if err != nil || string(got) != want {
			t.Fatalf("subscriber %s: box opens %q, %v", s.Name, got, err)
		}
		if _, err := openSecret(nil, s.Name, s.Secret); !errors.Is(err, ErrSealed) {
			t.Fatalf("opened without the box: %v", err)
		}
	}
	if _, err := openSecret(h.box, "other", subs[0].Secret); err == nil {
		t.Fatal("crm's sealed secret opens as other's")
	}
	h.clock.add(time.Minute)
	if err := db.Tx(ctx, func(tx store.Tx) error {
		return Emit(ctx, tx, Event{ID: "alert/1", Type: AlertRaised, Time: h.clock.now(), Object: "meter/" + pan})
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := New(Config{Store: db, Now: h.clock.now}).Deliver(ctx); err != nil {
		t.Fatal(err)
	}
	var pending []Message
	h.admin.Must(200, "GET", "/webhooks/messages?q=pending", nil, &pending)
	if len(pending) != 2 || !strings.Contains(pending[0].LastError, "sealed") {
		t.Fatalf("without the box: %+v", pending)
	}
	if calls, _, _ := rc.counts(); calls != 0 {
		t.Fatalf("a delivery went out unsigned")
	}
}
