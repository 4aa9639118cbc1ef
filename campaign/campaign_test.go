package campaign

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"sluice/keys"
	"sluice/kms"
	"sluice/kms/filekms/filekmstest"
	"sluice/meter"
	"sluice/store"
	"sluice/store/sqlstore"
	"sluice/store/storetest"
	"sluice/sts"
	"sluice/tariff/tarifftest"
	"sluice/vend"
	"sluice/voucher"
)

const sgc = "123457"

var (
	vendingKey1 = []byte("\xab\xab\xab\xab\xab\xab\xab\xab\x94\x94\x94\x94\x94\x94\x94\x94\x01\x23\x45\x67")
	vendingKey2 = []byte("\x11\x22\x33\x44\x55\x66\x77\x88\x99\xaa\xbb\xcc\xdd\xee\xff\x00\x01\x02\x03\x04")
	clock       = time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
)

// stopKeys is the vending Keys that cancels a context after a number of
// decoder-key derivations: a crash in the middle of a batch.
type stopKeys struct {
	vend.Keys
	calls  atomic.Int64
	stopAt atomic.Int64 // 0: never
	cancel atomic.Pointer[context.CancelFunc]
}

func (k *stopKeys) DecoderKey(ctx context.Context, g store.SupplyGroup, krn int, id sts.KeyID, pan sts.PAN, base sts.BaseDate) ([]byte, error) {
	if n := k.calls.Add(1); n == k.stopAt.Load() {
		if c := k.cancel.Load(); c != nil {
			(*c)()
		}
	}
	return k.Keys.DecoderKey(ctx, g, krn, id, pan, base)
}

type env struct {
	db      *sqlstore.DB
	km      kms.KeyManager
	keys    *stopKeys
	vend    *vend.Service
	svc     *Service
	cashier vend.Actor
	pans    []string
	cards   []string
	now     time.Time
}

// pan returns the i-th test PAN (IIN 600727, DRN i, Luhn digit).
func pan(i int) string {
	s := fmt.Sprintf("600727%011d", i)
	d, _ := sts.LuhnDigit(s)
	return s + fmt.Sprint(d)
}

