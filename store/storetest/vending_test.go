package storetest

import (
	"context"
	"errors"
	"fmt"
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

func TestFloatNeverNegativeUnderConcurrency(t *testing.T) {
	Each(t, func(t *testing.T, db *sqlstore.DB) {
		ctx := context.Background()
		f := newFixture(t, db, 10_000)
		var ok, refused atomic.Int64
		var wg sync.WaitGroup
		for i := 0; i < 16; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for j := 0; j < 5; j++ {
					err := db.Tx(ctx, func(tx store.Tx) error {
						_, err := tx.Vendors().AdjustFloat(ctx, f.vendor.ID, -300)
						return err
					})
					switch {
					case err == nil:
						ok.Add(1)
					case errors.Is(err, store.ErrConstraint):
						refused.Add(1)
					default:
						t.Error(err)
					}
				}
			}()
		}
		wg.Wait()
		if ok.Load() != 33 || refused.Load() != 80-33 {
			t.Fatalf("%d debits accepted, %d refused; want 33 and 47", ok.Load(), refused.Load())
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

func TestDailyLimit(t *testing.T) {
	Each(t, func(t *testing.T, db *sqlstore.DB) {
		ctx := context.Background()
		f := newFixture(t, db, 0)
		add := func(day string, c int64) error {
			return db.Tx(ctx, func(tx store.Tx) error { return tx.Vendors().AddDaySales(ctx, f.vendor.ID, day, c) })
		}
		if err := add("2026-11-25", 600_000); err != nil {
			t.Fatal(err)
		}
		if err := add("2026-11-25", 400_001); !errors.Is(err, store.ErrConstraint) {
			t.Fatalf("over the limit: %v", err)
		}
		if err := add("2026-11-25", 400_000); err != nil {
			t.Fatalf("up to the limit: %v", err)
		}
		if err := add("2026-11-26", 1_000_001); !errors.Is(err, store.ErrConstraint) {
			t.Fatalf("a first sale of the day over the limit: %v", err)
		}
		if err := add("2026-11-26", 1_000_000); err != nil {
			t.Fatalf("next day: %v", err)
		}
		err := db.Tx(ctx, func(tx store.Tx) error { return tx.Vendors().AddDaySales(ctx, f.vendor.ID+99, "2026-11-26", 1) })
		if !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("unknown vendor: %v, want ErrNotFound", err)
		}
		db.Read(ctx, func(tx store.Tx) error {
			if s, err := tx.Vendors().DaySales(ctx, f.vendor.ID, "2026-11-25"); s != 1_000_000 || err != nil {
				t.Errorf("day sales %d %v", s, err)
			}
			return nil
		})
	})
}

// TestPurchaseStartAndInputs: what a purchase reads in its first two
// statements, and its row inserted under the ID that Start reserved.
func TestPurchaseStartAndInputs(t *testing.T) {
	Each(t, func(t *testing.T, db *sqlstore.DB) {
		ctx := context.Background()
		f := newFixture(t, db, 0)
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
				p, err := tx.Purchases().Create(ctx, store.Purchase{ID: st.NextID, VendorID: f.vendor.ID, IdempotencyKey: key, RequestHash: []byte{1},
					OperatorID: f.operator.ID, MeterID: f.meter.ID, CustomerID: f.customer.ID, TenderedCents: 5000, PaidCents: 5000,
					State: store.PurchaseCompleted, Response: []byte(`{"n":1}`)})
				if err != nil || p.ID != st.NextID {
					t.Errorf("create = %d %v, want ID %d", p.ID, err, st.NextID)
				}
				ids = append(ids, p.ID)
				return tx.MeterMonths().Put(ctx, store.MeterMonth{MeterID: f.meter.ID, Month: "2026-11", PaidLitres: 1000, FreeIssued: true})
			})
			if err != nil {
				t.Fatal(err)
			}
		}
		if len(ids) != 2 || ids[0] == ids[1] {
			t.Fatalf("reserved IDs %v", ids)
		}
		// A purchase inserted without an ID takes a new one after them.
		var plain store.Purchase
		err := db.Tx(ctx, func(tx store.Tx) error {
			var err error
			plain, err = tx.Purchases().Create(ctx, store.Purchase{VendorID: f.vendor.ID, IdempotencyKey: "k3", RequestHash: []byte{1},
				OperatorID: f.operator.ID, MeterID: f.meter.ID, TenderedCents: 1, State: store.PurchaseCompleted, Response: []byte(`{}`)})
			return err
		})
		if err != nil || plain.ID == ids[0] || plain.ID == ids[1] {
			t.Fatalf("plain create = %d %v, reserved %v", plain.ID, err, ids)
		}
		err = db.Tx(ctx, func(tx store.Tx) error {
			st, err := tx.Purchases().Start(ctx, f.vendor.ID, "k1", f.meter.Number)
			if err != nil || !st.KeyUsed {
				t.Errorf("used key: %+v %v", st, err)
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
		f := newFixture(t, db, 0)
		p := store.Purchase{VendorID: f.vendor.ID, IdempotencyKey: "k1", RequestHash: []byte{1}, OperatorID: f.operator.ID,
			MeterID: f.meter.ID, CustomerID: f.customer.ID, TenderedCents: 5000, PaidCents: 5000, Litres: 3000,
			State: store.PurchaseCompleted, Response: []byte(`{}`)}
		var created store.Purchase
		err := db.Tx(ctx, func(tx store.Tx) error {
			var err error
			if created, err = tx.Purchases().Create(ctx, p); err != nil {
				return err
			}
			for i, tid := range []int64{100, 101} {
				if _, err := tx.Tokens().Create(ctx, store.Token{MeterID: f.meter.ID, PurchaseID: created.ID, Ordinal: i,
					Kind: store.TokenCredit, TID: tid, Digits: fmt.Sprintf("%020d", tid)}); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		err = db.Tx(ctx, func(tx store.Tx) error { _, err := tx.Purchases().Create(ctx, p); return err })
		if !errors.Is(err, store.ErrConflict) {
			t.Fatalf("same idempotency key: %v, want ErrConflict", err)
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
