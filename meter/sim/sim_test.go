package sim

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"runtime"
	"testing"
	"time"

	"sluice/meter"
)

var start = time.Date(2026, time.March, 2, 0, 0, 0, 0, time.UTC) // a Monday

func testFleet(t testing.TB, n int, seed uint64, up Uplink) (*Fleet, *LocalVendor) {
	t.Helper()
	k := sha256.Sum256([]byte("sim vendor"))
	v := NewLocalVendor(ed25519.NewKeyFromSeed(k[:]), 1000, n)
	f, err := New(Config{Meters: n, FirstID: 1000, Seed: seed, Start: start, Step: 15 * time.Minute, Report: time.Hour,
		Params: meter.DefaultParams(), LeakShare: 0.1, TamperShare: 0.04, InitialCredit: 3000, Keyring: v.Keyring()}, up, v)
	if err != nil {
		t.Fatal(err)
	}
	return f, v
}

// byHourUplink is an uplink that sums the interval volumes by hour of day and
// keeps readings per meter.
type byHourUplink struct {
	Counter
	byHour [24]uint64
	leaky  map[uint64]bool
	night  map[uint64]uint64 // litres between 01:00 and 04:00 per meter
}

func (h *byHourUplink) Reading(r *Reading) error {
	h.Counter.Reading(r)
	hr := r.Time.Add(-time.Minute).Hour() // the hour the interval ended in
	h.byHour[hr] += uint64(r.Interval)
	if hr >= 1 && hr < 4 {
		h.night[r.MeterID] += uint64(r.Interval)
	}
	return nil
}

func TestFleetDailyPatternAndLeaks(t *testing.T) {
	up := &byHourUplink{night: map[uint64]uint64{}}
	f, _ := testFleet(t, 2000, 1, up)
	for i := 0; i < 4*24*7; i++ { // a week
		if err := f.Step(); err != nil {
			t.Fatal(err)
		}
	}
	if up.Readings != 2000*24*7 {
		t.Errorf("%d readings, want one per meter per hour: %d", up.Readings, 2000*24*7)
	}
	if up.byHour[7] < 10*up.byHour[2] || up.byHour[19] < 10*up.byHour[2] {
		t.Errorf("no daily pattern: 02h %d L, 07h %d L, 19h %d L", up.byHour[2], up.byHour[7], up.byHour[19])
	}
	// Leaky households show a floor of night flow the others lack.
	var leakyNight, honestNight, leaky, honest uint64
	for i := range f.meters {
		id := f.ID(i)
		switch f.meters[i].behaviour {
		case Leaky:
			leaky++
			leakyNight += up.night[id]
		case Honest:
			honest++
			honestNight += up.night[id]
		}
	}
	if leaky == 0 || leakyNight/leaky < 3*honestNight/honest {
		t.Errorf("night flow: leaky %d L/meter, honest %d L/meter", leakyNight/max(leaky, 1), honestNight/honest)
	}
	s := f.Summary()
	if s.TopUps == 0 || s.TopUpsFailed != 0 || s.Tampered == 0 || up.Events[meter.EvTamper] == 0 || up.Events[meter.EvLowCredit] == 0 {
		t.Errorf("summary %+v, events %v", s, up.Events)
	}
	if s.ValveClosed > s.Meters/5 {
		t.Errorf("%d of %d valves closed: customers are not buying", s.ValveClosed, s.Meters)
	}
	if up.Receipts[meter.Loaded] != s.TopUps {
		t.Errorf("%d receipts for %d top-ups", up.Receipts[meter.Loaded], s.TopUps)
	}
}

func TestFleetDeterministic(t *testing.T) {
	run := func(seed uint64) Summary {
		f, _ := testFleet(t, 500, seed, &Counter{})
		for i := 0; i < 200; i++ {
			if err := f.Step(); err != nil {
				t.Fatal(err)
			}
		}
		return f.Summary()
	}
	if a, b := run(7), run(7); a != b {
		t.Errorf("same seed, different fleets:\n%+v\n%+v", a, b)
	}
	if a, b := run(7), run(8); a == b {
		t.Error("different seeds, same fleet")
	}
}

func TestDeliver(t *testing.T) {
	up := &Counter{}
	f, v := testFleet(t, 10, 1, up)
	b, err := v.Vend(1003, 5000, f.Now())
	if err != nil {
		t.Fatal(err)
	}
	before, _ := f.Meter(1003)
	rc, err := f.Deliver(1003, b)
	if err != nil || rc.Status != meter.Loaded || rc.Amount != 5000 {
		t.Fatalf("Deliver = %+v, %v", rc, err)
	}
	after, _ := f.Meter(1003)
	if after.Credit != before.Credit+5000 {
		t.Fatalf("credit %d -> %d", before.Credit, after.Credit)
	}
	rc, err = f.Deliver(1003, b)
	if !errors.Is(err, meter.ErrUsed) || rc.Status != meter.Duplicate {
		t.Fatalf("replayed voucher: %+v, %v", rc, err)
	}
	if _, err := f.Deliver(1004, b); !errors.Is(err, meter.ErrSignature) {
		t.Fatalf("voucher for another meter: %v", err)
	}
	forged := append([]byte(nil), b...)
	forged[len(forged)-10] ^= 1
	if _, err := f.Deliver(1003, forged); !errors.Is(err, meter.ErrSignature) {
		t.Fatalf("forged voucher: %v", err)
	}
	if _, err := f.Deliver(99, b); err == nil {
		t.Fatal("delivered to a meter outside the fleet")
	}
	if c, _ := f.Meter(1003); c.Credit != after.Credit {
		t.Fatalf("rejected vouchers changed credit %d -> %d", after.Credit, c.Credit)
	}
}

