package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"sluice/store/storetest"
	"sluice/sts"
)

// tiny is the quick mode's smallest configuration: every measurement runs,
// each for a moment.
func tiny(only ...string) Options {
	return Options{Quick: true, Only: only, CPUTime: 20 * time.Millisecond, VendTime: 200 * time.Millisecond,
		Clients: []int{1, 4}, OfferedRate: 100, FleetMeters: 2000, Vendors: 2, MetersPerRun: 8, CampaignMeters: 60, TelemetryReadings: 600, SQLiteOnly: true}
}

// TestQuickShape runs every measurement in its smallest form and checks the
// report's shape: names, units, finite positive values, parameters, and
// the JSON form. It asserts nothing about speed.
func TestQuickShape(t *testing.T) {
	var progress bytes.Buffer
	o := tiny()
	o.Progress = &progress
	rs, err := Run(context.Background(), o)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, progress.String())
	}
	want := []string{
		"sts.encode.ea11.cached", "sts.encode.ea11.uncached", "sts.encode.ea07.cached", "sts.encode.ea07.uncached",
		"sts.encode.ea11.cached.allcores", "meter.sts.accept", "meter.voucher.open",
		"vend.sqlite.c1.rate", "vend.sqlite.c1.p50", "vend.sqlite.c1.p99", "vend.sqlite.c4.rate",
		"vend.sqlite.open100.p99", "vend.sqlite.open100.achieved", "vend.sqlite.c4.onevendor.rate",
		"fleet.memory", "fleet.memory.1M", "fleet.day", "fleet.steps", "campaign.sqlite.keychange", "telemetry.sqlite.ingest",
	}
	got := map[string]Result{}
	for _, r := range rs {
		if _, dup := got[r.Name]; dup {
			t.Errorf("%s reported twice", r.Name)
		}
		got[r.Name] = r
		if r.Unit == "" || r.Params == nil {
			t.Errorf("%s: unit %q params %v", r.Name, r.Unit, r.Params)
		}
		if !(r.Value > 0) || r.Value != r.Value {
			t.Errorf("%s = %v, want a positive number", r.Name, r.Value)
		}
	}
	for _, n := range want {
		if _, ok := got[n]; !ok {
			t.Errorf("no %s in the report", n)
		}
	}
	if p := got["vend.sqlite.c4.rate"].Params; p["db"] != "sqlite" || p["clients"] != 4 {
		t.Errorf("vend params %v", p)
	}

	var js bytes.Buffer
	if err := WriteJSON(&js, rs); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(&js)
	lines := 0
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("line %d: %v: %s", lines, err, sc.Bytes())
		}
		for _, k := range []string{"name", "value", "unit", "params"} {
			if _, ok := m[k]; !ok {
				t.Errorf("line %d lacks %q: %s", lines, k, sc.Bytes())
			}
		}
		lines++
	}
	if lines != len(rs) {
		t.Errorf("%d JSON lines for %d results", lines, len(rs))
	}
	var tab bytes.Buffer
	if err := WriteTable(&tab, rs); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(tab.String(), "\n"); n != len(rs)+1 {
		t.Errorf("table has %d lines for %d results:\n%s", n, len(rs), tab.String())
	}
}

// TestPostgresShape runs the PostgreSQL vending half, including the second
// replica, in its smallest form.
func TestPostgresShape(t *testing.T) {
	u, _ := storetest.NewPostgresSchema(t) // skips (or fails under CI) without a server
	if u == "" {
		return
	}
	o := tiny("vend", "campaign", "telemetry")
	o.SQLiteOnly, o.PostgresOnly, o.PostgresURL = false, true, storetest.PostgresURL()
	rs, err := Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, r := range rs {
		names[r.Name] = true
	}
	for _, n := range []string{"vend.postgres.c4.rate", "vend.postgres.open100.p99", "vend.postgres.c4.replicas2.rate", "campaign.postgres.keychange", "telemetry.postgres.ingest"} {
		if !names[n] {
			t.Errorf("no %s in %v", n, names)
		}
	}
}

// The benchmarks behind each figure, for `go test -bench` and pprof
// (-cpuprofile, -memprofile): the same code the command runs.

func BenchmarkSTSEncode(b *testing.B) {
	tables := mustTables(b)
	for _, c := range stsCases {
		b.Run(strings.TrimPrefix(c.name, "sts.encode."), func(b *testing.B) {
			op, err := c.encoder(tables)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if err := op(1); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "tokens/s")
		})
	}
}

func BenchmarkMeterSide(b *testing.B) {
	for _, m := range []struct {
		name string
		mk   func() (func(int) error, error)
	}{{"sts-accept", decoderOp}, {"voucher-open", voucherOp}} {
		b.Run(m.name, func(b *testing.B) {
			op, err := m.mk()
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if err := op(1); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
		})
	}
}

