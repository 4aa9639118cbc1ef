package vend

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"sluice/keys"
	"sluice/kms"
	"sluice/kms/filekms/filekmstest"
	"sluice/ledger"
	"sluice/store"
	"sluice/store/sqlstore"
	"sluice/store/storetest"
	"sluice/sts"
	"sluice/tariff/tarifftest"
	"sluice/voucher"
)

const (
	pan       = "600727000000000009" // the STS vectors' PAN A
	cardMeter = "4700123"
	amiMeter  = "5800001"
	sgc       = "123457"
)

var (
	vendingKey1 = []byte("\xab\xab\xab\xab\xab\xab\xab\xab\x94\x94\x94\x94\x94\x94\x94\x94\x01\x23\x45\x67")
	vendingKey2 = []byte("\x11\x22\x33\x44\x55\x66\x77\x88\x99\xaa\xbb\xcc\xdd\xee\xff\x00\x01\x02\x03\x04")
	clock       = time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
)

type env struct {
	db      *sqlstore.DB
	km      kms.KeyManager
	svc     *Service
	cashier Actor
	vendor  store.Vendor
	now     time.Time
}

func newEnv(t *testing.T, db *sqlstore.DB, float int64) *env {
	t.Helper()
	ctx := context.Background()
	km := filekmstest.WithKeys(t)
	if _, err := keys.ImportVendingKeys(ctx, km, []keys.VendingKey{
		{SGC: 123457, KRN: 1, Kind: kms.STSDKGA04, Key: vendingKey1},
		{SGC: 123457, KRN: 2, Kind: kms.STSDKGA04, Key: vendingKey2},
	}); err != nil {
		t.Fatal(err)
	}
	def := tarifftest.Domestic()
	e := &env{db: db, km: km, now: clock}
	var err error
	err = db.Tx(ctx, func(tx store.Tx) error {
		if e.vendor, err = tx.Vendors().Create(ctx, store.Vendor{Code: "OFFICE1", Name: "Main office", DailyLimitCents: 10_000_000}); err != nil {
			return err
		}
		op, err := tx.Operators().Create(ctx, store.Operator{Username: "cashier1", DisplayName: "Cashier", Role: "vendor", PasswordHash: "x", VendorID: e.vendor.ID})
		if err != nil {
			return err
		}
		e.cashier = Actor{OperatorID: op.ID, Username: op.Username, Role: op.Role, VendorID: e.vendor.ID}
		if err := tx.Tariffs().Put(ctx, store.Tariff{Code: "DOM-2026", Definition: def}); err != nil {
			return err
		}
		if err := tx.SupplyGroups().Create(ctx, store.SupplyGroup{Code: sgc, Name: "North", DKGA: "04", EA: "11", BaseDate: 2014, KRN: 1, TI: 1}); err != nil {
			return err
		}
		c, err := tx.Customers().Create(ctx, store.Customer{Account: "ACC-001", Name: "Thandi Nkosi"})
		if err != nil {
			return err
		}
		if _, err := tx.Meters().Create(ctx, store.Meter{Number: pan, Kind: store.MeterSTS, CustomerID: c.ID, TariffCode: "DOM-2026",
			SGC: sgc, KRN: 1, TI: 1, KT: 2, BaseDate: 2014}); err != nil {
			return err
		}
		c2, err := tx.Customers().Create(ctx, store.Customer{Account: "ACC-002", Name: "Pieter van Wyk"})
		if err != nil {
			return err
		}
		if _, err = tx.Meters().Create(ctx, store.Meter{Number: cardMeter, Kind: store.MeterCard, CustomerID: c2.ID, TariffCode: "DOM-2026"}); err != nil {
			return err
		}
		_, err = tx.Meters().Create(ctx, store.Meter{Number: amiMeter, Kind: store.MeterAMI, CustomerID: c2.ID, TariffCode: "DOM-2026"})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	e.svc = New(Config{Store: db, Keys: KMSKeys{KM: km}, Now: func() time.Time { return e.now }})
	admin := Actor{OperatorID: e.cashier.OperatorID, Username: "supervisor"}
	if float > 0 {
		if _, err := e.svc.Deposit(ctx, admin, DepositRequest{Vendor: "OFFICE1", AmountCents: float, Reference: "SLIP-1"}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.svc.TakeOnDebt(ctx, admin, DebtRequest{Account: "ACC-001", AmountCents: 5000, Reference: "ARREARS-2026-10"}); err != nil {
		t.Fatal(err)
	}
	return e
}

// meterDecoder is the meter side: a real STS decoder holding the meter's
// decoder key under KRN 1, as manufactured.
func meterDecoder(t *testing.T, base sts.BaseDate) *sts.Decoder {
	t.Helper()
	id := sts.KeyID{KT: 2, SGC: 123457, TI: 1, KRN: 1}
	key, err := sts.DKGA04(vendingKey1, id, pan, base, sts.EA11)
	if err != nil {
		t.Fatal(err)
	}
	d, err := sts.NewDecoder(sts.DecoderConfig{EA: sts.EA11, Key: key, ID: id, KEN: 255, Base: base})
	if err != nil {
		t.Fatal(err)
	}
	return &d
}

// rollOverKeys moves the meter's supply group to KRN 2 and base date 2014
// while the meter still counts TIDs from 1993 (exhausted since November
// 2024), so the next tokens it is sent must start with a key change.
func rollOverKeys(t *testing.T, db *sqlstore.DB) {
	t.Helper()
	ctx := context.Background()
	err := db.Tx(ctx, func(tx store.Tx) error {
		g, err := tx.SupplyGroups().Get(ctx, sgc)
		if err != nil {
			return err
		}
		g.KRN = 2
		if err := tx.SupplyGroups().Update(ctx, g); err != nil {
			return err
		}
		m, err := tx.Meters().ByNumber(ctx, pan)
		if err != nil {
			return err
		}
		m.BaseDate = 1993
		return tx.Meters().Update(ctx, m)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestPurchaseTokensAreAcceptedByTheMeter(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *sqlstore.DB) {
		ctx := context.Background()
		e := newEnv(t, db, 1_000_000)
		res, err := e.svc.Purchase(ctx, e.cashier, "k-1", PurchaseRequest{Meter: pan, AmountCents: 30000})
		if err != nil {
			t.Fatal(err)
		}
		r := res.Receipt
		if res.Replayed || r.Paid+r.Change != 30000 || r.Breakdown.Debt != 5000 {
			t.Fatalf("receipt %+v", r)
		}
		if len(r.Tokens) != 2 || r.Tokens[0].Kind != store.TokenFreeWater || r.Tokens[1].Kind != store.TokenCredit {
			t.Fatalf("tokens %+v, want free water then credit", r.Tokens)
		}
		d := meterDecoder(t, sts.Base2014)
		var litres int64
		for _, tok := range r.Tokens {
			got, err := d.AcceptDigits(tok.Token)
			if err != nil {
				t.Fatalf("meter refused %s token %s: %v", tok.Kind, tok.Token, err)
			}
			if got.Kind != sts.KindCredit || got.Subclass != sts.SubWater {
				t.Fatalf("accepted as %+v", got)
			}
			litres += int64(got.Amount) * 100
		}
		if litres != r.Litres+r.FreeLitres || r.FreeLitres != 6000 {
			t.Fatalf("meter credited %d litres; receipt says %d paid + %d free", litres, r.Litres, r.FreeLitres)
		}
		// The float paid exactly what the customer parted with.
		db.Read(ctx, func(tx store.Tx) error {
			v, _ := tx.Vendors().ByID(ctx, e.vendor.ID)
			if v.FloatCents != 1_000_000-r.Paid {
				t.Errorf("float %d, want %d", v.FloatCents, 1_000_000-r.Paid)
			}
			c, _ := tx.Customers().ByAccount(ctx, "ACC-001")
			if c.DebtCents != 0 {
				t.Errorf("debt after %d, want 0 (20%% of the purchase covers the 5000 owed)", c.DebtCents)
			}
			return nil
		})
		// The second purchase this month issues no free water again.
		res2, err := e.svc.Purchase(ctx, e.cashier, "k-2", PurchaseRequest{Meter: pan, AmountCents: 10000})
		if err != nil {
			t.Fatal(err)
		}
		if len(res2.Receipt.Tokens) != 1 || res2.Receipt.Tokens[0].Kind != store.TokenCredit || len(res2.Receipt.Breakdown.Fixed) != 0 {
			t.Fatalf("second purchase: %+v", res2.Receipt)
		}
		if _, err := d.AcceptDigits(res2.Receipt.Tokens[0].Token); err != nil {
			t.Fatalf("second credit token refused: %v", err)
		}
		checkLedger(t, db)
	})
}

// checkLedger runs package ledger's invariants over the stored ledger.
func checkLedger(t *testing.T, db *sqlstore.DB) {
	t.Helper()
	ctx := context.Background()
	c := ledger.NewChecker()
	err := db.Read(ctx, func(tx store.Tx) error {
		return tx.Ledger().Each(ctx, func(se store.LedgerEntry) error {
			e, err := LedgerEntry(se)
			if err != nil {
				return err
			}
			for _, v := range c.Add(e) {
				t.Errorf("ledger violation: %s", v)
			}
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	if c.Entries() == 0 {
		t.Error("ledger is empty")
	}
}

func TestIdempotency(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *sqlstore.DB) {
		ctx := context.Background()
		e := newEnv(t, db, 1_000_000)
		first, err := e.svc.Purchase(ctx, e.cashier, "same-key", PurchaseRequest{Meter: pan, AmountCents: 25000})
		if err != nil {
			t.Fatal(err)
		}
		e.now = e.now.Add(3 * time.Minute) // a retry after a timeout
		again, err := e.svc.Purchase(ctx, e.cashier, "same-key", PurchaseRequest{Meter: pan, AmountCents: 25000})
		if err != nil {
			t.Fatal(err)
		}
		if !again.Replayed || string(again.JSON) != string(first.JSON) {
			t.Fatalf("retry gave a different result:\n%s\n%s", first.JSON, again.JSON)
		}
		if _, err := e.svc.Purchase(ctx, e.cashier, "same-key", PurchaseRequest{Meter: pan, AmountCents: 26000}); !errors.Is(err, ErrIdempotencyMismatch) {
			t.Fatalf("same key, other amount: %v", err)
		}
		if _, err := e.svc.Purchase(ctx, e.cashier, "", PurchaseRequest{Meter: pan, AmountCents: 26000}); !errors.Is(err, ErrInvalid) {
			t.Fatalf("no key: %v", err)
		}
	})
}

func TestConcurrentDuplicatesIssueOneTokenSet(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *sqlstore.DB) {
		ctx := context.Background()
		e := newEnv(t, db, 1_000_000)
		const n = 12
		results := make([]Result, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				results[i], errs[i] = e.svc.Purchase(ctx, e.cashier, "dup", PurchaseRequest{Meter: pan, AmountCents: 20000})
			}()
		}
		wg.Wait()
		fresh := 0
		for i := range results {
			if errs[i] != nil {
				t.Fatalf("duplicate %d: %v", i, errs[i])
			}
			if !results[i].Replayed {
				fresh++
			}
			if string(results[i].JSON) != string(results[0].JSON) {
				t.Fatalf("duplicates got different receipts")
			}
		}
		if fresh != 1 {
			t.Fatalf("%d duplicates were sold afresh, want exactly 1", fresh)
		}
		db.Read(ctx, func(tx store.Tx) error {
			m, _ := tx.Meters().ByNumber(ctx, pan)
			toks, _ := tx.Tokens().ByMeter(ctx, m.ID, 100)
			if len(toks) != len(results[0].Receipt.Tokens) {
				t.Errorf("%d tokens stored, receipt has %d", len(toks), len(results[0].Receipt.Tokens))
			}
			return nil
		})
		checkLedger(t, db)
	})
}

func TestFloatAndLimits(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *sqlstore.DB) {
		ctx := context.Background()
		e := newEnv(t, db, 20000)
		if _, err := e.svc.Purchase(ctx, e.cashier, "a", PurchaseRequest{Meter: pan, AmountCents: 25000}); !errors.Is(err, ErrInsufficientFloat) {
			t.Fatalf("beyond the float: %v", err)
		}
		if _, err := e.svc.Purchase(ctx, e.cashier, "b", PurchaseRequest{Meter: "600727000000000017", AmountCents: 100}); !errors.Is(err, ErrInvalid) {
			t.Fatalf("unknown meter: %v", err)
		}
		if _, err := e.svc.Purchase(ctx, Actor{OperatorID: e.cashier.OperatorID, Username: "x"}, "c", PurchaseRequest{Meter: pan, AmountCents: 100}); !errors.Is(err, ErrNoVendor) {
			t.Fatalf("no vending point: %v", err)
		}
		// The daily limit refuses a purchase the float would cover.
		err := db.Tx(ctx, func(tx store.Tx) error {
			v, err := tx.Vendors().ByID(ctx, e.vendor.ID)
			if err != nil {
				return err
			}
			v.DailyLimitCents = 15000
			return tx.Vendors().Update(ctx, v)
		})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.svc.Purchase(ctx, e.cashier, "d", PurchaseRequest{Meter: pan, AmountCents: 16000}); !errors.Is(err, ErrDailyLimit) {
			t.Fatalf("beyond the daily limit: %v", err)
		}
		// Nothing of the refused purchases remains.
		db.Read(ctx, func(tx store.Tx) error {
			v, _ := tx.Vendors().ByID(ctx, e.vendor.ID)
			m, _ := tx.Meters().ByNumber(ctx, pan)
			if v.FloatCents != 20000 || m.LastTID != 0 {
				t.Errorf("refused purchases changed state: float %d, last TID %d", v.FloatCents, m.LastTID)
			}
			if _, err := tx.Purchases().ByKey(ctx, e.vendor.ID, "d"); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("refused purchase stored: %v", err)
			}
			return nil
		})
		// Within the limit, the refused key is free to use; used again for
		// a meter that does not exist, it is a mismatch, not a missing meter.
		if _, err := e.svc.Purchase(ctx, e.cashier, "d", PurchaseRequest{Meter: pan, AmountCents: 15000}); err != nil {
			t.Fatalf("within the limit: %v", err)
		}
		if _, err := e.svc.Purchase(ctx, e.cashier, "d", PurchaseRequest{Meter: "600727000000000017", AmountCents: 100}); !errors.Is(err, ErrIdempotencyMismatch) {
			t.Fatalf("used key, unknown meter: %v", err)
		}
	})
}

func TestKeyChangeComesFirst(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *sqlstore.DB) {
		ctx := context.Background()
		e := newEnv(t, db, 1_000_000)
		d := meterDecoder(t, sts.Base1993)
		rollOverKeys(t, db)
		res, err := e.svc.Purchase(ctx, e.cashier, "kc", PurchaseRequest{Meter: pan, AmountCents: 30000})
		if err != nil {
			t.Fatal(err)
		}
		toks := res.Receipt.Tokens
		if len(toks) != 6 {
			t.Fatalf("tokens %+v; want 4 key change, free, credit", toks)
		}
		var kinds []string
		for _, tok := range toks {
			kinds = append(kinds, tok.Kind)
			r, err := d.AcceptDigits(tok.Token)
			if err != nil {
				t.Fatalf("meter refused %s (%s): %v", tok.Label, tok.Token, err)
			}
			_ = r
		}
		if fmt.Sprint(kinds) != "[key_change key_change key_change key_change free_water credit]" {
			t.Fatalf("order %v", kinds)
		}
		if id := d.KeyID(); id.KRN != 2 || d.Base() != sts.Base2014 {
			t.Fatalf("meter after the set: KRN %d base %d", id.KRN, d.Base())
		}
		// The next purchase needs no key change.
		res, err = e.svc.Purchase(ctx, e.cashier, "after", PurchaseRequest{Meter: pan, AmountCents: 10000})
		if err != nil || len(res.Receipt.Tokens) != 1 {
			t.Fatalf("after key change: %+v %v", res.Receipt.Tokens, err)
		}
		if _, err := d.AcceptDigits(res.Receipt.Tokens[0].Token); err != nil {
			t.Fatalf("credit under the new key refused: %v", err)
		}
		checkLedger(t, db)
	})
}