// BenchmarkMemoryPerMeter measures the heap a fleet of one million meters
// takes, per meter (goal: a million meters within 2 GiB).
func BenchmarkMemoryPerMeter(b *testing.B) {
	const n = 1_000_000
	var perMeter float64
	for i := 0; i < b.N; i++ {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		f, err := New(Config{Meters: n, Seed: 1, Start: start, Step: 15 * time.Minute, Report: time.Hour,
			Params: meter.DefaultParams(), LeakShare: 0.1, TamperShare: 0.04, InitialCredit: 3000}, &Counter{}, nil)
		if err != nil {
			b.Fatal(err)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		perMeter = float64(after.HeapAlloc-before.HeapAlloc) / n
		runtime.KeepAlive(f)
	}
	b.ReportMetric(perMeter, "bytes/meter")
	b.ReportMetric(perMeter*n/(1<<30), "GiB/1M-meters")
}

// BenchmarkStep: meter-steps simulated per second (a step is 15 minutes
// of one household: demand, charging, valve, reading when due).
func BenchmarkStep(b *testing.B) {
	f, _ := testFleet(b, 100_000, 1, &Counter{})
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := f.Step(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)*float64(f.Len())/b.Elapsed().Seconds(), "meter-steps/s")
}

func TestRunStopsAndReports(t *testing.T) {
	f, _ := testFleet(t, 100, 1, &Counter{})
	var days []Summary
	if err := f.Run(context.Background(), start.Add(72*time.Hour), 24*time.Hour, func(s Summary) { days = append(days, s) }); err != nil {
		t.Fatal(err)
	}
	if len(days) != 3 || !days[2].Time.Equal(start.Add(72*time.Hour)) {
		t.Fatalf("%d daily summaries, last at %v", len(days), days[len(days)-1].Time)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := f.Run(ctx, start.Add(96*time.Hour), time.Hour, nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled run: %v", err)
	}
}

// TestFleetWithoutVending: when nobody can buy credit, meters run out,
// half the customers take emergency credit, and on a Monday morning (no
// friendly period) every valve is closed and stays closed: friendly
// periods keep a valve open but never reopen one.
func TestFleetWithoutVending(t *testing.T) {
	up := &Counter{}
	f, err := New(Config{Meters: 400, FirstID: 1, Seed: 3, Start: start, Step: time.Hour, Report: time.Hour,
		Params: meter.DefaultParams(), InitialCredit: 1500}, up, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Run(context.Background(), start.Add(21*24*time.Hour+10*time.Hour), 0, nil); err != nil {
		t.Fatal(err)
	}
	s := f.Summary()
	if s.ValveClosed != s.Meters || s.TopUps != 0 {
		t.Fatalf("summary %+v", s)
	}
	if n := up.Events[meter.EvEmergency]; n < 100 || n > 300 {
		t.Errorf("%d of 400 customers took emergency credit, want about half", n)
	}
	before := s.ForwardL
	if err := f.Run(context.Background(), start.Add(22*24*time.Hour+10*time.Hour), 0, nil); err != nil {
		t.Fatal(err)
	}
	if after := f.Summary().ForwardL; after != before {
		t.Errorf("%d L flowed through closed valves", after-before)
	}
}

func TestNewRefusesBadConfig(t *testing.T) {
	good := Config{Meters: 1, Start: start, Step: time.Minute, Report: time.Hour, Params: meter.DefaultParams()}
	bad := map[string]func(c *Config){
		"no meters":       func(c *Config) { c.Meters = 0 },
		"step too long":   func(c *Config) { c.Step = 2 * time.Hour },
		"report < step":   func(c *Config) { c.Report = time.Second },
		"currency meters": func(c *Config) { c.Params.Unit = meter.Minor },
		"shares above 1":  func(c *Config) { c.LeakShare, c.TamperShare = 0.8, 0.3 },
		"negative share":  func(c *Config) { c.LeakShare = -0.1 },
	}
	if _, err := New(good, &Counter{}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := New(good, nil, nil); err == nil {
		t.Error("no uplink accepted")
	}
	for name, f := range bad {
		c := good
		f(&c)
		if _, err := New(c, &Counter{}, nil); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
