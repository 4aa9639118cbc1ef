package storetest

import (
	"context"
	"errors"
	"testing"
	"time"

	"sluice/store"
	"sluice/store/sqlstore"
)

func amiMeter(t *testing.T, db *sqlstore.DB, number, area string) store.Meter {
	t.Helper()
	ctx := context.Background()
	var m store.Meter
	err := db.Tx(ctx, func(tx store.Tx) error {
		if _, err := tx.Tariffs().Get(ctx, "DOM"); errors.Is(err, store.ErrNotFound) {
			if err := tx.Tariffs().Put(ctx, store.Tariff{Code: "DOM", Definition: []byte(`{}`)}); err != nil {
				return err
			}
		}
		var err error
		m, err = tx.Meters().Create(ctx, store.Meter{Number: number, Kind: store.MeterAMI, TariffCode: "DOM", Area: area})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func reading(meter int64, counter uint32, tag byte, at time.Time, fwd int64) store.TelemetryFrame {
	return store.TelemetryFrame{MeterID: meter, Counter: counter, Kind: 1, Tag: [8]byte{tag}, Time: at, ReceivedAt: at,
		Reading: &store.Reading{Forward: fwd, Credit: 100, Loaded: 500, Unit: 1, Status: 0x41, Interval: 15 * time.Minute, Intervals: []uint32{1, 2, 3}}}
}

// Frames are stored once by (meter, counter): a retransmission, in the same
// batch or a later one, writes nothing; a different frame under a stored
// counter is reported as reused and writes nothing. Both write paths (the
// FrameWriter bulk path and the transaction repository) behave the same.
func TestFramesIdempotent(t *testing.T) {
	Each(t, func(t *testing.T, db *sqlstore.DB) {
		ctx := context.Background()
		m := amiMeter(t, db, "4710001", "north")
		at := time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)
		if err := db.Tx(ctx, func(tx store.Tx) error { return tx.Telemetry().EnsureReadingPartitions(ctx, at, 2) }); err != nil {
			t.Fatal(err)
		}
		win := func(h uint32) store.ReplayState {
			return store.ReplayState{MeterID: m.ID, Highest: h, Window: make([]byte, 20), LastFrameAt: at, LastReadingAt: at}
		}
		batch := []store.TelemetryFrame{
			reading(m.ID, 1, 0xA1, at, 10),
			reading(m.ID, 2, 0xA2, at.Add(time.Hour), 20),
			reading(m.ID, 2, 0xA2, at.Add(time.Hour), 20), // retransmission in the batch
			reading(m.ID, 3, 0xA3, at.Add(2*time.Hour), 30),
			{MeterID: m.ID, Counter: 4, Kind: 2, Tag: [8]byte{0xA4}, Time: at, ReceivedAt: at, Events: []store.TelemetryEvent{{Kind: 2, Reason: 2, Time: at, Value: 7}, {Kind: 13, Time: at, Value: 60}}},
			{MeterID: m.ID, Counter: 5, Kind: 3, Tag: [8]byte{0xA5}, Time: at, ReceivedAt: at, Ack: &store.TelemetryAck{Subject: 2, Result: 1, Ref: 9, Amount: 50, Credit: 150, Loaded: 550}},
		}
		out, err := db.WriteFrames(ctx, batch, []store.ReplayState{win(3), win(5)})
		if err != nil {
			t.Fatal(err)
		}
		want := []store.FrameOutcome{store.FrameStored, store.FrameStored, store.FrameDuplicate, store.FrameStored, store.FrameStored, store.FrameStored}
		for i := range want {
			if out[i] != want[i] {
				t.Fatalf("outcome %d = %d, want %d (all %v)", i, out[i], want[i], out)
			}
		}
		// A later batch: one retransmission, one reuse, one new, through
		// the repository path.
		var out2 []store.FrameOutcome
		err = db.Tx(ctx, func(tx store.Tx) error {
			var err error
			out2, err = tx.Telemetry().StoreFrames(ctx, []store.TelemetryFrame{
				reading(m.ID, 1, 0xA1, at, 10),
				reading(m.ID, 3, 0xFF, at, 999),
				reading(m.ID, 6, 0xA6, at.Add(3*time.Hour), 60),
			}, []store.ReplayState{win(2)}) // an older window must not move the stored one back
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if out2[0] != store.FrameDuplicate || out2[1] != store.FrameReused || out2[2] != store.FrameStored {
			t.Fatalf("second batch outcomes %v", out2)
		}
		err = db.Read(ctx, func(tx store.Tx) error {
			ws, err := tx.Telemetry().ReplayStates(ctx, []int64{m.ID})
			if err != nil || len(ws) != 1 || ws[0].Highest != 5 {
				t.Fatalf("window %+v %v: must stay at 5", ws, err)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		// And through the bulk path again, whose first attempt (a COPY on
		// PostgreSQL) assumes no frame is stored yet: one stored frame in
		// the batch must send the whole batch down the path that sorts new
		// from stored, with nothing written twice.
		out3, err := db.WriteFrames(ctx, []store.TelemetryFrame{
			reading(m.ID, 7, 0xA7, at.Add(4*time.Hour), 70),
			reading(m.ID, 6, 0xA6, at.Add(3*time.Hour), 60),
			reading(m.ID, 5, 0xEE, at, 555),
		}, []store.ReplayState{win(7)})
		if err != nil {
			t.Fatal(err)
		}
		if out3[0] != store.FrameStored || out3[1] != store.FrameDuplicate || out3[2] != store.FrameReused {
			t.Fatalf("third batch outcomes %v", out3)
		}
		err = db.Read(ctx, func(tx store.Tx) error {
			rs, err := tx.Telemetry().Readings(ctx, m.ID, at.Add(-time.Hour), at.Add(24*time.Hour), 100)
			if err != nil {
				return err
			}
			if len(rs) != 5 {
				t.Fatalf("%d readings stored, want 5", len(rs))
			}
			if rs[0].Counter != 7 || rs[1].Forward != 60 || rs[4].Forward != 10 || len(rs[4].Intervals) != 3 || rs[4].Intervals[2] != 3 || rs[4].Interval != 15*time.Minute || rs[4].Status != 0x41 {
				t.Fatalf("readings read back wrong: %+v", rs)
			}
			es, err := tx.Telemetry().Events(ctx, m.ID, time.Time{}, 10)
			if err != nil || len(es) != 2 {
				t.Fatalf("events %v %v", es, err)
			}
			as, err := tx.Telemetry().Acks(ctx, m.ID, 10)
			if err != nil || len(as) != 1 || as[0].Loaded != 550 || as[0].Ref != 9 {
				t.Fatalf("acks %+v %v", as, err)
			}
			n, err := tx.Telemetry().CountFrames(ctx, m.ID, 0)
			if err != nil || n != 7 {
				t.Fatalf("%d frames stored, want 7 (%v)", n, err)
			}
			ws, err := tx.Telemetry().ReplayStates(ctx, []int64{m.ID})
			if err != nil || len(ws) != 1 || ws[0].Highest != 7 {
				t.Fatalf("window %+v %v: want 7", ws, err)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	})
}

// Alerts: one live alert per subject and rule; acknowledge and resolve move
// it along, and a resolved alert makes room for a new one.
func TestAlertLifeCycle(t *testing.T) {
	Each(t, func(t *testing.T, db *sqlstore.DB) {
		ctx := context.Background()
		m := amiMeter(t, db, "4710002", "north")
		at := time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)
		raise := func(sev string) (store.Alert, bool) {
			var a store.Alert
			var isNew bool
			if err := db.Tx(ctx, func(tx store.Tx) error {
				var err error
				a, isNew, err = tx.Alerts().Raise(ctx, store.Alert{Subject: "meter:4710002", MeterID: m.ID, Rule: "tamper-magnet", Severity: sev, Summary: "magnet", LastAt: at})
				return err
			}); err != nil {
				t.Fatal(err)
			}
			return a, isNew
		}
		a, isNew := raise(store.SeverityWarning)
		if !isNew || a.State != store.AlertOpen || a.Count != 1 {
			t.Fatalf("first raise: %+v new=%v", a, isNew)
		}
		b, isNew := raise(store.SeverityCritical)
		if isNew || b.ID != a.ID || b.Count != 2 || b.Severity != store.SeverityCritical {
			t.Fatalf("second raise: %+v new=%v", b, isNew)
		}
		c, _ := raise(store.SeverityInfo)
		if c.Severity != store.SeverityCritical {
			t.Fatalf("severity went down to %s", c.Severity)
		}
		err := db.Tx(ctx, func(tx store.Tx) error {
			if _, err := tx.Alerts().Resolve(ctx, a.ID, "operator:x", "checked", at); err != nil {
				return err
			}
			if _, err := tx.Alerts().Acknowledge(ctx, a.ID, "operator:x", at); !errors.Is(err, store.ErrConflict) {
				t.Fatalf("acknowledge a resolved alert: %v", err)
			}
			if _, err := tx.Alerts().Resolve(ctx, a.ID, "operator:x", "again", at); !errors.Is(err, store.ErrConflict) {
				t.Fatalf("resolve twice: %v", err)
			}
			if _, err := tx.Alerts().ByID(ctx, 9999); !errors.Is(err, store.ErrNotFound) {
				t.Fatalf("missing alert: %v", err)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		d, isNew := raise(store.SeverityWarning)
		if !isNew || d.ID == a.ID {
			t.Fatalf("raise after resolve: %+v new=%v", d, isNew)
		}
		err = db.Read(ctx, func(tx store.Tx) error {
			open, err := tx.Alerts().List(ctx, store.AlertFilter{State: store.AlertOpen})
			if err != nil || len(open) != 1 || open[0].ID != d.ID {
				t.Fatalf("open alerts %+v %v", open, err)
			}
			all, err := tx.Alerts().List(ctx, store.AlertFilter{MeterID: m.ID, Rule: "tamper-magnet"})
			if err != nil || len(all) != 2 {
				t.Fatalf("all alerts %+v %v", all, err)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	})
}

func TestWMBusRegistryAndActivity(t *testing.T) {
	Each(t, func(t *testing.T, db *sqlstore.DB) {
		ctx := context.Background()
		m := amiMeter(t, db, "4710003", "south")
		m2 := amiMeter(t, db, "4710004", "south")
		at := time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)
		err := db.Tx(ctx, func(tx store.Tx) error {
			if err := tx.Telemetry().PutWMBusMeter(ctx, store.WMBusMeter{MeterID: m.ID, Address: "KAM12345678", WrappedKey: []byte{1, 2, 3}, KeyName: "meter-root", KeyVersion: 1}); err != nil {
				return err
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		err = db.Tx(ctx, func(tx store.Tx) error {
			return tx.Telemetry().PutWMBusMeter(ctx, store.WMBusMeter{MeterID: m2.ID, Address: "KAM12345678", WrappedKey: []byte{1}, KeyName: "meter-root", KeyVersion: 1})
		})
		if !errors.Is(err, store.ErrConflict) {
			t.Fatalf("one address for two meters: %v", err)
		}
		err = db.Tx(ctx, func(tx store.Tx) error {
			w, err := tx.Telemetry().WMBusMeter(ctx, "KAM12345678")
			if err != nil || w.MeterID != m.ID || string(w.WrappedKey) != "\x01\x02\x03" {
				t.Fatalf("registration %+v %v", w, err)
			}
			if err := tx.Telemetry().StoreReadings(ctx, []store.Reading{{MeterID: m.ID, Time: at, ReceivedAt: at, Forward: 1000, Unit: 1}, {MeterID: m.ID, Time: at.Add(time.Hour), ReceivedAt: at.Add(time.Hour), Forward: 1250, Unit: 1}}); err != nil {
				return err
			}
			act, err := tx.Telemetry().Activity(ctx, []string{store.MeterAMI})
			if err != nil || len(act) != 2 || !act[0].LastFrameAt.Equal(at.Add(time.Hour)) || !act[1].LastFrameAt.IsZero() || act[0].Area != "south" {
				t.Fatalf("activity %+v %v", act, err)
			}
			cs, err := tx.Telemetry().Consumption(ctx, at, at.Add(24*time.Hour))
			if err != nil || len(cs) != 1 || cs[0].Litres != 250 || cs[0].Readings != 2 {
				t.Fatalf("consumption %+v %v", cs, err)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	})
}

// Undelivered vouchers of AMI meters are listed until acknowledged, with
// their delivery attempts; a rejected one is no longer due.
func TestPendingVouchers(t *testing.T) {
	Each(t, func(t *testing.T, db *sqlstore.DB) {
		ctx := context.Background()
		m := amiMeter(t, db, "4710005", "north")
		at := time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)
		var tok1, tok2 store.Token
		err := db.Tx(ctx, func(tx store.Tx) error {
			var err error
			if tok1, err = tx.Tokens().Create(ctx, store.Token{MeterID: m.ID, Kind: store.TokenCredit, Voucher: []byte{1}, VoucherSeq: 1, Litres: 100}); err != nil {
				return err
			}
			tok2, err = tx.Tokens().Create(ctx, store.Token{MeterID: m.ID, Kind: store.TokenCredit, Voucher: []byte{2}, VoucherSeq: 2, Litres: 200})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		due := func(now time.Time) []store.PendingVoucher {
			var ps []store.PendingVoucher
			if err := db.Read(ctx, func(tx store.Tx) error {
				var err error
				ps, err = tx.Telemetry().PendingVouchers(ctx, now, 10)
				return err
			}); err != nil {
				t.Fatal(err)
			}
			return ps
		}
		if ps := due(at); len(ps) != 2 || ps[0].Number != "4710005" || ps[0].VoucherSeq != 1 || string(ps[1].Voucher) != "\x02" {
			t.Fatalf("due %+v", ps)
		}
		err = db.Tx(ctx, func(tx store.Tx) error {
			if err := tx.Telemetry().VoucherAttempt(ctx, tok1.ID, at, at.Add(time.Minute), ""); err != nil {
				return err
			}
			return tx.Telemetry().VoucherRejected(ctx, m.ID, 2, "reason 6", at)
		})
		if err != nil {
			t.Fatal(err)
		}
		if ps := due(at); len(ps) != 0 {
			t.Fatalf("due before the back-off ended: %+v", ps)
		}
		if ps := due(at.Add(time.Minute)); len(ps) != 1 || ps[0].TokenID != tok1.ID || ps[0].Attempts != 1 {
			t.Fatalf("due after the back-off: %+v", ps)
		}
		all := due(time.Time{})
		if len(all) != 2 || !all[1].Rejected && !all[0].Rejected {
			t.Fatalf("operators' list %+v", all)
		}
		db.Tx(ctx, func(tx store.Tx) error { _, err := tx.Tokens().MarkDelivered(ctx, m.ID, 1, at); return err })
		if all := due(time.Time{}); len(all) != 1 || all[0].TokenID != tok2.ID {
			t.Fatalf("after delivery %+v", all)
		}
	})
}