// BenchmarkVend: purchases over HTTP with durable commits, b.N purchases
// spread over the clients; ns/op is wall time per purchase at that
// concurrency, so purchases/s = 1e9 / ns/op.
func BenchmarkVend(b *testing.B) {
	for _, drv := range []string{"sqlite", "postgres"} {
		b.Run(drv, func(b *testing.B) {
			o := Options{Vendors: 16, MetersPerRun: 128, PostgresURL: storetest.PostgresURL()}
			o.defaults()
			r, err := startRig(context.Background(), &o, drv)
			if err != nil {
				b.Skip(err)
			}
			defer r.close()
			if _, _, err := r.closedLoop(context.Background(), 4, 300*time.Millisecond); err != nil {
				b.Fatal(err)
			}
			for _, c := range []int{1, 16, 64} {
				b.Run(fmt.Sprintf("clients=%d", c), func(b *testing.B) {
					b.ReportAllocs()
					benchVend(b, r, c, len(r.terminals))
				})
			}
			// Every client on one vending point: its float row is the
			// hot row.
			b.Run("onevendor/clients=16", func(b *testing.B) {
				b.ReportAllocs()
				benchVend(b, r, 16, 1)
			})
		})
	}
}

func benchVend(b *testing.B, r *rig, clients, terminals int) {
	ctx := context.Background()
	work := make(chan int, clients)
	errs := make(chan error, clients)
	cpu0 := processCPU()
	b.ResetTimer()
	for c := range clients {
		go func() {
			var err error
			for i := range work {
				if err == nil {
					_, err = r.purchase(ctx, 0, c%terminals, i%len(r.meters))
				}
			}
			errs <- err
		}()
	}
	for i := 0; i < b.N; i++ {
		work <- i
	}
	close(work)
	for range clients {
		if err := <-errs; err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "purchases/s")
	// CPU of this process (clients and head-end, not the PostgreSQL
	// server) per purchase: steadier than wall time on a shared machine.
	b.ReportMetric(float64((processCPU()-cpu0).Microseconds())/float64(b.N), "cpu-µs/op")
}

func BenchmarkFleetDay(b *testing.B) {
	o := Options{FleetMeters: 100_000, FleetDays: 1}
	o.defaults()
	for b.Loop() {
		rs, err := runFleet(context.Background(), &o)
		if err != nil {
			b.Fatal(err)
		}
		for _, r := range rs {
			if r.Name == "fleet.memory" {
				b.ReportMetric(r.Value, "bytes/meter")
			}
		}
	}
}

func mustTables(b *testing.B) *sts.STATables {
	t, err := sts.ParseSTATables(sampleTables)
	if err != nil {
		b.Fatal(err)
	}
	return t
}

// BenchmarkCampaign: an STS key-change campaign over 1000 meters per
// iteration (set-up excluded from the meters/s figure, not from ns/op).
func BenchmarkCampaign(b *testing.B) {
	for _, drv := range []string{"sqlite", "postgres"} {
		b.Run(drv, func(b *testing.B) {
			o := Options{CampaignMeters: 1000, PostgresURL: storetest.PostgresURL()}
			o.defaults()
			for b.Loop() {
				r, err := campaignOn(context.Background(), &o, drv)
				if errors.Is(err, errNoPostgres) {
					b.Skip(err)
				}
				if err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(r.Value, "meters/s")
			}
		})
	}
}

// Repeated rounds report each figure once: the median of its rounds, the
// parameters of the round it came from, and every round's value.
func TestMedians(t *testing.T) {
	round := func(rate, p99 float64, clients int) []Result {
		return []Result{
			{Name: "vend.sqlite.c4.rate", Value: rate, Unit: "purchases/s", Params: map[string]any{"clients": clients}},
			{Name: "vend.sqlite.c4.p99", Value: p99, Unit: "ms"},
		}
	}
	rounds := [][]Result{round(300, 9, 1), round(100, 30, 2), round(200, 12, 3)}
	// A figure only the last round has (a database that came back).
	rounds[2] = append(rounds[2], Result{Name: "vend.postgres.c4.rate", Value: 50, Unit: "purchases/s"})
	got := medians(rounds)
	if len(got) != 3 || got[0].Name != "vend.sqlite.c4.rate" || got[1].Name != "vend.sqlite.c4.p99" || got[2].Name != "vend.postgres.c4.rate" {
		t.Fatalf("figures %v, want the first round's order and each figure once", got)
	}
	if got[0].Value != 200 || got[0].Params["clients"] != 3 {
		t.Errorf("rate %v with params %v, want the median 200 with its own round's parameters", got[0].Value, got[0].Params)
	}
	if r := got[0].Params["rounds"].([]float64); !slices.Equal(r, []float64{300, 100, 200}) {
		t.Errorf("rounds %v, want every round's value in round order", r)
	}
	if got[1].Value != 12 || got[2].Value != 50 {
		t.Errorf("p99 %v, postgres %v: want 12 and 50", got[1].Value, got[2].Value)
	}
	if _, leaked := rounds[2][0].Params["rounds"]; leaked {
		t.Error("medians wrote into a round's own parameters")
	}
	even := medians([][]Result{round(100, 10, 1), round(300, 20, 2)})
	if even[0].Value != 200 || even[1].Value != 15 {
		t.Errorf("two rounds gave %v and %v, want the means of the middle two, 200 and 15", even[0].Value, even[1].Value)
	}
}

// Run with Repeat runs the selection in rounds and merges them.
func TestRepeat(t *testing.T) {
	o := tiny("meter")
	o.Repeat = 2
	rs, err := Run(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) == 0 {
		t.Fatal("no figures")
	}
	for _, r := range rs {
		if rounds, _ := r.Params["rounds"].([]float64); len(rounds) != 2 {
			t.Errorf("%s: rounds %v, want two values", r.Name, r.Params["rounds"])
		}
	}
}
