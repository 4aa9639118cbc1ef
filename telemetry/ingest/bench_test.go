package ingest

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"sluice/kms/filekms/filekmstest"
	"sluice/store"
	"sluice/store/sqlstore"
	"sluice/store/storetest"
	"sluice/telemetry/broker"
	"sluice/telemetry/frame"
	"sluice/telemetry/mqttload"
	"sluice/telemetry/topic"
)

// benchMeters is how many emulated meters, each with its own MQTT
// connection, publish in the MQTT benchmark; benchInflight how many QoS 1
// publications each keeps in flight (inside the 64-frame replay window, and
// one connection delivers in order). Each connection stands for many
// meters: with 16 each, the 2,048 in flight were one batch (2,000), so the
// pipeline alternated between filling a batch and committing it, which a
// fleet of thousands of meters does not do.
const (
	benchMeters   = 128
	benchInflight = 48
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
	mids := addMeters(b, db, ids...)
	km := filekmstest.WithMeterRoot(b)
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

	// Seal and encode every frame before the clock starts: the benchmark
	// measures the head-end, not the meters.
	per := b.N/len(ids) + 1
	pubs := make([]*mqttload.Publisher, len(ids))
	packets := make([]*mqttload.Packets, len(ids))
	sealed := make([][][]byte, len(ids))
	for i, id := range ids {
		k := telemetryKey(b, km, id)
		fk, _ := frame.NewKey(k[:])
		pw, _ := MQTTPassword(k[:])
		p, err := mqttload.Dial(ctx, mqttload.Config{Addr: e.Addr(), ClientID: "meter-" + strconv.FormatUint(id, 10),
			Username: strconv.FormatUint(id, 10), Password: []byte(pw), Window: benchInflight})
		if err != nil {
			b.Fatal(err)
		}
		defer p.Close()
		pubs[i] = p
		sealed[i] = make([][]byte, per)
		for j := range per {
			sealed[i][j], _ = frame.Seal(nil, fk, benchReading(id, uint32(j+1), at))
		}
		packets[i] = p.Encode(topic.ForMeter(id, topic.Reading), sealed[i])
	}
	b.ResetTimer()
	start, cpu0 := time.Now(), processCPU()
	var wg sync.WaitGroup
	errs := make([]error, len(ids))
	for i := range ids {
		wg.Go(func() { errs[i] = pubs[i].Send(ctx, packets[i]) })
	}
	wg.Wait()
	elapsed, cpu := time.Since(start), processCPU()-cpu0
	b.StopTimer()
	for i, err := range errs {
		if err != nil {
			b.Fatalf("meter %d: %v", ids[i], err)
		}
	}
	total := per * len(ids)
	if got := in.Count(Stored); got != uint64(total) {
		b.Fatalf("stored %d of %d", got, total)
	}
	b.ReportMetric(float64(total)/elapsed.Seconds(), "readings/s")
	// CPU time per reading is steadier than the rate on shared cores; it
	// counts the whole process, publishers included.
	b.ReportMetric(float64(cpu.Microseconds())/float64(total), "cpu-µs/reading")

	// Every acknowledged reading is in the database once; sent again, the
	// last window of each meter is acknowledged as duplicates and stored
	// nothing.
	resend := min(per, benchInflight)
	for i := range ids {
		if err := pubs[i].Send(ctx, pubs[i].Encode(topic.ForMeter(ids[i], topic.Reading), sealed[i][per-resend:])); err != nil {
			b.Fatalf("meter %d, resending: %v", ids[i], err)
		}
	}
	if got := in.Count(Duplicate); got != uint64(resend*len(ids)) {
		b.Fatalf("%d duplicates counted, %d sent", got, resend*len(ids))
	}
	err = db.Read(ctx, func(tx store.Tx) error {
		for i, mid := range mids {
			n, err := tx.Telemetry().CountFrames(ctx, mid, uint8(frame.KindReading))
			if err != nil {
				return err
			}
			rs, err := tx.Telemetry().Readings(ctx, mid, at, at.Add(time.Second), per+1)
			if err != nil {
				return err
			}
			if n != int64(per) || len(rs) != per {
				return fmt.Errorf("meter %d: %d frames and %d readings stored, %d sent", ids[i], n, len(rs), per)
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
}

// BenchmarkWriteFrames measures the store's bulk path alone: batches of
// 2000 readings in one transaction, from benchMeters meters taking turns as
// a fleet's frames arrive (each meter's rows land in a different place of
// every index, which is what a single meter's append-only rows would hide).
func BenchmarkWriteFrames(b *testing.B) {
	for _, be := range storetest.Backends() {
		b.Run(be.Name, func(b *testing.B) {
			db := be.Open(b, false)
			ctx := context.Background()
			ids := make([]uint64, benchMeters)
			for i := range ids {
				ids[i] = 6000001 + uint64(i)
			}
			mids := addMeters(b, db, ids...)
			at := time.Now().UTC().Truncate(time.Second)
			db.Tx(ctx, func(tx store.Tx) error { return tx.Telemetry().EnsureReadingPartitions(ctx, at, 1) })
			const batch = 2000
			counters := make([]uint32, len(mids))
			b.ResetTimer()
			start, cpu := time.Now(), processCPU()
			for n := range b.N {
				fs := make([]store.TelemetryFrame, batch)
				ws := make([]store.ReplayState, 0, len(mids))
				for j := range fs {
					m := (n*batch + j) % len(mids)
					counters[m]++
					c := counters[m]
					t := at.Add(time.Duration(c) * time.Minute)
					fs[j] = store.TelemetryFrame{MeterID: mids[m], Counter: c, Kind: 1, Tag: [8]byte{byte(c)}, Time: t, ReceivedAt: t,
						Reading: &store.Reading{Forward: int64(c), Unit: 1, Interval: 15 * time.Minute, Intervals: []uint32{1, 2, 3, 4}}}
				}
				for m, c := range counters {
					ws = append(ws, store.ReplayState{MeterID: mids[m], Highest: c, Window: make([]byte, 20), LastFrameAt: at})
				}
				if _, err := db.WriteFrames(ctx, fs, ws); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*batch)/time.Since(start).Seconds(), "readings/s")
			b.ReportMetric(float64((processCPU()-cpu).Microseconds())/float64(b.N*batch), "cpu-µs/reading")
		})
	}
}

// BenchmarkHandle measures what the broker's callback does per message
// (topic, header, cached key, MAC, enqueue) with storage discarded.
func BenchmarkHandle(b *testing.B) {
	db := storetest.OpenSQLite(b, false)
	addMeters(b, db, 7000001)
	km := filekmstest.WithMeterRoot(b)
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

// processCPU is the user and system CPU time this process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
