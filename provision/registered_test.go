package provision

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	"sluice/keys"
	"sluice/kms"
	"sluice/kms/filekms/filekmstest"
	"sluice/store"
	"sluice/store/sqlstore"
	"sluice/store/storetest"
)

// TestIssueRegistered runs the head-end's side of the factory flow on both
// databases: a registered meter gets its keys under the newest root with
// counter 1; after a root rotation, a second record re-keys it under the new
// root with counter 2 and the meter takes it; the meter row remembers the
// root its keys come from; unregistered and blocked meters get nothing.
func TestIssueRegistered(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *sqlstore.DB) {
		ctx := context.Background()
		km := filekmstest.WithKeys(t)
		var meterID int64
		err := db.Tx(ctx, func(tx store.Tx) error {
			if err := tx.Tariffs().Put(ctx, store.Tariff{Code: "DOM", Definition: []byte(`{}`)}); err != nil {
				return err
			}
			m, err := tx.Meters().Create(ctx, store.Meter{Number: strconv.FormatUint(testMeter, 10), Kind: store.MeterAMI, TariffCode: "DOM"})
			meterID = m.ID
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		d := newDevice(t, testMeter)
		req := request(t, d)
		trust, err := KMSTrust(ctx, km)
		if err != nil {
			t.Fatal(err)
		}
		opt := IssueOptions{Actor: "cli:factory", Now: time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)}

		first, err := IssueRegistered(ctx, db, km, req, opt)
		if err != nil {
			t.Fatal(err)
		}
		if first.Counter != 1 || first.RootVersion != 1 || first.KeyVersion != 1 {
			t.Fatalf("first record: counter %d root %d key %d, want 1 1 1", first.Counter, first.RootVersion, first.KeyVersion)
		}
		p, state, err := d.Open(first.Record, FactoryState(trust.Management))
		if err != nil {
			t.Fatal(err)
		}
		checkKeys(t, km, p, 1)

		// Rotate the root: the meter's stored root stays 1 until it is
		// provisioned again, so its keys (telemetry MACs) do not move.
		if _, err := km.Rotate(ctx, keys.MeterRoot); err != nil {
			t.Fatal(err)
		}
		if got := readMeter(t, db, meterID); got.RootVersion != 1 || got.ProvisionCounter != 1 {
			t.Fatalf("after rotation: root %d counter %d, want 1 1", got.RootVersion, got.ProvisionCounter)
		}
		second, err := IssueRegistered(ctx, db, km, req, opt)
		if err != nil {
			t.Fatal(err)
		}
		if second.Counter != 2 || second.RootVersion != 2 {
			t.Fatalf("second record: counter %d root %d, want 2 2", second.Counter, second.RootVersion)
		}
		p2, state2, err := d.Open(second.Record, state)
		if err != nil {
			t.Fatal(err)
		}
		checkKeys(t, km, p2, 2)
		if _, _, err := d.Open(first.Record, state2); err == nil {
			t.Fatal("the re-provisioned meter took record 1 again (key rollback)")
		}
		if got := readMeter(t, db, meterID); got.RootVersion != 2 || got.ProvisionCounter != 2 {
			t.Fatalf("after re-provisioning: root %d counter %d, want 2 2", got.RootVersion, got.ProvisionCounter)
		}

		// A counter not above the stored one is refused by the database.
		err = db.Tx(ctx, func(tx store.Tx) error { return tx.Meters().Provisioned(ctx, meterID, 2, 2, req.Identity) })
		if !errors.Is(err, store.ErrConflict) {
			t.Fatalf("reused counter: %v, want ErrConflict", err)
		}

		// A second board claiming the same meter (a clone made from a
		// stolen request line, or a swapped board) gets nothing unless an
		// operator replaces the board; then the meter row follows it.
		clone := newDevice(t, testMeter)
		creq := request(t, clone)
		if _, err := IssueRegistered(ctx, db, km, creq, opt); !errors.Is(err, ErrOtherBoard) {
			t.Fatalf("another board: %v, want ErrOtherBoard", err)
		}
		if got := readMeter(t, db, meterID); got.ProvisionCounter != 2 || string(got.ProvisionIdentity) != string(req.Identity) {
			t.Fatalf("a refused board moved the meter row: counter %d", got.ProvisionCounter)
		}
		replace := opt
		replace.ReplaceBoard = true
		third, err := IssueRegistered(ctx, db, km, creq, replace)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := clone.Open(third.Record, FactoryState(trust.Management)); err != nil {
			t.Fatalf("the replacement board refused its record: %v", err)
		}
		if got := readMeter(t, db, meterID); got.ProvisionCounter != 3 || string(got.ProvisionIdentity) != string(creq.Identity) {
			t.Fatalf("after replacing the board: counter %d, identity not the new board's", got.ProvisionCounter)
		}
		if _, err := IssueRegistered(ctx, db, km, req, opt); !errors.Is(err, ErrOtherBoard) {
			t.Fatalf("the old board after replacement: %v, want ErrOtherBoard", err)
		}

		oreq := request(t, newDevice(t, testMeter+1))
		if _, err := IssueRegistered(ctx, db, km, oreq, opt); !errors.Is(err, ErrNotRegistered) {
			t.Fatalf("unregistered meter: %v, want ErrNotRegistered", err)
		}
		err = db.Tx(ctx, func(tx store.Tx) error {
			m, err := tx.Meters().ByID(ctx, meterID)
			if err != nil {
				return err
			}
			m.Status = "blocked"
			return tx.Meters().Update(ctx, m)
		})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := IssueRegistered(ctx, db, km, req, opt); !errors.Is(err, ErrNotRegistered) {
			t.Fatalf("blocked meter: %v, want ErrNotRegistered", err)
		}
		if got := readMeter(t, db, meterID); got.ProvisionCounter != 3 {
			t.Fatalf("refused issues moved the counter to %d", got.ProvisionCounter)
		}
	})
}

func readMeter(t *testing.T, db *sqlstore.DB, id int64) store.Meter {
	t.Helper()
	var m store.Meter
	err := db.Read(context.Background(), func(tx store.Tx) error {
		var err error
		m, err = tx.Meters().ByID(context.Background(), id)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// checkKeys compares what the meter took with the hierarchy's keys under
// root version root.
func checkKeys(t *testing.T, km kms.KeyManager, p *Provisioned, root int) {
	t.Helper()
	want, err := keys.DeriveMeter(context.Background(), km, kms.KeyRef{Name: keys.MeterRoot, Version: root}, testMeter, 1)
	if err != nil {
		t.Fatal(err)
	}
	tk, ok := p.Key(KeyTelemetry)
	if !ok || string(tk.Secret) != string(want.Telemetry[:]) || int(tk.RootVersion) != root {
		t.Fatalf("telemetry key under root %d: got %x (root %d), want %x", root, tk.Secret, tk.RootVersion, want.Telemetry)
	}
}
