package bench

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"sluice/keys"
	"sluice/kms"
	"sluice/store"
	"sluice/telemetry/broker"
	"sluice/telemetry/frame"
	"sluice/telemetry/ingest"
	"sluice/telemetry/mqttload"
	"sluice/telemetry/topic"
)

// Telemetry publishers: meters each with its own MQTT connection and
// several QoS 1 publications in flight (inside the 64-frame replay window;
// a connection delivers in order). Each stands for many meters: 16 in flight
// each made 2,048 in all, one ingest batch, so the pipeline alternated
// between filling a batch and committing it (see BenchmarkIngestMQTT).
const (
	telemetryMeters   = 128
	telemetryInflight = 48
)

// runTelemetry measures readings ingested per second: meters publish sealed
// reading frames over MQTT to the embedded broker; the ingest verifies each
// MAC under the meter's telemetry key (derived in the key manager, cached),
// checks the replay window, writes batches in one transaction (COPY on
// PostgreSQL) and acknowledges after the commit.
func runTelemetry(ctx context.Context, o *Options) ([]Result, error) {
	return o.onEachDriver(ctx, one(telemetryOn))
}

func benchReading(id uint64, counter uint32, at time.Time) *frame.Frame {
	return &frame.Frame{Kind: frame.KindReading, Meter: id, Counter: counter, Time: at,
		Reading: frame.Reading{Forward: uint64(counter) * 10, Credit: 1000, Loaded: 5000, Unit: frame.UnitLitres,
			Interval: 15 * time.Minute, Intervals: []uint32{1, 2, 3, 4}}}
}

func telemetryOn(ctx context.Context, o *Options, drv string) (Result, error) {
	r, err := startBareRig(ctx, o, drv)
	if err != nil {
		return Result{}, err
	}
	defer r.close()
	he := r.heads[0]
	db, km := he.Store(), he.KMS()
	if _, err := km.Key(ctx, kms.Ref(keys.MeterRoot)); err != nil {
		// The head-end's key hierarchy normally holds the meter root;
		// create it if this build's does not.
		if _, err := km.CreateKey(ctx, keys.MeterRoot, kms.AES256); err != nil {
			return Result{}, err
		}
	}
	ids := make([]uint64, telemetryMeters)
	err = db.Tx(ctx, func(tx store.Tx) error {
		for i := range ids {
			ids[i] = 5000001 + uint64(i)
			if _, err := tx.Meters().Create(ctx, store.Meter{Number: strconv.FormatUint(ids[i], 10), Kind: store.MeterAMI, TariffCode: "DOM-2026", Area: "bench"}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return Result{}, fmt.Errorf("meters: %w", err)
	}
	workers := 1
	if drv == "postgres" {
		workers = 4
	}
	dir := ingest.NewKMSDirectory(db, km)
	in, err := ingest.New(ingest.Config{Store: db, Directory: dir, Workers: workers})
	if err != nil {
		return Result{}, err
	}
	in.Start(ctx)
	defer in.Close()
	e, err := broker.NewEmbedded(broker.EmbeddedConfig{Listen: "127.0.0.1:0", Auth: dir})
	if err != nil {
		return Result{}, err
	}
	defer e.Close()
	if err := e.Subscribe(ctx, []string{topic.Uplinks}, in.Handle); err != nil {
		return Result{}, err
	}
	at := time.Now().UTC().Truncate(time.Second)
	if err := db.Tx(ctx, func(tx store.Tx) error { return tx.Telemetry().EnsureReadingPartitions(ctx, at, 1) }); err != nil {
		return Result{}, err
	}
	// Seal and encode every frame before the clock starts: this measures
	// the head-end, not the meters. The meters publish through mqttload,
	// real MQTT over TCP waiting for every PUBACK, without a client
	// library's cost per message on the cores the head-end uses.
	per := o.TelemetryReadings/len(ids) + 1
	pubs := make([]*mqttload.Publisher, len(ids))
	packets := make([]*mqttload.Packets, len(ids))
	for i, id := range ids {
		k, _, err := keys.MeterKey(ctx, km, kms.Ref(keys.MeterRoot), id, keys.Telemetry, 1)
		if err != nil {
			return Result{}, err
		}
		fk, err := frame.NewKey(k)
		if err != nil {
			return Result{}, err
		}
		pw, err := ingest.MQTTPassword(k)
		if err != nil {
			return Result{}, err
		}
		p, err := mqttload.Dial(ctx, mqttload.Config{Addr: e.Addr(), ClientID: "meter-" + strconv.FormatUint(id, 10),
			Username: strconv.FormatUint(id, 10), Password: []byte(pw), Window: telemetryInflight})
		if err != nil {
			return Result{}, err
		}
		defer p.Close()
		pubs[i] = p
		payloads := make([][]byte, per)
		for j := range per {
			if payloads[j], err = frame.Seal(nil, fk, benchReading(id, uint32(j+1), at)); err != nil {
				return Result{}, err
			}
		}
		packets[i] = p.Encode(topic.ForMeter(id, topic.Reading), payloads)
	}
	start, cpu0 := time.Now(), processCPU()
	var wg sync.WaitGroup
	errs := make([]error, len(ids))
	for i := range ids {
		wg.Go(func() { errs[i] = pubs[i].Send(ctx, packets[i]) })
	}
	wg.Wait()
	el, cpu := time.Since(start), processCPU()-cpu0
	if err := errors.Join(errs...); err != nil {
		return Result{}, fmt.Errorf("publishing: %w", err)
	}
	total := per * len(ids)
	if got := in.Count(ingest.Stored); got != uint64(total) {
		return Result{}, fmt.Errorf("stored %d of %d readings", got, total)
	}
	rate := float64(total) / el.Seconds()
	cpuPer := float64(cpu.Microseconds()) / float64(total)
	o.say("telemetry %s: %d readings from %d meters over MQTT stored and acknowledged in %v (%.0f readings/s, %.1f CPU-µs each in this process)",
		drv, total, len(ids), el.Round(time.Millisecond), rate, cpuPer)
	return Result{Name: "telemetry." + drv + ".ingest", Value: rate, Unit: "readings/s", Goal: "≥ 100000",
		Params: map[string]any{"db": drv, "meters": len(ids), "inflight_per_meter": telemetryInflight, "readings": total, "workers": workers, "qos": 1,
			"publisher": "mqttload", "cpu_us_per_reading": cpuPer}}, nil
}