func TestVoucherMeter(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *sqlstore.DB) {
		ctx := context.Background()
		e := newEnv(t, db, 1_000_000)
		ring, err := keys.TrustedKeys(ctx, e.km)
		if err != nil {
			t.Fatal(err)
		}
		var last uint32
		for i, amount := range []int64{30000, 5000} {
			res, err := e.svc.Purchase(ctx, e.cashier, fmt.Sprint("v", i), PurchaseRequest{Meter: cardMeter, AmountCents: amount})
			if err != nil {
				t.Fatal(err)
			}
			for _, tok := range res.Receipt.Tokens {
				v, err := voucher.Open(tok.Voucher, ring, 4700123, e.now)
				if err != nil {
					t.Fatalf("meter refused voucher: %v", err)
				}
				if err := v.CheckSequence(last); err != nil {
					t.Fatal(err)
				}
				last = v.Sequence
				if int64(v.Quantity) != tok.Litres {
					t.Errorf("voucher carries %d litres, receipt %d", v.Quantity, tok.Litres)
				}
			}
		}
		if last != 3 {
			t.Fatalf("last sequence %d, want 3 (free, credit, credit)", last)
		}
		// A voucher for this meter does not open on another.
		res, _ := e.svc.Purchase(ctx, e.cashier, "v9", PurchaseRequest{Meter: cardMeter, AmountCents: 5000})
		if _, err := voucher.Open(res.Receipt.Tokens[0].Voucher, ring, 4700124, e.now); !errors.Is(err, voucher.ErrWrongMeter) {
			t.Fatalf("voucher on another meter: %v", err)
		}
		_ = ed25519.PublicKey(nil)
		checkLedger(t, db)
	})
}

