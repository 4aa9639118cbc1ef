package ingest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"sluice/internal/testenv"
	"sluice/keys"
	"sluice/kms"
	"sluice/kms/filekms/filekmstest"
	"sluice/store"
	"sluice/store/sqlstore"
	"sluice/store/storetest"
	"sluice/telemetry/broker"
	"sluice/telemetry/frame"
	"sluice/telemetry/mqttlink"
	"sluice/telemetry/topic"
)

const mosquitto = "127.0.0.1:1883"

func addMeters(t testing.TB, db store.Store, numbers ...uint64) []int64 {
	t.Helper()
	ctx := context.Background()
	var ids []int64
	err := db.Tx(ctx, func(tx store.Tx) error {
		if _, err := tx.Tariffs().Get(ctx, "DOM"); errors.Is(err, store.ErrNotFound) {
			if err := tx.Tariffs().Put(ctx, store.Tariff{Code: "DOM", Definition: []byte(`{}`)}); err != nil {
				return err
			}
		}
		for _, n := range numbers {
			m, err := tx.Meters().Create(ctx, store.Meter{Number: strconv.FormatUint(n, 10), Kind: store.MeterAMI, TariffCode: "DOM", Area: "north"})
			if err != nil {
				return err
			}
			ids = append(ids, m.ID)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return ids
}

func telemetryKey(t testing.TB, km kms.KeyManager, id uint64) [16]byte {
	k, _, err := keys.MeterKey(context.Background(), km, kms.Ref(keys.MeterRoot), id, keys.Telemetry, 1)
	if err != nil {
		t.Fatal(err)
	}
	return [16]byte(k)
}

func prefix() string {
	var b [6]byte
	rand.Read(b[:])
	return "test-" + hex.EncodeToString(b[:]) + "/"
}

// rig is a head-end ingest behind a broker, and a way for meters to reach it.
type rig struct {
	db   *sqlstore.DB
	km   kms.KeyManager
	in   *Ingest
	reg  *prometheus.Registry
	link *mqttlink.Link
	b    broker.Broker
	// publisher returns the connection meter id publishes through.
	publisher func(id uint64) (mqttlink.Publisher, error)
}

// newRig starts an ingest on db behind the embedded broker or the
// Mosquitto on this machine.
func newRig(t *testing.T, db *sqlstore.DB, embedded bool, cfg Config) *rig {
	t.Helper()
	ctx := context.Background()
	r := &rig{db: db, km: filekmstest.WithMeterRoot(t), reg: prometheus.NewRegistry()}
	dir := NewKMSDirectory(db, r.km)
	cfg.Store, cfg.Directory, cfg.Registerer = db, dir, r.reg
	in, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	in.Start(ctx)
	t.Cleanup(func() { in.Close() })
	r.in = in
	p := prefix()
	var url string
	if embedded {
		e, err := broker.NewEmbedded(broker.EmbeddedConfig{Listen: "127.0.0.1:0", Prefix: p, Auth: dir})
		if err != nil {
			t.Fatal(err)
		}
		r.b, url = e, "mqtt://"+e.Addr()
		// Each meter logs in with its own credentials.
		var mu sync.Mutex
		conns := map[uint64]*mqttlink.Conn{}
		r.publisher = func(id uint64) (mqttlink.Publisher, error) {
			mu.Lock()
			defer mu.Unlock()
			if c, ok := conns[id]; ok {
				return c, nil
			}
			k := telemetryKey(t, r.km, id)
			pw, _ := MQTTPassword(k[:])
			c, err := mqttlink.Dial(ctx, mqttlink.DialConfig{URL: url, Username: mqttlink.Username(id), Password: pw, Prefix: p, ClientID: p + "m" + mqttlink.Username(id)})
			if err != nil {
				return nil, err
			}
			t.Cleanup(func() { c.Close() })
			conns[id] = c
			return c, nil
		}
	} else {
		testenv.RequireTCP(t, mosquitto)
		c, err := broker.Dial(ctx, broker.ClientConfig{URL: "mqtt://" + mosquitto, ClientID: p + "headend", Prefix: p, SessionExpiry: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		r.b, url = c, "mqtt://"+mosquitto
		// Mosquitto here has no per-meter accounts: one connection
		// speaks for the whole test fleet.
		conn, err := mqttlink.Dial(ctx, mqttlink.DialConfig{URL: url, Prefix: p, ClientID: p + "fleet"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		r.publisher = func(uint64) (mqttlink.Publisher, error) { return conn, nil }
	}
	t.Cleanup(func() { r.b.Close() })
	if err := r.b.Subscribe(ctx, []string{topic.Uplinks, topic.WMBus}, in.Handle); err != nil {
		t.Fatal(err)
	}
	r.link = mqttlink.New(mqttlink.Config{Publisher: r.publisher, Key: func(id uint64) [16]byte { return telemetryKey(t, r.km, id) }})
	return r
}

// waitCounts waits until the ingest has judged n messages in all.
func (r *rig) waitTotal(t *testing.T, n uint64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var total uint64
		for res := range numResults {
			total += r.in.Count(res)
		}
		if total >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("ingest judged %d messages, want %d (%s)", total, n, r.counts())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (r *rig) counts() string {
	s := ""
	for res := range numResults {
		if n := r.in.Count(res); n > 0 {
			s += fmt.Sprintf("%s=%d ", res, n)
		}
	}
	return s
}

func reading(id uint64, at time.Time, fwd uint64) *frame.Frame {
	return &frame.Frame{Kind: frame.KindReading, Meter: id, Time: at, Reading: frame.Reading{Forward: fwd, Credit: 500, Loaded: 1000, Unit: frame.UnitLitres}}
}

// TestIngestOverBrokers sends emulated meters' frames through each broker
// into each database, with every kind of bad frame mixed in, and checks
// both the counters and what was stored.
func TestIngestOverBrokers(t *testing.T) {
	for _, bk := range []struct {
		name     string
		embedded bool
	}{{"embedded", true}, {"mosquitto", false}} {
		for _, be := range storetest.Backends() {
			t.Run(bk.name+"/"+be.Name, func(t *testing.T) {
				db := be.Open(t, false)
				const a, b = 4710001, 4710002
				ids := addMeters(t, db, a, b)
				r := newRig(t, db, bk.embedded, Config{FlushEvery: 2 * time.Millisecond})
				ctx := context.Background()
				at := time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)
				sent := 0
				send := func(f *frame.Frame) []byte {
					t.Helper()
					raw, err := r.link.Send(ctx, f)
					if err != nil {
						t.Fatal(err)
					}
					sent++
					return raw
				}
				raw := func(id uint64, k frame.Kind, p []byte) {
					t.Helper()
					if err := r.link.Raw(ctx, id, k, p); err != nil {
						t.Fatal(err)
					}
					sent++
				}
				var second []byte
				for i := range 5 {
					p := send(reading(a, at.Add(time.Duration(i)*time.Hour), uint64(100*i)))
					if i == 1 {
						second = p
					}
				}
				send(reading(b, at, 7))
				send(&frame.Frame{Kind: frame.KindEvent, Meter: a, Time: at, Events: []frame.Event{{Kind: 9, Time: at, Value: 1}}})
				send(&frame.Frame{Kind: frame.KindAck, Meter: a, Time: at, Ack: frame.Ack{Subject: frame.SubjectVoucher, Result: frame.Accepted, Ref: 1, Amount: 50, Credit: 550, Loaded: 1050}})
				r.waitTotal(t, uint64(sent))

				// Duplicate: the second reading again (a lost PUBACK, or a
				// replay of captured bytes).
				raw(a, frame.KindReading, second)
				// Forged: a flipped bit in the body; and a frame sealed
				// under another key.
				bad := append([]byte(nil), second...)
				bad[frame.HeaderSize] ^= 1
				raw(a, frame.KindReading, bad)
				wrong, _ := frame.NewKey(make([]byte, 16))
				fw, _ := frame.Seal(nil, wrong, &frame.Frame{Kind: frame.KindReading, Meter: a, Counter: 50, Time: at, Reading: frame.Reading{Unit: 1}})
				raw(a, frame.KindReading, fw)
				// Reused: a different authentic frame under the highest
				// counter (7: 5 readings, 1 event, 1 ack).
				k := telemetryKey(t, r.km, a)
				fk, _ := frame.NewKey(k[:])
				ru, _ := frame.Seal(nil, fk, &frame.Frame{Kind: frame.KindReading, Meter: a, Counter: 7, Time: at, Reading: frame.Reading{Forward: 9999, Unit: 1}})
				raw(a, frame.KindReading, ru)
				// Reused below the top: counter 3 was a reading, this is
				// another one; the window says "seen", the store tells.
				ru3, _ := frame.Seal(nil, fk, &frame.Frame{Kind: frame.KindReading, Meter: a, Counter: 3, Time: at, Reading: frame.Reading{Forward: 8888, Unit: 1}})
				raw(a, frame.KindReading, ru3)
				// Out of window: jump to 200, then an unseen 100.
				far, _ := frame.Seal(nil, fk, &frame.Frame{Kind: frame.KindReading, Meter: a, Counter: 200, Time: at.Add(10 * time.Hour), Reading: frame.Reading{Forward: 1000, Unit: 1}})
				raw(a, frame.KindReading, far)
				r.waitTotal(t, uint64(sent))
				old, _ := frame.Seal(nil, fk, &frame.Frame{Kind: frame.KindReading, Meter: a, Counter: 100, Time: at, Reading: frame.Reading{Forward: 1, Unit: 1}})
				raw(a, frame.KindReading, old)
				// Topic mismatch: a reading on the event topic.
				raw(a, frame.KindEvent, second)
				// Unknown meter (Mosquitto only: the embedded broker
				// refuses its login).
				if !bk.embedded {
					ku := telemetryKey(t, r.km, 999)
					fku, _ := frame.NewKey(ku[:])
					u, _ := frame.Seal(nil, fku, &frame.Frame{Kind: frame.KindReading, Meter: 999, Counter: 1, Time: at, Reading: frame.Reading{Unit: 1}})
					raw(999, frame.KindReading, u)
				}
				r.waitTotal(t, uint64(sent))

				want := map[Result]uint64{Stored: 9, Duplicate: 1, Forged: 2, Reused: 2, OutOfWindow: 1, Mismatch: 1}
				if !bk.embedded {
					want[UnknownMeter] = 1
				}
				for res := range numResults {
					if got := r.in.Count(res); got != want[res] {
						t.Errorf("%s = %d, want %d (%s)", res, got, want[res], r.counts())
					}
				}
				// The same numbers reach Prometheus.
				mfs, err := r.reg.Gather()
				if err != nil {
					t.Fatal(err)
				}
				for _, mf := range mfs {
					if mf.GetName() != "sluice_telemetry_frames_total" {
						continue
					}
					for _, m := range mf.GetMetric() {
						if m.GetLabel()[0].GetValue() == "forged" && m.GetCounter().GetValue() != 2 {
							t.Errorf("metric forged = %v", m.GetCounter().GetValue())
						}
					}
				}
				err = db.Read(ctx, func(tx store.Tx) error {
					n, err := tx.Telemetry().CountFrames(ctx, ids[0], 0)
					if err != nil {
						return err
					}
					if n != 8 { // 5 readings, event, ack, counter 200
						t.Errorf("meter a: %d frames stored, want 8", n)
					}
					rs, err := tx.Telemetry().Readings(ctx, ids[0], at.Add(-time.Hour), at.Add(24*time.Hour), 100)
					if err != nil {
						return err
					}
					if len(rs) != 6 {
						t.Errorf("meter a: %d readings, want 6", len(rs))
					}
					for _, rd := range rs {
						if rd.Forward == 9999 || rd.Forward == 8888 || rd.Forward == 1 {
							t.Errorf("a refused frame was stored: %+v", rd)
						}
					}
					as, err := tx.Telemetry().Acks(ctx, ids[0], 10)
					if err != nil || len(as) != 1 || as[0].Loaded != 1050 {
						t.Errorf("acks %+v %v", as, err)
					}
					ws, err := tx.Telemetry().ReplayStates(ctx, ids)
					if err != nil {
						return err
					}
					for _, w := range ws {
						if w.MeterID == ids[0] && w.Highest != 200 {
							t.Errorf("meter a window at %d, want 200", w.Highest)
						}
					}
					return nil
				})
				if err != nil {
					t.Fatal(err)
				}
			})
		}
	}
}

// blockingWriter stores nothing until released, and fails when told to.
type blockingWriter struct {
	release chan struct{}
	fail    atomic.Int32
	calls   atomic.Int32
}

func (w *blockingWriter) WriteFrames(_ context.Context, fs []store.TelemetryFrame, _ []store.ReplayState) ([]store.FrameOutcome, error) {
	<-w.release
	w.calls.Add(1)
	if w.fail.Add(-1) >= 0 {
		return nil, errors.New("database unavailable")
	}
	out := make([]store.FrameOutcome, len(fs))
	for i := range out {
		out[i] = store.FrameStored
	}
	return out, nil
}

// A full queue blocks the broker's callback instead of dropping, and
// nothing is acknowledged before the store committed, even across a
// failing database.
func TestBackPressureAndAckAfterCommit(t *testing.T) {
	db := storetest.OpenSQLite(t, false)
	addMeters(t, db, 4710001)
	km := filekmstest.WithMeterRoot(t)
	w := &blockingWriter{release: make(chan struct{})}
	w.fail.Store(1)
	in, err := New(Config{Store: db, Directory: NewKMSDirectory(db, km), Writer: w, QueueSize: 2, BatchSize: 1, FlushEvery: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	in.Start(context.Background())
	defer in.Close()
	k := telemetryKey(t, km, 4710001)
	fk, _ := frame.NewKey(k[:])
	var acked atomic.Int32
	handled := make(chan int, 10)
	at := time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)
	go func() {
		for i := 1; i <= 5; i++ {
			b, _ := frame.Seal(nil, fk, &frame.Frame{Kind: frame.KindReading, Meter: 4710001, Counter: uint32(i), Time: at, Reading: frame.Reading{Unit: 1}})
			in.Handle(topic.ForMeter(4710001, topic.Reading), b, func() { acked.Add(1) })
			handled <- i
		}
	}()
	// One frame in the worker's hands, two in the queue; the fourth
	// Handle blocks.
	deadline := time.After(2 * time.Second)
	got := 0
wait:
	for {
		select {
		case <-handled:
			got++
		case <-time.After(200 * time.Millisecond):
			break wait
		case <-deadline:
			break wait
		}
	}
	if got != 3 {
		t.Fatalf("%d Handle calls returned with the store blocked, want 3 (1 in a batch + queue of 2)", got)
	}
	if acked.Load() != 0 {
		t.Fatal("acknowledged before the store committed")
	}
	close(w.release) // first attempt fails, then everything commits
	for range 2 {
		select {
		case <-handled:
		case <-time.After(5 * time.Second):
			t.Fatal("Handle still blocked after the store recovered")
		}
	}
	for deadline := time.Now().Add(5 * time.Second); acked.Load() < 5 && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	if acked.Load() != 5 || in.Count(Stored) != 5 {
		t.Fatalf("acked %d, stored %d, want 5 and 5", acked.Load(), in.Count(Stored))
	}
	if w.calls.Load() < 6 {
		t.Fatalf("writer called %d times: the failed batch was not retried", w.calls.Load())
	}
}

// Broker logins: the canonical meter number and the password derived from
// its telemetry key, nothing else; the ACL is the meter's own topics.
func TestAuthenticate(t *testing.T) {
	db := storetest.OpenSQLite(t, false)
	addMeters(t, db, 4710001)
	km := filekmstest.WithMeterRoot(t)
	d := NewKMSDirectory(db, km)
	ctx := context.Background()
	k := telemetryKey(t, km, 4710001)
	pw, _ := MQTTPassword(k[:])
	if len(pw) != 32 {
		t.Fatalf("password %q", pw)
	}
	acl, err := d.Authenticate(ctx, "4710001", []byte(pw))
	if err != nil {
		t.Fatal(err)
	}
	pub, sub := topic.MeterACL(4710001)
	if fmt.Sprint(acl.Publish) != fmt.Sprint(pub) || fmt.Sprint(acl.Subscribe) != fmt.Sprint(sub) {
		t.Fatalf("ACL %+v", acl)
	}
	k2 := telemetryKey(t, km, 4710002)
	pw2, _ := MQTTPassword(k2[:])
	for _, c := range []struct{ user, pw string }{
		{"04710001", pw},  // not canonical
		{"4710001", pw2},  // another meter's password
		{"4710001", ""},   // none
		{"4710002", pw2},  // not registered
		{"gateway-1", pw}, // not a number
		{"0", pw},         // reserved
	} {
		if _, err := d.Authenticate(ctx, c.user, []byte(c.pw)); !errors.Is(err, broker.ErrAuth) {
			t.Errorf("login %q: %v", c.user, err)
		}
	}
}

// A meter-root rotation must not change the key of a meter in the field:
// the directory derives each meter's telemetry key under the root version
// the meter was provisioned with, and follows it when the meter is
// provisioned again under the new root.
func TestDirectoryPinsRootVersion(t *testing.T) {
	db := storetest.OpenSQLite(t, false)
	ids := addMeters(t, db, 4720001)
	km := filekmstest.WithMeterRoot(t)
	ctx := context.Background()
	old := telemetryKey(t, km, 4720001)
	if _, err := km.Rotate(ctx, keys.MeterRoot); err != nil {
		t.Fatal(err)
	}
	d := NewKMSDirectory(db, km)
	m, err := d.Meter(ctx, 4720001)
	if err != nil {
		t.Fatal(err)
	}
	pw, _ := MQTTPassword(old[:])
	if m.Password != pw {
		t.Fatal("after a root rotation the meter's telemetry key moved to the new root")
	}
	err = db.Tx(ctx, func(tx store.Tx) error { return tx.Meters().Provisioned(ctx, ids[0], 2, 1, make([]byte, 32)) })
	if err != nil {
		t.Fatal(err)
	}
	d.Forget(4720001)
	if m, err = d.Meter(ctx, 4720001); err != nil {
		t.Fatal(err)
	}
	k2, _, err := keys.MeterKey(ctx, km, kms.KeyRef{Name: keys.MeterRoot, Version: 2}, 4720001, keys.Telemetry, 1)
	if err != nil {
		t.Fatal(err)
	}
	pw2, _ := MQTTPassword(k2)
	if m.Password != pw2 || pw2 == pw {
		t.Fatal("re-provisioned under root 2, the directory still derives under root 1")
	}
}
