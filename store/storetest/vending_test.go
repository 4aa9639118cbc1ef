package storetest

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"sluice/store"
	"sluice/store/sqlstore"
)

// fixture creates one of each aggregate a purchase needs.
type fixture struct {
	vendor   store.Vendor
	operator store.Operator
	customer store.Customer
	meter    store.Meter
}

func newFixture(t *testing.T, db *sqlstore.DB, float int64) fixture {
	t.Helper()
	ctx := context.Background()
	var f fixture
	err := db.Tx(ctx, func(tx store.Tx) error {
		var err error
		if f.vendor, err = tx.Vendors().Create(ctx, store.Vendor{Code: "V1", Name: "Office", FloatCents: float, DailyLimitCents: 1_000_000}); err != nil {
			return err
		}
		if f.operator, err = tx.Operators().Create(ctx, store.Operator{Username: "cashier", DisplayName: "C", Role: "vendor", PasswordHash: "h", VendorID: f.vendor.ID}); err != nil {
			return err
		}
		if err := tx.Tariffs().Put(ctx, store.Tariff{Code: "DOM", Definition: []byte(`{}`)}); err != nil {
			return err
		}
		if err := tx.SupplyGroups().Create(ctx, store.SupplyGroup{Code: "123456", Name: "North", DKGA: "04", EA: "11", BaseDate: 2014, KRN: 1, TI: 1}); err != nil {
			return err
		}
		if f.customer, err = tx.Customers().Create(ctx, store.Customer{Account: "ACC1", Name: "Thandi Nkosi"}); err != nil {
			return err
		}
		f.meter, err = tx.Meters().Create(ctx, store.Meter{Number: "600727000000000009", Kind: store.MeterSTS, CustomerID: f.customer.ID,
			TariffCode: "DOM", SGC: "123456", KRN: 1, TI: 1, KT: 2, BaseDate: 2014})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// contend makes 80 attempts from 16 goroutines at once (try(i, j): the
// goroutine's i, its j-th attempt) and counts those that succeeded and
// those refused as isRefused says; any other error fails the test.
func contend(t *testing.T, try func(i, j int) error, isRefused func(error) bool) (ok, refused int64) {
	var okN, refusedN atomic.Int64
	var wg sync.WaitGroup
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 5; j++ {
				switch err := try(i, j); {
				case err == nil:
					okN.Add(1)
				case isRefused(err):
					refusedN.Add(1)
				default:
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	return okN.Load(), refusedN.Load()
}

func TestFloatNeverNegativeUnderConcurrency(t *testing.T) {
	Each(t, func(t *testing.T, db *sqlstore.DB) {
		ctx := context.Background()
		f := newFixture(t, db, 10_000)
		ok, refused := contend(t, func(_, _ int) error {
			return db.Tx(ctx, func(tx store.Tx) error {
				_, err := tx.Vendors().AdjustFloat(ctx, f.vendor.ID, -300)
				return err
			})
		}, func(err error) bool { return errors.Is(err, store.ErrConstraint) })
		if ok != 33 || refused != 80-33 {
			t.Fatalf("%d debits accepted, %d refused; want 33 and 47", ok, refused)
		}
		db.Read(ctx, func(tx store.Tx) error {
			v, err := tx.Vendors().ByID(ctx, f.vendor.ID)
			if err != nil || v.FloatCents != 100 {
				t.Errorf("float after = %d, %v; want 100", v.FloatCents, err)
			}
			return nil
		})
		if _, err := adjust(db, 999999, -1); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("unknown vendor: %v", err)
		}
	})
}

func adjust(db *sqlstore.DB, id, delta int64) (int64, error) {
	var after int64
	err := db.Tx(context.Background(), func(tx store.Tx) error {
		var err error
		after, err = tx.Vendors().AdjustFloat(context.Background(), id, delta)
		return err
	})
	return after, err
}

// record is what vend.Service records for a sale of paid cents on day
// (YYYY-MM-DD) under the ID st reserved: no tokens and an empty receipt
// unless the caller adds them.
func record(f fixture, st store.PurchaseStart, key string, paid int64, day string) store.PurchaseRecord {
	id := strconv.FormatInt(st.NextID, 10)
	at := time.Now()
	return store.PurchaseRecord{
		Purchase: store.Purchase{ID: st.NextID, VendorID: f.vendor.ID, IdempotencyKey: key, RequestHash: []byte{1}, OperatorID: f.operator.ID,
			MeterID: st.Meter.ID, CustomerID: st.Meter.CustomerID, TenderedCents: paid, PaidCents: paid,
			State: store.PurchaseCompleted, Response: []byte(`{}`), CreatedAt: at},
		Meter:  st.Meter,
		Month:  store.MeterMonth{MeterID: st.Meter.ID, Month: day[:7]},
		Ledger: store.LedgerEntry{ID: "purchase:" + id, Type: "purchase", Purchase: id, Time: at},
		Audit:  store.AuditRecord{At: at, Actor: "storetest", Action: "vend.purchase", Object: "purchase/" + id, Details: []byte(`{}`)},
		Day:    day,
	}
}

// buy makes a purchase in a transaction of its own, the way vend.Service
// does: Start locks the meter and reserves the ID, Record writes the rest.
// It records even when Start saw the key used, as a purchase does that
// raced another with the same key (its Start ran before the other
// committed): what refuses it then is the database.
func buy(db *sqlstore.DB, f fixture, meter, key string, paid int64, day string) error {
	ctx := context.Background()
	return db.Tx(ctx, func(tx store.Tx) error {
		st, err := tx.Purchases().Start(ctx, f.vendor.ID, key, meter)
		if err != nil {
			return err
		}
		return tx.Purchases().Record(ctx, record(f, st, key, paid, day))
	})
}

// overLimit is the refusal vend.Service turns into ErrDailyLimit.
func overLimit(err error) bool {
	return errors.Is(err, store.ErrOverDailyLimit) && errors.Is(err, store.ErrConstraint)
}

func TestDailyLimit(t *testing.T) {
	Each(t, func(t *testing.T, db *sqlstore.DB) {
		ctx := context.Background()
		const float = 10_000_000
		f := newFixture(t, db, float)
		n := 0
		sell := func(day string, c int64) error {
			n++
			return buy(db, f, f.meter.Number, fmt.Sprintf("k%d", n), c, day)
		}
		if err := sell("2026-11-25", 600_000); err != nil {
			t.Fatal(err)
		}
		if err := sell("2026-11-25", 400_001); !overLimit(err) {
			t.Fatalf("over the limit: %v", err)
		}
		if err := sell("2026-11-25", 400_000); err != nil {
			t.Fatalf("up to the limit: %v", err)
		}
		if err := sell("2026-11-26", 1_000_001); !overLimit(err) {
			t.Fatalf("a first sale of the day over the limit: %v", err)
		}
		if err := sell("2026-11-26", 1_000_000); err != nil {
			t.Fatalf("next day: %v", err)
		}
		// A vendor that does not exist is refused by Inputs, which every
		// purchase reads before it records anything, and by the database
		// should Record be reached anyway.
		unknown := f
		unknown.vendor.ID += 99
		err := db.Read(ctx, func(tx store.Tx) error {
			_, err := tx.Purchases().Inputs(ctx, unknown.vendor.ID, f.meter, "2026-11")
			return err
		})
		if !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("inputs of an unknown vendor: %v, want ErrNotFound", err)
		}
		if err := buy(db, unknown, f.meter.Number, "k-unknown", 1, "2026-11-26"); !errors.Is(err, store.ErrConstraint) {
			t.Fatalf("unknown vendor: %v, want ErrConstraint", err)
		}
		db.Read(ctx, func(tx store.Tx) error {
			for _, day := range []string{"2026-11-25", "2026-11-26"} {
				if s, err := tx.Vendors().DaySales(ctx, f.vendor.ID, day); s != 1_000_000 || err != nil {
					t.Errorf("day sales on %s: %d %v", day, s, err)
				}
			}
			if s, err := tx.Vendors().DaySales(ctx, unknown.vendor.ID, "2026-11-26"); s != 0 || err != nil {
				t.Errorf("day sales of the unknown vendor: %d %v", s, err)
			}
			// The refused sales took nothing from the float either.
			if v, err := tx.Vendors().ByID(ctx, f.vendor.ID); v.FloatCents != float-2_000_000 || err != nil {
				t.Errorf("float after = %d, %v; want %d", v.FloatCents, err, float-2_000_000)
			}
			return nil
		})
	})
}

// TestDailyLimitUnderConcurrency: the tills of one vending point, selling
// to several meters at once, never sell past the daily limit together.
func TestDailyLimitUnderConcurrency(t *testing.T) {
	Each(t, func(t *testing.T, db *sqlstore.DB) {
		ctx := context.Background()
		const float = 10_000_000
		f := newFixture(t, db, float)
		meters := []string{f.meter.Number}
		err := db.Tx(ctx, func(tx store.Tx) error {
			for i := 1; i < 8; i++ {
				m := f.meter
				m.Number = fmt.Sprintf("%s-%d", f.meter.Number, i)
				if _, err := tx.Meters().Create(ctx, m); err != nil {
					return err
				}
				meters = append(meters, m.Number)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		ok, refused := contend(t, func(i, j int) error {
			return buy(db, f, meters[i%len(meters)], fmt.Sprintf("k%d-%d", i, j), 30_000, "2026-11-25")
		}, overLimit)
		if ok != 33 || refused != 80-33 {
			t.Fatalf("%d sales accepted, %d refused; want 33 and 47", ok, refused)
		}
		db.Read(ctx, func(tx store.Tx) error {
			if s, err := tx.Vendors().DaySales(ctx, f.vendor.ID, "2026-11-25"); s != 33*30_000 || err != nil {
				t.Errorf("day sales %d %v, want %d", s, err, 33*30_000)
			}
			if v, err := tx.Vendors().ByID(ctx, f.vendor.ID); v.FloatCents != float-33*30_000 || err != nil {
				t.Errorf("float after = %d, %v; want %d", v.FloatCents, err, float-33*30_000)
			}
			return nil
		})
	})
}

// TestPurchaseStartAndInputs: what a purchase reads in its first two
// statements, and its row recorded under the ID that Start reserved.
func TestPurchaseStartAndInputs(t *testing.T) {
	Each(t, func(t *testing.T, db *sqlstore.DB) {
		ctx := context.Background()
		f := newFixture(t, db, 10_000)
		var ids []int64
		for i, key := range []string{"k1", "k2"} {
			err := db.Tx(ctx, func(tx store.Tx) error {
				st, err := tx.Purchases().Start(ctx, f.vendor.ID, key, f.meter.Number)
				if err != nil {
					return err
				}
				if st.KeyUsed || st.Meter.ID != f.meter.ID || st.Meter.SGC != "123456" || st.NextID == 0 {
					t.Errorf("start %d = %+v", i, st)
				}
				in, err := tx.Purchases().Inputs(ctx, f.vendor.ID, st.Meter, "2026-11")
				if err != nil {
					return err
				}
				if in.Vendor.Code != "V1" || in.Customer.Account != "ACC1" || in.SupplyGroup.KRN != 1 || in.SupplyGroup.BaseDate != 2014 ||
					in.TariffUpdatedAt.IsZero() || in.Month.PaidLitres != 1000*int64(i) || in.Month.FreeIssued != (i == 1) {
					t.Errorf("inputs %d = %+v", i, in)
				}
				rec := record(f, st, key, 5000, "2026-11-25")
				rec.Purchase.Response = []byte(`{"n":1}`)
				rec.Month = store.MeterMonth{MeterID: f.meter.ID, Month: "2026-11", PaidLitres: 1000, FreeIssued: true}
				if err := tx.Purchases().Record(ctx, rec); err != nil {
					return err
				}
				ids = append(ids, st.NextID)
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
		}
		if len(ids) != 2 || ids[0] == ids[1] {
			t.Fatalf("reserved IDs %v", ids)
		}
		err := db.Tx(ctx, func(tx store.Tx) error {
			st, err := tx.Purchases().Start(ctx, f.vendor.ID, "k1", f.meter.Number)
			if err != nil || !st.KeyUsed {
				t.Errorf("used key: %+v %v", st, err)
			}
			// The next purchase's ID comes after those recorded.
			if st.NextID <= ids[1] {
				t.Errorf("ID reserved after %v: %d", ids, st.NextID)
			}
			if _, err := tx.Purchases().Start(ctx, f.vendor.ID, "k9", "no-such-meter"); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("unknown meter: %v, want ErrNotFound", err)
			}
			got, err := tx.Purchases().ByID(ctx, ids[0])
			if err != nil || string(got.Response) != `{"n":1}` || got.IdempotencyKey != "k1" {
				t.Errorf("stored %+v %v", got, err)
			}
			m := f.meter
			m.CustomerID = 0
			if _, err := tx.Purchases().Inputs(ctx, f.vendor.ID, m, "2026-11"); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("inputs without a customer: %v, want ErrNotFound", err)
			}
			m = f.meter
			m.SGC, m.Kind = "", store.MeterCard
			in, err := tx.Purchases().Inputs(ctx, f.vendor.ID, m, "2027-01")
			if err != nil || in.SupplyGroup != (store.SupplyGroup{}) || in.Month.PaidLitres != 0 || in.Month.FreeIssued {
				t.Errorf("inputs of a card meter, new month: %+v %v", in, err)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	})
}

// TestAPIKeyOperatorAndLookup: a request's authentication reads the key and
// its operator at once, outside a transaction, and sees a revocation at once.
func TestAPIKeyOperatorAndLookup(t *testing.T) {
	Each(t, func(t *testing.T, db *sqlstore.DB) {
		ctx := context.Background()
		f := newFixture(t, db, 0)
		var k store.APIKey
		err := db.Tx(ctx, func(tx store.Tx) error {
			var err error
			k, err = tx.Credentials().CreateAPIKey(ctx, store.APIKey{KeyHash: []byte("hash"), Prefix: "slk_", OperatorID: f.operator.ID, Label: "till"})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		look := func() (store.APIKey, store.Operator, error) {
			var gk store.APIKey
			var op store.Operator
			err := db.Lookup(ctx, func(tx store.Tx) error {
				var err error
				gk, op, err = tx.Credentials().APIKeyOperator(ctx, []byte("hash"))
				return err
			})
			return gk, op, err
		}
		for range 3 { // prepared on first use, then cached
			gk, op, err := look()
			if err != nil || gk.ID != k.ID || !gk.RevokedAt.IsZero() || op.ID != f.operator.ID || op.VendorID != f.vendor.ID || op.Username != "cashier" {
				t.Fatalf("lookup = %+v %+v %v", gk, op, err)
			}
		}
		if err := db.Tx(ctx, func(tx store.Tx) error { return tx.Credentials().RevokeAPIKey(ctx, k.ID, time.Now()) }); err != nil {
			t.Fatal(err)
		}
		if gk, _, err := look(); err != nil || gk.RevokedAt.IsZero() {
			t.Fatalf("after revocation: %+v %v", gk, err)
		}
		err = db.Lookup(ctx, func(tx store.Tx) error {
			_, _, err := tx.Credentials().APIKeyOperator(ctx, []byte("other"))
			return err
		})
		if !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("unknown key: %v, want ErrNotFound", err)
		}
	})
}

func TestPurchaseIdempotencyKeyAndTokenUniqueness(t *testing.T) {
	Each(t, func(t *testing.T, db *sqlstore.DB) {
		ctx := context.Background()
		f := newFixture(t, db, 100_000)
		var created store.Purchase
		err := db.Tx(ctx, func(tx store.Tx) error {
			st, err := tx.Purchases().Start(ctx, f.vendor.ID, "k1", f.meter.Number)
			if err != nil {
				return err
			}
			rec := record(f, st, "k1", 5000, "2026-11-25")
			for i, tid := range []int64{100, 101} {
				rec.Tokens = append(rec.Tokens, store.Token{MeterID: f.meter.ID, Ordinal: i, Kind: store.TokenCredit, TID: tid, Digits: fmt.Sprintf("%020d", tid)})
			}
			created = rec.Purchase
			return tx.Purchases().Record(ctx, rec)
		})
		if err != nil {
			t.Fatal(err)
		}
		// The same key again, recorded as by a purchase that raced the first:
		// the unique (vendor, key) index refuses it.
		err = buy(db, f, f.meter.Number, "k1", 5000, "2026-11-25")
		if !errors.Is(err, store.ErrKeyUsed) || !errors.Is(err, store.ErrConflict) {
			t.Fatalf("same idempotency key: %v, want ErrKeyUsed and ErrConflict", err)
		}
		// The key is the vendor's own: another vendor may use it.
		other := f
		err = db.Tx(ctx, func(tx store.Tx) error {
			var err error
			other.vendor, err = tx.Vendors().Create(ctx, store.Vendor{Code: "V2", Name: "Shop", FloatCents: 100_000, DailyLimitCents: 1_000_000})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := buy(db, other, f.meter.Number, "k1", 5000, "2026-11-25"); err != nil {
			t.Fatalf("another vendor's purchase with the same key: %v", err)
		}
		err = db.Tx(ctx, func(tx store.Tx) error {
			_, err := tx.Tokens().Create(ctx, store.Token{MeterID: f.meter.ID, Ordinal: 0, Kind: store.TokenEngineering, TID: 101, Digits: "1"})
			return err
		})
		if !errors.Is(err, store.ErrConflict) {
			t.Fatalf("TID reused on a meter: %v, want ErrConflict", err)
		}
		err = db.Tx(ctx, func(tx store.Tx) error {
			_, err := tx.Tokens().Create(ctx, store.Token{MeterID: f.meter.ID, PurchaseID: created.ID, Ordinal: 0, Kind: store.TokenCredit, TID: 500, Digits: "2"})
			return err
		})
		if !errors.Is(err, store.ErrConflict) {
			t.Fatalf("second token set for a purchase: %v, want ErrConflict", err)
		}
		err = db.Tx(ctx, func(tx store.Tx) error {
			_, err := tx.Tokens().Create(ctx, store.Token{MeterID: f.meter.ID, Ordinal: 0, Kind: store.TokenCredit, Voucher: []byte{1}, VoucherSeq: 7})
			if err != nil {
				return err
			}
			_, err = tx.Tokens().Create(ctx, store.Token{MeterID: f.meter.ID, Ordinal: 1, Kind: store.TokenCredit, Voucher: []byte{2}, VoucherSeq: 7})
			return err
		})
		if !errors.Is(err, store.ErrConflict) {
			t.Fatalf("voucher sequence reused: %v, want ErrConflict", err)
		}
		db.Read(ctx, func(tx store.Tx) error {
			got, err := tx.Purchases().ByKey(ctx, f.vendor.ID, "k1")
			if err != nil || got.ID != created.ID {
				t.Errorf("ByKey = %+v %v", got, err)
			}
			toks, err := tx.Tokens().ByPurchase(ctx, created.ID)
			if err != nil || len(toks) != 2 || toks[0].TID != 100 || toks[1].Ordinal != 1 {
				t.Errorf("tokens = %+v %v", toks, err)
			}
			return nil
		})
	})
}

func TestDualControlIsAConstraint(t *testing.T) {
	Each(t, func(t *testing.T, db *sqlstore.DB) {
		ctx := context.Background()
		f := newFixture(t, db, 0)
		var req store.EngineeringRequest
		var eng, sup store.Operator
		err := db.Tx(ctx, func(tx store.Tx) error {
			var err error
			if eng, err = tx.Operators().Create(ctx, store.Operator{Username: "eng", DisplayName: "E", Role: "engineer", PasswordHash: "h"}); err != nil {
				return err
			}
			if sup, err = tx.Operators().Create(ctx, store.Operator{Username: "sup", DisplayName: "S", Role: "supervisor", PasswordHash: "h"}); err != nil {
				return err
			}
			req, err = tx.EngineeringRequests().Create(ctx, store.EngineeringRequest{MeterID: f.meter.ID, Action: "clear_tamper", Params: []byte(`{}`), Reason: "cover replaced", RequestedBy: eng.ID})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		decide := func(by int64) error {
			return db.Tx(ctx, func(tx store.Tx) error {
				return tx.EngineeringRequests().Decide(ctx, req.ID, store.RequestIssued, by, time.Now())
			})
		}
		if err := decide(eng.ID); !errors.Is(err, store.ErrConstraint) {
			t.Fatalf("requester approving own request: %v, want ErrConstraint", err)
		}
		if err := decide(sup.ID); err != nil {
			t.Fatal(err)
		}
		if err := decide(sup.ID); !errors.Is(err, store.ErrConflict) {
			t.Fatalf("deciding twice: %v, want ErrConflict", err)
		}
	})
}

func TestAuditPendingAndSeal(t *testing.T) {
	Each(t, func(t *testing.T, db *sqlstore.DB) {
		ctx := context.Background()
		at := time.Date(2026, 11, 25, 8, 0, 0, 0, time.UTC)
		err := db.Tx(ctx, func(tx store.Tx) error {
			for i := 0; i < 3; i++ {
				if err := tx.Audit().Append(ctx, store.AuditRecord{At: at, Actor: "system", Action: "test", Object: fmt.Sprint(i), Details: []byte(`{}`)}); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		err = db.Tx(ctx, func(tx store.Tx) error {
			if err := tx.Audit().LockSealer(ctx); err != nil {
				return err
			}
			if _, err := tx.Audit().Head(ctx); !errors.Is(err, store.ErrNotFound) {
				return fmt.Errorf("head of empty chain: %v", err)
			}
			p, err := tx.Audit().Pending(ctx, 2)
			if err != nil || len(p) != 2 || p[0].Object != "0" {
				return fmt.Errorf("pending %+v %v", p, err)
			}
			for i, r := range p {
				r.Seq, r.PrevHash, r.Hash = int64(i+1), []byte{byte(i)}, []byte{byte(i + 1)}
				if err := tx.Audit().Seal(ctx, r); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		db.Read(ctx, func(tx store.Tx) error {
			if n, _ := tx.Audit().CountPending(ctx); n != 1 {
				t.Errorf("pending after sealing 2 of 3: %d", n)
			}
			h, err := tx.Audit().Head(ctx)
			if err != nil || h.Seq != 2 || !h.At.Equal(at) {
				t.Errorf("head %+v %v", h, err)
			}
			var seqs []int64
			tx.Audit().Each(ctx, 1, func(r store.AuditRecord) error { seqs = append(seqs, r.Seq); return nil })
			if fmt.Sprint(seqs) != "[1 2]" {
				t.Errorf("sealed records %v", seqs)
			}
			return nil
		})
	})
}

func TestLedgerAppendOnlyEntries(t *testing.T) {
	Each(t, func(t *testing.T, db *sqlstore.DB) {
		ctx := context.Background()
		at := time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)
		entries := []store.LedgerEntry{
			{ID: "deposit:1", Type: "deposit", Time: at, Postings: []store.Posting{{Account: "bank:main", Unit: "ZAR", Amount: 10000}, {Account: "float:V1", Unit: "ZAR", Amount: -10000}}},
			{ID: "purchase:1", Type: "purchase", Purchase: "1", Time: at, Tokens: []byte(`[{"meter":"m","purpose":"credit","tid":5}]`),
				Postings: []store.Posting{{Account: "float:V1", Unit: "ZAR", Amount: 5000}, {Account: "revenue:water", Unit: "ZAR", Amount: -5000}, {Account: "credit:m", Unit: "L", Amount: 3000}, {Account: "issued:water", Unit: "L", Amount: -3000}}},
		}
		err := db.Tx(ctx, func(tx store.Tx) error {
			for _, e := range entries {
				if _, err := tx.Ledger().Append(ctx, e); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		err = db.Tx(ctx, func(tx store.Tx) error { _, err := tx.Ledger().Append(ctx, entries[1]); return err })
		if !errors.Is(err, store.ErrConflict) {
			t.Fatalf("posting a purchase twice: %v, want ErrConflict", err)
		}
		db.Read(ctx, func(tx store.Tx) error {
			var got []store.LedgerEntry
			if err := tx.Ledger().Each(ctx, func(e store.LedgerEntry) error { got = append(got, e); return nil }); err != nil {
				t.Fatal(err)
			}
			if len(got) != 2 || got[0].Seq >= got[1].Seq || len(got[1].Postings) != 4 || string(got[1].Tokens) != string(entries[1].Tokens) || !got[1].Time.Equal(at) {
				t.Fatalf("entries read back: %+v", got)
			}
			if b, _ := tx.Ledger().Balance(ctx, "float:V1", "ZAR"); b != -5000 {
				t.Errorf("float balance %d, want -5000", b)
			}
			e, err := tx.Ledger().ByID(ctx, "purchase:1")
			if err != nil || e.Purchase != "1" {
				t.Errorf("ByID: %+v %v", e, err)
			}
			if _, err := tx.Ledger().ByID(ctx, "nope"); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("missing entry: %v", err)
			}
			return nil
		})
	})
}
