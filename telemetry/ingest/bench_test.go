package ingest

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"sluice/store"
	"sluice/store/sqlstore"
	"sluice/store/storetest"
	"sluice/telemetry/broker"
	"sluice/telemetry/frame"
	"sluice/telemetry/mqttlink"
	"sluice/telemetry/topic"
)

// benchMeters is how many emulated meters, each with its own MQTT
// connection, publish in the MQTT benchmark; benchInflight how many QoS 1
// publications each keeps in flight (well inside the 64-frame replay
// window, so reordering never makes a frame too old).
const (
	benchMeters   = 128
	benchInflight = 16
)

func benchReading(id uint64, counter uint32, at time.Time) *frame.Frame {
	return &frame.Frame{Kind: frame.KindReading, Meter: id, Counter: counter, Time: at,
		Reading: frame.Reading{Forward: uint64(counter) * 10, Credit: 1000, Loaded: 5000, Unit: frame.UnitLitres,
			Interval: 15 * time.Minute, Intervals: []uint32{1, 2, 3, 4}}}
}

// BenchmarkIngestMQTT measures readings per second from MQTT publishers
// through the embedded broker, verification, the replay check and batched
// storage, acknowledged after commit, into each database.
func BenchmarkIngestMQTT(b *testing.B) {
	for _, be := range storetest.Backends() {
		b.Run(be.Name, func(b *testing.B) { benchMQTT(b, be.Open(b, false)) })
	}
}

func benchMQTT(b *testing.B, db *sqlstore.DB) {
	ctx := context.Background()
	ids := make([]uint64, benchMeters)
	for i := range ids {
		ids[i] = 5000001 + uint64(i)
	}
	addMeters(b, db, ids...)
	km := newKMS(b)
	workers := 1
	if db.Driver() == "postgres" {
		workers = 4
	}
	dir := NewKMSDirectory(db, km)
	in, err := New(Config{Store: db, Directory: dir, Workers: workers})
	if err != nil {
		b.Fatal(err)
	}
	in.Start(ctx)
	defer in.Close()
	e, err := broker.NewEmbedded(broker.EmbeddedConfig{Listen: "127.0.0.1:0", Auth: dir})
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	e.Subscribe(ctx, []string{topic.Uplinks}, in.Handle)
	at := time.Now().UTC().Truncate(time.Second)
	if err := db.Tx(ctx, func(tx store.Tx) error { return tx.Telemetry().EnsureReadingPartitions(ctx, at, 1) }); err != nil {
		b.Fatal(err)
	}

	conns := make([]*mqttlink.Conn, len(ids))
	keys := make([]*frame.Key, len(ids))
	for i, id := range ids {
		k := telemetryKey(b, km, id)
		keys[i], _ = frame.NewKey(k[:])
		pw, _ := MQTTPassword(k[:])
		c, err := mqttlink.Dial(ctx, mqttlink.DialConfig{URL: "mqtt://" + e.Addr(), Username: strconv.FormatUint(id, 10), Password: pw})
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		conns[i] = c
	}
	// Seal every frame before the clock starts: the benchmark measures the
	// head-end, not the meters.
	per := b.N/len(ids) + 1
	payloads := make([][][]byte, len(ids))
	for i, id := range ids {
		payloads[i] = make([][]byte, per)
		for j := range per {
			payloads[i][j], _ = frame.Seal(nil, keys[i], benchReading(id, uint32(j+1), at))
		}
	}
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	var failed atomic.Int64
	for i, id := range ids {
		next := make(chan []byte)
		go func() {
			for _, p := range payloads[i] {
				next <- p
			}
			close(next)
		}()
		t := topic.ForMeter(id, topic.Reading)
		for range benchInflight {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for p := range next {
					if err := conns[i].Publish(ctx, t, p); err != nil {
						failed.Add(1)
					}
				}
			}()
		}
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	if failed.Load() > 0 {
		b.Fatalf("%d publications failed", failed.Load())
	}
	total := per * len(ids)
	if got := in.Count(Stored); got != uint64(total) {
		b.Fatalf("stored %d of %d", got, total)
	}
	b.ReportMetric(float64(total)/elapsed.Seconds(), "readings/s")
}

// BenchmarkWriteFrames measures the store's bulk path alone: batches of
// 2000 readings in one transaction.
func BenchmarkWriteFrames(b *testing.B) {
	for _, be := range storetest.Backends() {
		b.Run(be.Name, func(b *testing.B) {
			db := be.Open(b, false)
			ctx := context.Background()
			mids := addMeters(b, db, 6000001)
			at := time.Now().UTC().Truncate(time.Second)
			db.Tx(ctx, func(tx store.Tx) error { return tx.Telemetry().EnsureReadingPartitions(ctx, at, 1) })
			const batch = 2000
			b.ResetTimer()
			start := time.Now()
			counter := uint32(0)
			for range b.N {
				fs := make([]store.TelemetryFrame, batch)
				for j := range fs {
					counter++
					fs[j] = store.TelemetryFrame{MeterID: mids[0], Counter: counter, Kind: 1, Tag: [8]byte{byte(counter)}, Time: at, ReceivedAt: at,
						Reading: &store.Reading{Forward: int64(counter), Unit: 1, Interval: 15 * time.Minute, Intervals: []uint32{1, 2, 3, 4}}}
				}
				if _, err := db.WriteFrames(ctx, fs, []store.ReplayState{{MeterID: mids[0], Highest: counter, Window: make([]byte, 20), LastFrameAt: at}}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*batch)/time.Since(start).Seconds(), "readings/s")
		})
	}
}

// BenchmarkHandle measures what the broker's callback does per message
// (topic, header, cached key, MAC, enqueue) with storage discarded.
func BenchmarkHandle(b *testing.B) {
	db := storetest.OpenSQLite(b, false)
	addMeters(b, db, 7000001)
	km := newKMS(b)
	w := &blockingWriter{release: make(chan struct{})}
	close(w.release)
	in, err := New(Config{Store: db, Directory: NewKMSDirectory(db, km), Writer: w})
	if err != nil {
		b.Fatal(err)
	}
	in.Start(context.Background())
	defer in.Close()
	k := telemetryKey(b, km, 7000001)
	fk, _ := frame.NewKey(k[:])
	at := time.Now().UTC().Truncate(time.Second)
	p, _ := frame.Seal(nil, fk, benchReading(7000001, 1, at))
	t := topic.ForMeter(7000001, topic.Reading)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		in.Handle(t, p, func() {})
	}
}
