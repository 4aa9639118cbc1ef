package bench

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"sluice/keys"
	"sluice/kms"
	"sluice/store"
	"sluice/telemetry/broker"
	"sluice/telemetry/frame"
	"sluice/telemetry/ingest"
	"sluice/telemetry/mqttlink"
	"sluice/telemetry/topic"
)

// Telemetry publishers: meters each with its own MQTT connection and a few
// QoS 1 publications in flight (well inside the 64-frame replay window).
const (
	telemetryMeters   = 128
	telemetryInflight = 16
)

// runTelemetry measures readings ingested per second: meters publish sealed
// reading frames over MQTT to the embedded broker; the ingest verifies each
// MAC under the meter's telemetry key (derived in the key manager, cached),
// checks the replay window, writes batches in one transaction (COPY on
// PostgreSQL) and acknowledges after the commit.
func runTelemetry(ctx context.Context, o *Options) ([]Result, error) {
	var out []Result
	for _, drv := range o.drivers() {
		r, err := telemetryOn(ctx, o, drv)
		if errors.Is(err, errNoPostgres) {
			o.say("postgres: skipped: %v", err)
			continue
		}
		if err != nil {
			return out, fmt.Errorf("%s: %w", drv, err)
		}
		out = append(out, r)
	}
	return out, nil
}

func benchReading(id uint64, counter uint32, at time.Time) *frame.Frame {
	return &frame.Frame{Kind: frame.KindReading, Meter: id, Counter: counter, Time: at,
		Reading: frame.Reading{Forward: uint64(counter) * 10, Credit: 1000, Loaded: 5000, Unit: frame.UnitLitres,
			Interval: 15 * time.Minute, Intervals: []uint32{1, 2, 3, 4}}}
}

func telemetryOn(ctx context.Context, o *Options, drv string) (Result, error) {
	small := *o
	small.Vendors, small.MetersPerRun = 1, 1
	r, err := startRig(ctx, &small, drv)
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
	conns := make([]*mqttlink.Conn, len(ids))
	fkeys := make([]*frame.Key, len(ids))
	for i, id := range ids {
		k, _, err := keys.MeterKey(ctx, km, kms.Ref(keys.MeterRoot), id, keys.Telemetry, 1)
		if err != nil {
			return Result{}, err
		}
		if fkeys[i], err = frame.NewKey(k); err != nil {
			return Result{}, err
		}
		pw, err := ingest.MQTTPassword(k)
		if err != nil {
			return Result{}, err
		}
		c, err := mqttlink.Dial(ctx, mqttlink.DialConfig{URL: "mqtt://" + e.Addr(), Username: strconv.FormatUint(id, 10), Password: pw})
		if err != nil {
			return Result{}, err
		}
		defer c.Close()
		conns[i] = c
	}
	// Seal every frame before the clock starts: this measures the head-end,
	// not the meters.
	per := o.TelemetryReadings/len(ids) + 1
	payloads := make([][][]byte, len(ids))
	for i, id := range ids {
		payloads[i] = make([][]byte, per)
		for j := range per {
			if payloads[i][j], err = frame.Seal(nil, fkeys[i], benchReading(id, uint32(j+1), at)); err != nil {
				return Result{}, err
			}
		}
	}
	start := time.Now()
	var wg sync.WaitGroup
	var failed atomic.Int64
	for i, id := range ids {
		next := make(chan []byte)
		go func() {
			defer close(next)
			for _, p := range payloads[i] {
				select {
				case next <- p:
				case <-ctx.Done():
					return
				}
			}
		}()
		t := topic.ForMeter(id, topic.Reading)
		for range telemetryInflight {
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
	el := time.Since(start)
	if n := failed.Load(); n > 0 {
		return Result{}, fmt.Errorf("%d publications failed", n)
	}
	total := per * len(ids)
	if got := in.Count(ingest.Stored); got != uint64(total) {
		return Result{}, fmt.Errorf("stored %d of %d readings", got, total)
	}
	rate := float64(total) / el.Seconds()
	o.say("telemetry %s: %d readings from %d meters over MQTT stored and acknowledged in %v (%.0f readings/s)", drv, total, len(ids), el.Round(time.Millisecond), rate)
	return Result{Name: "telemetry." + drv + ".ingest", Value: rate, Unit: "readings/s", Goal: "≥ 100000",
		Params: map[string]any{"db": drv, "meters": len(ids), "inflight_per_meter": telemetryInflight, "readings": total, "workers": workers, "qos": 1}}, nil
}
