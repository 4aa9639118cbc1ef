package sqlstore_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"sluice/store"
	"sluice/store/storetest"
)

var errRefused = errors.New("refused by the test")

// TestGroupCommit: concurrent write transactions on SQLite share commits,
// and each still gets the outcome it would have had alone: writes of a fn
// that returned nil are committed when Tx returns, writes of a fn that
// failed (its own error, a unique violation, a panic) are gone, and the
// others of its batch are unaffected.
func TestGroupCommit(t *testing.T) {
	db := storetest.OpenSQLite(t, false)
	ctx := context.Background()
	const n = 200
	var wg sync.WaitGroup
	errs := make([]error, n)
	panics := make([]any, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { panics[i] = recover() }()
			errs[i] = db.Tx(ctx, func(tx store.Tx) error {
				code := fmt.Sprintf("V%03d", i)
				if i%10 == 3 {
					code = "DUP" // all but the first of these conflict
				}
				if _, err := tx.Vendors().Create(ctx, store.Vendor{Code: code, Name: "v", DailyLimitCents: 1}); err != nil {
					return err
				}
				switch i % 10 {
				case 5:
					return errRefused // after writing: the write must vanish
				case 7:
					panic("boom")
				}
				return nil
			})
			if errs[i] == nil {
				// Durable and visible to other connections once Tx returned.
				if err := db.Read(ctx, func(tx store.Tx) error {
					_, err := tx.Vendors().ByCode(ctx, fmt.Sprintf("V%03d", i))
					if i%10 == 3 {
						_, err = tx.Vendors().ByCode(ctx, "DUP")
					}
					return err
				}); err != nil {
					t.Errorf("vend %d committed but not readable: %v", i, err)
				}
			}
		}()
	}
	wg.Wait()
	dupOK := 0
	for i := range n {
		switch i % 10 {
		case 3:
			if errs[i] == nil {
				dupOK++
			} else if !errors.Is(errs[i], store.ErrConflict) {
				t.Errorf("%d: %v, want a conflict", i, errs[i])
			}
		case 5:
			if !errors.Is(errs[i], errRefused) {
				t.Errorf("%d: %v, want its own error", i, errs[i])
			}
		case 7:
			if panics[i] != "boom" {
				t.Errorf("%d: panic %v, want boom (err %v)", i, panics[i], errs[i])
			}
		default:
			if errs[i] != nil || panics[i] != nil {
				t.Errorf("%d: %v %v", i, errs[i], panics[i])
			}
		}
	}
	if dupOK != 1 {
		t.Errorf("%d transactions created the duplicate code, want 1", dupOK)
	}
	if txs, commits := db.GroupStats(); txs < n || commits >= txs {
		t.Errorf("%d transactions in %d commits: no commit was shared", txs, commits)
	}
	var vs []store.Vendor
	if err := db.Read(ctx, func(tx store.Tx) error {
		var err error
		vs, err = tx.Vendors().List(ctx)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	want := n - n/10*3 + 1 // all but the refused, panicking and duplicate ones, plus one DUP
	if len(vs) != want {
		t.Errorf("%d vendors stored, want %d", len(vs), want)
	}
	for _, v := range vs {
		var i int
		if _, err := fmt.Sscanf(v.Code, "V%03d", &i); err == nil && (i%10 == 5 || i%10 == 7 || i%10 == 3) {
			t.Errorf("vendor %s of a failed transaction was stored", v.Code)
		}
	}
}

// TestGroupCommitCancelled: a caller whose context ends while queued gets
// its context's error and writes nothing; the others are unaffected.
func TestGroupCommitCancelled(t *testing.T) {
	db := storetest.OpenSQLite(t, false)
	ctx := context.Background()
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	var wg sync.WaitGroup
	errs := make([]error, 40)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := ctx
			if i%2 == 1 {
				c = cancelled
			}
			errs[i] = db.Tx(c, func(tx store.Tx) error {
				_, err := tx.Vendors().Create(c, store.Vendor{Code: fmt.Sprintf("C%02d", i), Name: "v", DailyLimitCents: 1})
				return err
			})
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if i%2 == 0 && err != nil {
			t.Errorf("%d: %v", i, err)
		}
		if i%2 == 1 && err == nil {
			t.Errorf("%d: committed with a cancelled context", i)
		}
	}
	var vs []store.Vendor
	db.Read(ctx, func(tx store.Tx) error { var err error; vs, err = tx.Vendors().List(ctx); return err })
	if len(vs) != 20 {
		t.Errorf("%d vendors, want 20", len(vs))
	}
}
