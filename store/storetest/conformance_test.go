package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"sluice/store"
	"sluice/store/sqlstore"
)

func TestMigrateIsIdempotentAndReadyFollowsIt(t *testing.T) {
	for _, b := range Backends() {
		t.Run(b.Name, func(t *testing.T) {
			ctx := context.Background()
			db := b.Open(t, true)
			if err := db.Ready(ctx); !errors.Is(err, store.ErrNotMigrated) {
				t.Fatalf("Ready before migrate = %v, want ErrNotMigrated", err)
			}
			n, err := db.Migrate(ctx)
			if err != nil || n == 0 {
				t.Fatalf("first migrate ran %d, err %v", n, err)
			}
			if n, err := db.Migrate(ctx); err != nil || n != 0 {
				t.Fatalf("second migrate ran %d, err %v; want 0", n, err)
			}
			if err := db.Ready(ctx); err != nil {
				t.Fatalf("Ready after migrate: %v", err)
			}
			applied, latest, err := db.SchemaVersion(ctx)
			if err != nil || applied != latest {
				t.Fatalf("schema version %d of %d, err %v", applied, latest, err)
			}
		})
	}
}

func TestConcurrentMigrateAppliesOnce(t *testing.T) {
	// Replicas starting together on one PostgreSQL.
	u, _ := NewPostgresSchema(t)
	if u == "" {
		return
	}
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			db, err := openPostgresURL(u)
			if err != nil {
				errs <- err
				return
			}
			defer db.Close()
			_, err = db.Migrate(context.Background())
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
}

func TestOperators(t *testing.T) {
	Each(t, func(t *testing.T, db *sqlstore.DB) {
		ctx := context.Background()
		var created store.Operator
		err := db.Tx(ctx, func(tx store.Tx) error {
			var err error
			created, err = tx.Operators().Create(ctx, store.Operator{
				Username: "alice", DisplayName: "Alice", Role: "vendor", PasswordHash: "h", MustChangePassword: true,
			})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if created.ID == 0 || created.CreatedAt.IsZero() {
			t.Fatalf("created = %+v", created)
		}
		err = db.Tx(ctx, func(tx store.Tx) error {
			_, err := tx.Operators().Create(ctx, store.Operator{Username: "alice", DisplayName: "Again", Role: "vendor", PasswordHash: "h"})
			return err
		})
		if !errors.Is(err, store.ErrConflict) {
			t.Fatalf("duplicate username: %v, want ErrConflict", err)
		}
		err = db.Tx(ctx, func(tx store.Tx) error {
			_, err := tx.Operators().Create(ctx, store.Operator{Username: "bob", DisplayName: "Bob", Role: "emperor", PasswordHash: "h"})
			return err
		})
		if !errors.Is(err, store.ErrConstraint) {
			t.Fatalf("unknown role: %v, want ErrConstraint", err)
		}
		err = db.Read(ctx, func(tx store.Tx) error {
			o, err := tx.Operators().ByUsername(ctx, "alice")
			if err != nil {
				return err
			}
			if o != created {
				return fmt.Errorf("read back %+v, want %+v", o, created)
			}
			if _, err := tx.Operators().ByID(ctx, 999999); !errors.Is(err, store.ErrNotFound) {
				return fmt.Errorf("missing id: %v, want ErrNotFound", err)
			}
			n, err := tx.Operators().Count(ctx)
			if err != nil || n != 1 {
				return fmt.Errorf("count %d, %v", n, err)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		created.Role, created.MustChangePassword, created.PasswordHash = "supervisor", false, "h2"
		if err := db.Tx(ctx, func(tx store.Tx) error { return tx.Operators().Update(ctx, created) }); err != nil {
			t.Fatal(err)
		}
		db.Read(ctx, func(tx store.Tx) error {
			all, err := tx.Operators().List(ctx)
			if err != nil || len(all) != 1 || all[0].Role != "supervisor" || all[0].MustChangePassword || all[0].PasswordHash != "h2" {
				t.Errorf("after update: %+v, %v", all, err)
			}
			return nil
		})
	})
}

func TestFailedTxChangesNothing(t *testing.T) {
	Each(t, func(t *testing.T, db *sqlstore.DB) {
		ctx := context.Background()
		boom := errors.New("boom")
		err := db.Tx(ctx, func(tx store.Tx) error {
			if _, err := tx.Operators().Create(ctx, store.Operator{Username: "carol", DisplayName: "C", Role: "auditor", PasswordHash: "h"}); err != nil {
				return err
			}
			return boom
		})
		if !errors.Is(err, boom) {
			t.Fatalf("err = %v", err)
		}
		db.Read(ctx, func(tx store.Tx) error {
			if _, err := tx.Operators().ByUsername(ctx, "carol"); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("rolled-back operator visible: %v", err)
			}
			return nil
		})
	})
}

func TestSettingsFirstWriterWins(t *testing.T) {
	Each(t, func(t *testing.T, db *sqlstore.DB) {
		ctx := context.Background()
		var wg sync.WaitGroup
		got := make([]string, 8)
		for i := range got {
			wg.Add(1)
			go func() {
				defer wg.Done()
				db.Tx(ctx, func(tx store.Tx) error {
					v, err := tx.Settings().PutIfAbsent(ctx, "installation_id", fmt.Sprint("replica-", i))
					got[i] = v
					return err
				})
			}()
		}
		wg.Wait()
		for _, v := range got {
			if v != got[0] || v == "" {
				t.Fatalf("replicas disagree: %v", got)
			}
		}
		if err := db.Tx(ctx, func(tx store.Tx) error { return tx.Settings().Put(ctx, "installation_id", "x") }); err != nil {
			t.Fatal(err)
		}
		db.Read(ctx, func(tx store.Tx) error {
			if v, err := tx.Settings().Get(ctx, "installation_id"); v != "x" || err != nil {
				t.Errorf("after Put: %q %v", v, err)
			}
			if _, err := tx.Settings().Get(ctx, "nope"); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("missing key: %v", err)
			}
			return nil
		})
	})
}

func TestReadIsReadOnly(t *testing.T) {
	Each(t, func(t *testing.T, db *sqlstore.DB) {
		ctx := context.Background()
		err := db.Read(ctx, func(tx store.Tx) error {
			return tx.Settings().Put(ctx, "k", "v")
		})
		if err == nil {
			t.Fatal("a write inside Read succeeded")
		}
	})
}