func TestReversalRules(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *sqlstore.DB) {
		ctx := context.Background()
		e := newEnv(t, db, 1_000_000)
		sup := Actor{OperatorID: e.cashier.OperatorID, Username: "supervisor"}
		floatNow := func() int64 {
			var f int64
			db.Read(ctx, func(tx store.Tx) error { v, _ := tx.Vendors().ByID(ctx, e.vendor.ID); f = v.FloatCents; return nil })
			return f
		}
		// STS tokens may already be typed in: no outright reversal.
		sts, err := e.svc.Purchase(ctx, e.cashier, "s1", PurchaseRequest{Meter: pan, AmountCents: 30000})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.svc.Reverse(ctx, sup, sts.Receipt.PurchaseID, ReversalRequest{Reason: "wrong meter"}); !errors.Is(err, ErrNotReversible) {
			t.Fatalf("reversing printed tokens: %v", err)
		}
		before := floatNow()
		rev, err := e.svc.Reverse(ctx, sup, sts.Receipt.PurchaseID, ReversalRequest{Reason: "wrong meter", Compensate: true})
		if err != nil {
			t.Fatal(err)
		}
		if rev.Mode != "compensated" || rev.DebtRaised != int64(sts.Receipt.Breakdown.Water) || floatNow() != before+sts.Receipt.Paid {
			t.Fatalf("compensation %+v, float %d -> %d", rev, before, floatNow())
		}
		if _, err := e.svc.Reverse(ctx, sup, sts.Receipt.PurchaseID, ReversalRequest{Reason: "again", Compensate: true}); !errors.Is(err, ErrNotReversible) {
			t.Fatalf("reversing twice: %v", err)
		}
		// An AMI meter's undelivered vouchers never left the head-end.
		ami, err := e.svc.Purchase(ctx, e.cashier, "a1", PurchaseRequest{Meter: amiMeter, AmountCents: 30000})
		if err != nil {
			t.Fatal(err)
		}
		before = floatNow()
		rev, err = e.svc.Reverse(ctx, sup, ami.Receipt.PurchaseID, ReversalRequest{Reason: "customer changed mind"})
		if err != nil || rev.Mode != "reversed" || floatNow() != before+ami.Receipt.Paid {
			t.Fatalf("AMI reversal %+v %v", rev, err)
		}
		// The month forgets it: the next purchase pays the fixed charge and gets free water again.
		again, err := e.svc.Purchase(ctx, e.cashier, "a2", PurchaseRequest{Meter: amiMeter, AmountCents: 30000})
		if err != nil || again.Receipt.FreeLitres != 6000 || again.Receipt.Breakdown.FixedTotal() == 0 {
			t.Fatalf("after reversal: %+v %v", again.Receipt, err)
		}
		checkLedger(t, db)
	})
}

func TestConcurrentReversalsReverseOnce(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *sqlstore.DB) {
		ctx := context.Background()
		e := newEnv(t, db, 1_000_000)
		sup := Actor{OperatorID: e.cashier.OperatorID, Username: "supervisor"}
		res, err := e.svc.Purchase(ctx, e.cashier, "r1", PurchaseRequest{Meter: amiMeter, AmountCents: 30000})
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		errs := make([]error, 6)
		for i := range errs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, errs[i] = e.svc.Reverse(ctx, sup, res.Receipt.PurchaseID, ReversalRequest{Reason: "double click"})
			}()
		}
		wg.Wait()
		ok := 0
		for _, err := range errs {
			switch {
			case err == nil:
				ok++
			case !errors.Is(err, ErrNotReversible):
				t.Errorf("a losing reversal: %v, want ErrNotReversible", err)
			}
		}
		if ok != 1 {
			t.Fatalf("%d reversals succeeded, want 1", ok)
		}
		checkLedger(t, db)
	})
}
