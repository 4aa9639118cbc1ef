package bench

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"runtime"
	"time"

	"sluice/meter"
	"sluice/meter/sim"
)

// runFleet builds an emulated fleet, measures the heap it holds per meter,
// then simulates whole days of it (15-minute steps, hourly readings, top-ups
// signed by the emulator's own vendor) and reports the wall time per day.
func runFleet(ctx context.Context, o *Options) ([]Result, error) {
	n := o.FleetMeters
	start := time.Date(2026, time.March, 2, 0, 0, 0, 0, time.UTC) // a Monday
	seed := sha256.Sum256([]byte("sluice bench fleet vendor"))
	v := sim.NewLocalVendor(ed25519.NewKeyFromSeed(seed[:]), 1000, n)

	var before, after runtime.MemStats
	// Two collections: the first moves sync.Pool contents to their victim
	// caches, the second frees them, so earlier work does not leave garbage
	// that the fleet's figure would absorb.
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&before)
	f, err := sim.New(sim.Config{Meters: n, FirstID: 1000, Seed: 1, Start: start, Step: 15 * time.Minute, Report: time.Hour,
		Params: meter.DefaultParams(), LeakShare: 0.1, TamperShare: 0.04, InitialCredit: 3000, Keyring: v.Keyring()}, &sim.Counter{}, v)
	if err != nil {
		return nil, err
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	// The local vendor's per-meter sequence memory is part of what the
	// emulator holds, so it is counted (it was built before the snapshot).
	perMeter := float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / float64(n)
	params := map[string]any{"meters": n}
	out := []Result{
		{Name: "fleet.memory", Value: perMeter, Unit: "bytes/meter", Params: params},
		{Name: "fleet.memory.1M", Value: perMeter * 1e6 / (1 << 30), Unit: "GiB", Params: params, Goal: "≤ 2"},
	}
	o.say("fleet of %d meters: %.0f bytes/meter on the heap, %.3f GiB for a million", n, perMeter, perMeter*1e6/(1<<30))

	steps := o.FleetDays * 24 * 4
	t0 := time.Now()
	for i := range steps {
		if i%4 == 0 && ctx.Err() != nil {
			return out, ctx.Err()
		}
		if err := f.Step(); err != nil {
			return out, err
		}
	}
	el := time.Since(t0)
	perDay := el.Seconds() / float64(o.FleetDays)
	s := f.Summary()
	out = append(out,
		Result{Name: "fleet.day", Value: perDay, Unit: "s/day", Params: map[string]any{"meters": n, "step": "15m", "days": o.FleetDays}},
		Result{Name: "fleet.steps", Value: float64(steps) * float64(n) / el.Seconds(), Unit: "meter-steps/s", Params: map[string]any{"meters": n, "cores": 1}},
	)
	o.say("simulated %d day(s) of %d meters in %v (%.2f s per day; %d top-ups)", o.FleetDays, n, el.Round(time.Millisecond), perDay, s.TopUps)
	runtime.KeepAlive(f)
	return out, nil
}