// newEnv makes a store with a supply group on KRN 1 and base date 1993,
// n STS meters on it, and cards card/AMI meters.
func newEnv(tb testing.TB, db *sqlstore.DB, n, cards int) *env {
	tb.Helper()
	ctx := context.Background()
	km := filekmstest.WithKeys(tb)
	if _, err := keys.ImportVendingKeys(ctx, km, []keys.VendingKey{
		{SGC: 123457, KRN: 1, Kind: kms.STSDKGA04, Key: vendingKey1},
		{SGC: 123457, KRN: 2, Kind: kms.STSDKGA04, Key: vendingKey2},
	}); err != nil {
		tb.Fatal(err)
	}
	def := tarifftest.Domestic()
	e := &env{db: db, km: km, now: clock, keys: &stopKeys{Keys: vend.KMSKeys{KM: km}}}
	err := db.Tx(ctx, func(tx store.Tx) error {
		v, err := tx.Vendors().Create(ctx, store.Vendor{Code: "OFFICE1", Name: "Main office", DailyLimitCents: 100_000_000, FloatCents: 10_000_000})
		if err != nil {
			return err
		}
		op, err := tx.Operators().Create(ctx, store.Operator{Username: "cashier1", DisplayName: "Cashier", Role: "vendor", PasswordHash: "x", VendorID: v.ID})
		if err != nil {
			return err
		}
		e.cashier = vend.Actor{OperatorID: op.ID, Username: op.Username, Role: op.Role, VendorID: v.ID}
		if err := tx.Tariffs().Put(ctx, store.Tariff{Code: "DOM-2026", Definition: def}); err != nil {
			return err
		}
		if err := tx.SupplyGroups().Create(ctx, store.SupplyGroup{Code: sgc, Name: "North", DKGA: "04", EA: "11", BaseDate: 1993, KRN: 1, TI: 1}); err != nil {
			return err
		}
		cust, err := tx.Customers().Create(ctx, store.Customer{Account: "ACC-001", Name: "Thandi Nkosi"})
		if err != nil {
			return err
		}
		for i := range n {
			p := pan(i + 1)
			if _, err := tx.Meters().Create(ctx, store.Meter{Number: p, Kind: store.MeterSTS, CustomerID: cust.ID, TariffCode: "DOM-2026", SGC: sgc, KRN: 1, TI: 1, KT: 2, BaseDate: 1993}); err != nil {
				return err
			}
			e.pans = append(e.pans, p)
		}
		for i := range cards {
			kind := store.MeterCard
			if i%2 == 1 {
				kind = store.MeterAMI
			}
			num := fmt.Sprint(4700000 + i)
			if _, err := tx.Meters().Create(ctx, store.Meter{Number: num, Kind: kind, CustomerID: cust.ID, TariffCode: "DOM-2026"}); err != nil {
				return err
			}
			e.cards = append(e.cards, num)
		}
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	now := func() time.Time { return e.now }
	e.vend = vend.New(vend.Config{Store: db, Keys: e.keys, Now: now})
	e.svc = New(Config{Store: db, Vend: e.vend, KM: km, Now: now})
	return e
}

// startApproved proposes a campaign as one operator and approves it as
// another (dual control).
func (e *env) startApproved(ctx context.Context, spec Spec) (store.Campaign, int, error) {
	c, n, err := e.svc.Start(ctx, "operator:admin", spec)
	if err == nil {
		_, err = e.svc.Approve(ctx, "operator:supervisor", c.ID)
	}
	return c, n, err
}

// decoder is meter i as manufactured: KRN 1, base date 1993.
func decoder(t *testing.T, p string) *sts.Decoder {
	t.Helper()
	id := sts.KeyID{KT: 2, SGC: 123457, TI: 1, KRN: 1}
	key, err := sts.DKGA04(vendingKey1, id, sts.PAN(p), sts.Base1993, sts.EA11)
	if err != nil {
		t.Fatal(err)
	}
	d, err := sts.NewDecoder(sts.DecoderConfig{EA: sts.EA11, Key: key, ID: id, KEN: 255, Base: sts.Base1993})
	if err != nil {
		t.Fatal(err)
	}
	return &d
}

func (e *env) meter(t *testing.T, number string) store.Meter {
	t.Helper()
	var m store.Meter
	err := e.db.Read(context.Background(), func(tx store.Tx) (err error) {
		m, err = tx.Meters().ByNumber(context.Background(), number)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// keyChangeTokens returns every key-change token a meter was ever issued,
// by campaigns, purchases and engineering alike.
func (e *env) keyChangeTokens(t *testing.T, number string) []store.Token {
	t.Helper()
	m := e.meter(t, number)
	var out []store.Token
	err := e.db.Read(context.Background(), func(tx store.Tx) error {
		all, err := tx.Tokens().ByMeter(context.Background(), m.ID, 1000)
		for i := len(all) - 1; i >= 0; i-- { // oldest first
			if all[i].Kind == store.TokenKeyChange {
				out = append(out, all[i])
			}
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestRolloverCampaignResumesWithoutSecondSets(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *sqlstore.DB) {
		const meters = 200
		e := newEnv(t, db, meters, 0)
		e.svc.cfg.Batch = 50
		ctx := context.Background()
		c, n, err := e.startApproved(ctx, Spec{Name: "tid-rollover", Kind: KindSTS, SupplyGroup: sgc, KRN: 2, TI: -1, BaseDate: 2014})
		if err != nil {
			t.Fatal(err)
		}
		if n != meters {
			t.Fatalf("enrolled %d, want %d", n, meters)
		}

		// 1. Cancelled between batches: after the first batch commits.
		runCtx, cancel := context.WithCancel(ctx)
		var seen []Progress
		_, err = e.svc.Run(runCtx, c.ID, "operator:admin", func(p Progress) { seen = append(seen, p); cancel() })
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("run cancelled between batches: %v", err)
		}
		st, err := e.svc.Status(ctx, c.ID)
		if err != nil {
			t.Fatal(err)
		}
		if p := st.Progress; p.Issued != 50 || p.Pending != 150 || p.Total != meters || len(seen) != 1 || seen[0].Issued != 50 {
			t.Fatalf("after one batch: %+v (callbacks %+v)", p, seen)
		}

		// 2. A purchase for a meter the campaign issued to finds no key
		// change due; one for a meter it has not reached yet issues the
		// key change itself, and the campaign will leave that meter alone.
		issuedMeter, laterMeter := e.pans[10], e.pans[180]
		r1, err := e.vend.Purchase(ctx, e.cashier, "p-issued", vend.PurchaseRequest{Meter: issuedMeter, AmountCents: 20000})
		if err != nil {
			t.Fatal(err)
		}
		for _, tok := range r1.Receipt.Tokens {
			if tok.Kind == store.TokenKeyChange {
				t.Fatalf("purchase after the campaign set issued a second key change: %+v", r1.Receipt.Tokens)
			}
		}
		r2, err := e.vend.Purchase(ctx, e.cashier, "p-later", vend.PurchaseRequest{Meter: laterMeter, AmountCents: 20000})
		if err != nil {
			t.Fatal(err)
		}
		if r2.Receipt.Tokens[0].Kind != store.TokenKeyChange {
			t.Fatalf("purchase for a meter still behind: %+v", r2.Receipt.Tokens)
		}

		// 3. Cancelled inside a batch: the key manager "crashes" 20
		// meters into the second batch.
		runCtx, cancel = context.WithCancel(ctx)
		e.keys.cancel.Store(&cancel)
		e.keys.stopAt.Store(e.keys.calls.Load() + 3*20)
		_, err = e.svc.Run(runCtx, c.ID, "operator:admin", nil)
		if err == nil {
			t.Fatal("run cancelled inside a batch returned no error")
		}
		e.keys.stopAt.Store(0)
		st, _ = e.svc.Status(ctx, c.ID)
		if p := st.Progress; p.Issued != 50 || p.Pending != 150 {
			t.Fatalf("the interrupted batch left traces: %+v", p)
		}

		// 4. Resume to the end.
		var last Progress
		prog, err := e.svc.Run(ctx, c.ID, "operator:admin", func(p Progress) {
			if p.Done() < last.Done() {
				t.Errorf("progress went back: %+v after %+v", p, last)
			}
			last = p
		})
		if err != nil {
			t.Fatal(err)
		}
		if prog.Pending != 0 || prog.Issued != meters || prog.Failed != 0 || prog.ThisRun != 150 {
			t.Fatalf("final progress %+v", prog)
		}
		// A second run has nothing to do.
		if again, err := e.svc.Run(ctx, c.ID, "operator:admin", nil); err != nil || again.ThisRun != 0 {
			t.Fatalf("second run: %+v %v", again, err)
		}

		// Every meter holds exactly one key-change set, and a real
		// decoder takes it in order to KRN 2 on base date 2014.
		for i, p := range e.pans {
			kc := e.keyChangeTokens(t, p)
			if len(kc) != 4 {
				t.Fatalf("meter %d (%s) has %d key-change tokens, want one set of 4", i, p, len(kc))
			}
			d := decoder(t, p)
			for _, tok := range kc {
				if _, err := d.AcceptDigits(tok.Digits); err != nil {
					t.Fatalf("meter %s refused key-change token %d: %v", p, tok.Ordinal, err)
				}
			}
			if id := d.KeyID(); id.KRN != 2 || d.Base() != sts.Base2014 {
				t.Fatalf("meter %s after the set: KRN %d base %d", p, id.KRN, d.Base())
			}
			m := e.meter(t, p)
			if m.KRN != 2 || m.BaseDate != 2014 {
				t.Fatalf("meter row %s: KRN %d base %d", p, m.KRN, m.BaseDate)
			}
			if i == 0 {
				// Credit after the rollover opens under the new key.
				r, err := e.vend.Purchase(ctx, e.cashier, "after-0", vend.PurchaseRequest{Meter: p, AmountCents: 20000})
				if err != nil {
					t.Fatal(err)
				}
				for _, tok := range r.Receipt.Tokens {
					if tok.Kind == store.TokenKeyChange {
						t.Fatal("second key change after the campaign")
					}
					if _, err := d.AcceptDigits(tok.Token); err != nil {
						t.Fatalf("credit after rollover refused: %v", err)
					}
				}
			}
		}
		ms, toks, err := e.svc.MeterTokens(ctx, c.ID, laterMeter)
		if err != nil || len(toks) != 0 || ms.State != store.CampaignIssued || ms.Detail == "" {
			t.Fatalf("meter moved by a purchase: %+v %d tokens %v", ms, len(toks), err)
		}

		// Delivery and confirmation.
		if err := e.svc.Deliver(ctx, "operator:eng", c.ID, e.pans[0]); err != nil {
			t.Fatal(err)
		}
		if err := e.svc.Deliver(ctx, "operator:eng", c.ID, e.pans[0]); !errors.Is(err, store.ErrConflict) {
			t.Fatalf("second delivery: %v", err)
		}
		m0 := e.meter(t, e.pans[0])
		if n, err := Confirm(ctx, db, m0.ID, Evidence{Source: "telemetry", At: clock, KRN: 1, TI: 1, BaseDate: 1993}); err != nil || n != 0 {
			t.Fatalf("old key reported: %d %v", n, err)
		}
		if n, err := Confirm(ctx, db, m0.ID, Evidence{Source: "telemetry", At: clock, KRN: 2, TI: 1, BaseDate: 2014}); err != nil || n != 1 {
			t.Fatalf("new key reported: %d %v", n, err)
		}
		if n, err := Confirm(ctx, db, m0.ID, Evidence{Source: "telemetry", At: clock, KRN: 2, TI: 1, BaseDate: 2014}); err != nil || n != 0 {
			t.Fatalf("repeated report: %d %v", n, err)
		}
		// The meter's "key changed" event confirms too, but not one that
		// predates the campaign's set.
		m1 := e.meter(t, e.pans[1])
		if n, err := Confirm(ctx, db, m1.ID, Evidence{Source: "event 12", At: clock.Add(-time.Hour), STSKeyChanged: true}); err != nil || n != 0 {
			t.Fatalf("stale key-changed event: %d %v", n, err)
		}
		if n, err := Confirm(ctx, db, m1.ID, Evidence{Source: "event 12", At: clock.Add(time.Hour), STSKeyChanged: true}); err != nil || n != 1 {
			t.Fatalf("key-changed event: %d %v", n, err)
		}
		rep, err := e.svc.Report(ctx, c.ID)
		if err != nil {
			t.Fatal(err)
		}
		if rep.Progress.Confirmed != 2 || len(rep.Unconfirmed) != meters-2 || len(rep.Failed) != 0 || rep.TokensIssued != 4*(meters-1) || rep.State != store.CampaignRunning {
			t.Fatalf("report: %+v confirmed, %d unconfirmed, %d failed, %d tokens, %s", rep.Progress, len(rep.Unconfirmed), len(rep.Failed), rep.TokensIssued, rep.State)
		}
		// Confirm the rest: the campaign completes.
		for _, p := range e.pans[2:] {
			if n, err := Confirm(ctx, db, e.meter(t, p).ID, Evidence{Source: "telemetry", KRN: 2, TI: 1, BaseDate: 2014}); err != nil || n != 1 {
				t.Fatalf("confirm %s: %d %v", p, n, err)
			}
		}
		st, _ = e.svc.Status(ctx, c.ID)
		if st.State != store.CampaignDone || st.Progress.Confirmed != meters {
			t.Fatalf("after all confirmations: %s %+v", st.State, st.Progress)
		}
		if _, err := e.svc.Run(ctx, c.ID, "x", nil); !errors.Is(err, ErrFinished) {
			t.Fatalf("run of a done campaign: %v", err)
		}
		// One campaign.issue record per committed batch (4 of 50), naming
		// every meter once.
		wantAudit(t, db, map[string]int{"campaign.start": 1, "campaign.issue": meters / 50, "campaign.deliver": 1, "campaign.confirm": meters, "campaign.done": 1})
		listed := map[string]int{}
		err = db.Read(ctx, func(tx store.Tx) error {
			recs, err := tx.Audit().Pending(ctx, 100000)
			for _, r := range recs {
				if r.Action != "campaign.issue" {
					continue
				}
				var d struct{ Meters []struct{ Meter string } }
				if err := json.Unmarshal(r.Details, &d); err != nil {
					return err
				}
				for _, m := range d.Meters {
					listed[m.Meter]++
				}
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range e.pans {
			if listed[p] != 1 {
				t.Fatalf("meter %s in %d campaign.issue records", p, listed[p])
			}
		}
	})
}

func TestConcurrentRunsIssueOnce(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *sqlstore.DB) {
		e := newEnv(t, db, 60, 0)
		e.svc.cfg.Batch = 10
		ctx := context.Background()
		c, _, err := e.startApproved(ctx, Spec{Name: "krn2", Kind: KindSTS, SupplyGroup: sgc, KRN: 2, TI: -1, BaseDate: 2014})
		if err != nil {
			t.Fatal(err)
		}
		// Two head-end replicas run the same campaign at once.
		var wg sync.WaitGroup
		var took atomic.Int64
		errs := make(chan error, 2)
		for range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				svc := New(Config{Store: db, Vend: vend.New(vend.Config{Store: db, Keys: vend.KMSKeys{KM: e.km}, Now: func() time.Time { return clock }}), KM: e.km, Batch: 10})
				p, err := svc.Run(ctx, c.ID, "operator:admin", nil)
				took.Add(int64(p.ThisRun))
				errs <- err
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		if took.Load() != 60 {
			t.Fatalf("runs took %d meters between them, want 60", took.Load())
		}
		for _, p := range e.pans {
			if n := len(e.keyChangeTokens(t, p)); n != 4 {
				t.Fatalf("meter %s: %d key-change tokens", p, n)
			}
		}
	})
}

func TestCampaignRefusals(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *sqlstore.DB) {
		e := newEnv(t, db, 2, 2)
		ctx := context.Background()
		for _, s := range []Spec{
			{Name: "", Kind: KindSTS, SupplyGroup: sgc, KRN: 2},
			{Name: "x", Kind: "bogus"},
			{Name: "x", Kind: KindSTS, SupplyGroup: sgc, KRN: 3, TI: -1},      // no vending key KRN 3
			{Name: "x", Kind: KindSTS, SupplyGroup: "999999", KRN: 2, TI: -1}, // no group
			{Name: "x", Kind: KindSTS, SupplyGroup: sgc, KRN: 2, TI: -1, BaseDate: 2000},
			{Name: "x", Kind: KindSTS, SupplyGroup: sgc, KRN: 2, TI: -1, Meters: []string{"4700000"}}, // a card meter
			{Name: "x", Kind: KindVoucherKey, Role: "credit"},                                         // not rotated yet
			{Name: "x", Kind: KindVoucherKey, Role: "firmware"},
			{Name: "x", Kind: KindMeterKey, KeyVersion: 1},
			{Name: "x", Kind: KindMeterKey, KeyVersion: 2, Meters: []string{e.pans[0]}}, // an STS meter
		} {
			if _, _, err := e.startApproved(ctx, s); !errors.Is(err, ErrInvalid) {
				t.Errorf("%+v: %v, want ErrInvalid", s, err)
			}
		}
		// Nothing was stored: the group is still on KRN 1.
		err := db.Read(ctx, func(tx store.Tx) error {
			g, err := tx.SupplyGroups().Get(ctx, sgc)
			if g.KRN != 1 || g.BaseDate != 1993 {
				t.Errorf("group moved by a refused start: %+v", g)
			}
			cs, _ := tx.Campaigns().List(ctx, 10)
			if len(cs) != 0 {
				t.Errorf("refused starts stored %d campaigns", len(cs))
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		c, _, err := e.startApproved(ctx, Spec{Name: "one", Kind: KindSTS, SupplyGroup: sgc, KRN: 2, TI: -1, Meters: []string{e.pans[0]}})
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := e.startApproved(ctx, Spec{Name: "one", Kind: KindMeterKey, KeyVersion: 2}); !errors.Is(err, ErrInvalid) {
			t.Fatalf("duplicate name: %v", err)
		}
		// A cancellation during a run stops it at the next batch.
		e.svc.cfg.Batch = 1
		more, _, err := e.startApproved(ctx, Spec{Name: "two", Kind: KindMeterKey, KeyVersion: 2})
		if err != nil {
			t.Fatal(err)
		}
		_, err = e.svc.Run(ctx, more.ID, "operator:admin", func(Progress) {
			if err := e.svc.Cancel(ctx, "operator:supervisor", more.ID); err != nil {
				t.Error(err)
			}
		})
		if !errors.Is(err, ErrFinished) {
			t.Fatalf("run cancelled meanwhile: %v", err)
		}
		if st, _ := e.svc.Status(ctx, more.ID); st.Progress.Issued != 1 || st.Progress.Pending != 1 {
			t.Fatalf("after the cancellation: %+v", st.Progress)
		}
		if err := e.svc.Cancel(ctx, "operator:admin", c.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := e.svc.Run(ctx, c.ID, "x", nil); !errors.Is(err, ErrFinished) {
			t.Fatalf("run of a cancelled campaign: %v", err)
		}
	})
}

func TestVoucherKeyCampaign(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *sqlstore.DB) {
		e := newEnv(t, db, 1, 6)
		ctx := context.Background()
		// What the meters were provisioned with.
		oldRing, err := keys.TrustedKeys(ctx, e.km)
		if err != nil {
			t.Fatal(err)
		}
		for _, role := range []string{"credit", "management"} {
			name := keys.CreditSigning
			if role == "management" {
				name = keys.ManagementSigning
			}
			oldInfo, err := e.km.Key(ctx, kms.Ref(name))
			if err != nil {
				t.Fatal(err)
			}
			newInfo, err := e.km.Rotate(ctx, name)
			if err != nil {
				t.Fatal(err)
			}
			c, n, err := e.startApproved(ctx, Spec{Name: "rotate-" + role, Kind: KindVoucherKey, Role: role})
			if err != nil {
				t.Fatal(err)
			}
			if n != len(e.cards) {
				t.Fatalf("enrolled %d, want the %d card and AMI meters", n, len(e.cards))
			}
			p, err := e.svc.Run(ctx, c.ID, "operator:admin", nil)
			if err != nil || p.Issued != int64(len(e.cards)) {
				t.Fatalf("run: %+v %v", p, err)
			}
			for _, num := range e.cards {
				m := e.meter(t, num)
				_, toks, err := e.svc.MeterTokens(ctx, c.ID, num)
				if err != nil || len(toks) != 1 {
					t.Fatalf("meter %s: %d vouchers %v", num, len(toks), err)
				}
				var id uint64
				fmt.Sscan(num, &id)
				// The meter, still trusting only the keys it was made
				// with, accepts the voucher ...
				v, err := voucher.Open(toks[0].Voucher, oldRing, id, clock)
				if err != nil {
					t.Fatalf("meter %s refused the key-change voucher: %v", num, err)
				}
				if v.Kind != voucher.KindKeyChange || !v.NewKey.Equal(newInfo.Public.(ed25519.PublicKey)) ||
					v.Retire != voucher.KeyID(oldInfo.Public.(ed25519.PublicKey)) || int64(v.Sequence) != m.VoucherSeq {
					t.Fatalf("voucher %+v", v)
				}
				// ... and reports the new ring.
				ids := []uint32{voucher.KeyID(v.NewKey)}
				for _, k := range oldRing {
					if voucher.KeyID(k.Public) != v.Retire {
						ids = append(ids, voucher.KeyID(k.Public))
					}
				}
				if n, err := Confirm(ctx, db, m.ID, Evidence{Source: "frame", TrustedKeyIDs: ids}); err != nil || n != 1 {
					t.Fatalf("confirm %s: %d %v", num, n, err)
				}
			}
			// The meters now trust the rotated key in place of the old.
			for i, k := range oldRing {
				if voucher.KeyID(k.Public) == voucher.KeyID(oldInfo.Public.(ed25519.PublicKey)) {
					oldRing[i].Public = newInfo.Public.(ed25519.PublicKey)
				}
			}
			st, _ := e.svc.Status(ctx, c.ID)
			if st.State != store.CampaignDone {
				t.Fatalf("campaign %s %s", c.Name, st.State)
			}
		}
	})
}

func TestCampaignOfFailedMetersEnds(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *sqlstore.DB) {
		e := newEnv(t, db, 3, 0)
		ctx := context.Background()
		c, _, err := e.startApproved(ctx, Spec{Name: "krn2", Kind: KindSTS, SupplyGroup: sgc, KRN: 2, TI: -1})
		if err != nil {
			t.Fatal(err)
		}
		// The vending key of KRN 2 is withdrawn after the start: no meter
		// can take the campaign.
		err = db.Tx(ctx, func(tx store.Tx) error {
			g, err := tx.SupplyGroups().Get(ctx, sgc)
			if err != nil {
				return err
			}
			g.KRN = 3
			return tx.SupplyGroups().Update(ctx, g)
		})
		if err != nil {
			t.Fatal(err)
		}
		p, err := e.svc.Run(ctx, c.ID, "operator:admin", nil)
		if err != nil || p.Failed != 3 {
			t.Fatalf("run: %+v %v", p, err)
		}
		rep, err := e.svc.Report(ctx, c.ID)
		if err != nil || rep.State != store.CampaignDone || len(rep.Failed) != 3 || rep.Failed[0].Detail == "" {
			t.Fatalf("report %+v %v", rep, err)
		}
		for _, p := range e.pans {
			if n := len(e.keyChangeTokens(t, p)); n != 0 {
				t.Fatalf("failed meter %s has %d tokens", p, n)
			}
		}
	})
}

func TestMeterKeyCampaign(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *sqlstore.DB) {
		e := newEnv(t, db, 1, 3)
		ctx := context.Background()
		c, _, err := e.startApproved(ctx, Spec{Name: "rekey-v2", Kind: KindMeterKey, KeyVersion: 2})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.svc.Run(ctx, c.ID, "operator:admin", nil); err != nil {
			t.Fatal(err)
		}
		m := e.meter(t, e.cards[0])
		if m.KeyVersion != 1 {
			t.Fatalf("key version moved before the meter confirmed: %d", m.KeyVersion)
		}
		if n, err := Confirm(ctx, db, m.ID, Evidence{Source: "provisioning", KeyVersion: 2}); err != nil || n != 1 {
			t.Fatalf("confirm: %d %v", n, err)
		}
		if m := e.meter(t, e.cards[0]); m.KeyVersion != 2 {
			t.Fatalf("key version after confirmation: %d", m.KeyVersion)
		}
	})
}

func wantAudit(t *testing.T, db *sqlstore.DB, want map[string]int) {
	t.Helper()
	ctx := context.Background()
	got := map[string]int{}
	err := db.Read(ctx, func(tx store.Tx) error {
		recs, err := tx.Audit().Pending(ctx, 100000)
		for _, r := range recs {
			got[r.Action]++
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	for a, n := range want {
		if got[a] != n {
			t.Errorf("%d %s audit records, want %d", got[a], a, n)
		}
	}
}

// TestPurchasesDuringCampaign races purchases against a running campaign:
// whichever reaches a meter first issues its key change, and no meter gets
// a second set.
func TestPurchasesDuringCampaign(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *sqlstore.DB) {
		const meters = 80
		e := newEnv(t, db, meters, 0)
		e.svc.cfg.Batch = 10
		ctx := context.Background()
		c, _, err := e.startApproved(ctx, Spec{Name: "race", Kind: KindSTS, SupplyGroup: sgc, KRN: 2, TI: -1, BaseDate: 2014})
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		errs := make(chan error, 4)
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := e.svc.Run(ctx, c.ID, "operator:admin", nil)
			errs <- err
		}()
		for w := range 3 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				// Walk the fleet from the far end, towards the campaign.
				for i := meters - 1 - w; i >= 0; i -= 6 {
					for try := 0; ; try++ {
						_, err := e.vend.Purchase(ctx, e.cashier, fmt.Sprintf("race-%d", i), vend.PurchaseRequest{Meter: e.pans[i], AmountCents: 10000})
						if err == nil {
							break
						}
						if !db.Retryable(err) || try == 20 {
							errs <- fmt.Errorf("purchase %d: %w", i, err)
							return
						}
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		// Whatever the interleaving, the run is done and every meter has
		// one set, which its decoder takes, followed by any credit.
		if p, err := e.svc.Run(ctx, c.ID, "operator:admin", nil); err != nil || p.Pending != 0 || p.Issued != meters {
			t.Fatalf("after the race: %+v %v", p, err)
		}
		byPurchase := 0
		for _, p := range e.pans {
			kc := e.keyChangeTokens(t, p)
			if len(kc) != 4 {
				t.Fatalf("meter %s: %d key-change tokens", p, len(kc))
			}
			if kc[0].PurchaseID != 0 {
				byPurchase++
			}
			d := decoder(t, p)
			for _, tok := range kc {
				if _, err := d.AcceptDigits(tok.Digits); err != nil {
					t.Fatalf("meter %s refused its key change: %v", p, err)
				}
			}
		}
		rep, err := e.svc.Report(ctx, c.ID)
		if err != nil || rep.TokensIssued != int64(4*(meters-byPurchase)) {
			t.Fatalf("campaign issued %d tokens; %d meters were moved by purchases (%v)", rep.TokensIssued, byPurchase, err)
		}
		t.Logf("%d of %d meters moved by a purchase, the rest by the campaign", byPurchase, meters)
	})
}

// TestVoucherKeyCampaignOnReferenceMeter plays a credit-key rotation on the
// reference meter (package meter): a credit voucher signed by the rotated
// key is refused until the campaign's key-change voucher is loaded, then
// accepted, and the old key is no longer trusted.
func TestVoucherKeyCampaignOnReferenceMeter(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *sqlstore.DB) {
		e := newEnv(t, db, 0, 1)
		ctx := context.Background()
		ring, err := keys.TrustedKeys(ctx, e.km)
		if err != nil {
			t.Fatal(err)
		}
		var id uint64
		fmt.Sscan(e.cards[0], &id)
		ee := meter.NewEEPROM(meter.DefaultEEPROMSize, meter.DefaultPageSize)
		if err := meter.Format(ee, meter.Provision{ID: id, Params: meter.DefaultParams(), Keys: meter.Keys{Trusted: ring}}); err != nil {
			t.Fatal(err)
		}
		m, err := meter.Boot(ee, meter.Deps{})
		if err != nil {
			t.Fatal(err)
		}
		old, err := e.km.Key(ctx, kms.Ref(keys.CreditSigning))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.km.Rotate(ctx, keys.CreditSigning); err != nil {
			t.Fatal(err)
		}
		c, _, err := e.startApproved(ctx, Spec{Name: "credit-v2", Kind: KindVoucherKey, Role: "credit"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.svc.Run(ctx, c.ID, "operator:admin", nil); err != nil {
			t.Fatal(err)
		}
		// A purchase after the rotation is signed by the new credit key.
		res, err := e.vend.Purchase(ctx, e.cashier, "after-rotation", vend.PurchaseRequest{Meter: e.cards[0], AmountCents: 20000})
		if err != nil {
			t.Fatal(err)
		}
		var credit []byte
		for _, tok := range res.Receipt.Tokens {
			if tok.Kind == store.TokenCredit {
				credit = tok.Voucher
			}
		}
		if _, err := m.LoadVoucher(clock, credit, meter.FromRemote); err == nil {
			t.Fatal("meter took credit signed by a key it does not trust yet")
		}
		_, toks, err := e.svc.MeterTokens(ctx, c.ID, e.cards[0])
		if err != nil || len(toks) != 1 {
			t.Fatalf("campaign voucher: %d %v", len(toks), err)
		}
		if _, err := m.LoadVoucher(clock, toks[0].Voucher, meter.FromRemote); err != nil {
			t.Fatalf("meter refused the key-change voucher: %v", err)
		}
		if rc, err := m.LoadVoucher(clock, credit, meter.FromRemote); err != nil || rc.Amount == 0 {
			t.Fatalf("meter refused credit under the rotated key: %+v %v", rc, err)
		}
		// The old credit key is retired in the meter.
		oldPub := old.Public.(ed25519.PublicKey)
		forged := voucher.Voucher{Kind: voucher.KindCredit, MeterID: id, Sequence: 50, Issued: clock, Expires: clock.Add(time.Hour), Unit: voucher.UnitLitres, Quantity: 1000}
		signer, err := kms.Signer(ctx, e.km, old.Ref())
		if err != nil {
			t.Fatal(err)
		}
		b, err := voucher.Sign(&forged, signer)
		if err != nil || forged.KeyID != voucher.KeyID(oldPub) {
			t.Fatalf("sign under the old key: %v", err)
		}
		if _, err := m.LoadVoucher(clock, b, meter.FromRemote); err == nil {
			t.Fatal("meter still takes credit under the retired key")
		}
	})
}

func TestCampaignDualControl(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *sqlstore.DB) {
		e := newEnv(t, db, 5, 0)
		ctx := context.Background()
		c, _, err := e.svc.Start(ctx, "operator:admin", Spec{Name: "rollover", Kind: KindSTS, SupplyGroup: sgc, KRN: 2, TI: -1, BaseDate: 2014})
		if err != nil {
			t.Fatal(err)
		}
		group := func() store.SupplyGroup {
			var g store.SupplyGroup
			if err := db.Read(ctx, func(tx store.Tx) (err error) { g, err = tx.SupplyGroups().Get(ctx, sgc); return err }); err != nil {
				t.Fatal(err)
			}
			return g
		}
		// Proposed, nothing moves: purchases see no key change due, and the
		// campaign does not run.
		if g := group(); g.KRN != 1 || g.BaseDate != 1993 {
			t.Fatalf("group moved by a proposal: %+v", g)
		}
		if _, err := e.svc.Run(ctx, c.ID, "operator:admin", nil); !errors.Is(err, ErrNotApproved) {
			t.Fatalf("run before approval: %v", err)
		}
		if _, err := e.svc.Approve(ctx, "operator:admin", c.ID); !errors.Is(err, ErrForbidden) {
			t.Fatalf("self-approval: %v", err)
		}
		st, err := e.svc.Approve(ctx, "operator:supervisor", c.ID)
		if err != nil {
			t.Fatal(err)
		}
		if st.ApprovedBy != "operator:supervisor" || st.ApprovedAt == nil {
			t.Fatalf("status %+v", st)
		}
		if _, err := e.svc.Approve(ctx, "operator:auditor", c.ID); !errors.Is(err, store.ErrConflict) {
			t.Fatalf("second approval: %v", err)
		}
		if g := group(); g.KRN != 2 || g.BaseDate != 2014 {
			t.Fatalf("group after approval: %+v", g)
		}
		if p, err := e.svc.Run(ctx, c.ID, "operator:admin", nil); err != nil || p.Issued != 5 {
			t.Fatalf("run: %+v %v", p, err)
		}
		wantAudit(t, db, map[string]int{"campaign.start": 1, "campaign.approve": 1})
	})
}
