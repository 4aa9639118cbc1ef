// Package bench is `sluice bench`: the performance measurements of the
// project's hot paths, run on the machine at hand and reported as a table or
// as JSON, one object per figure.
//
// Every figure comes from the real code path, not a model of it:
//
//   - STS encode/decode: sts.Coder on one goroutine (per core) and on every
//     core, with the decoder key cached (one Coder per meter, as vend keeps)
//     and not (DKGA04/DKGA02 derivation plus key schedule per token).
//   - Meter side: sts.Decoder.Accept on the 20-digit form (parse, decrypt,
//     CRC, TID memory) and voucher.Open (strict parse, Ed25519 verify).
//   - Vending: a head-end started by headend.Start (the process `sluice
//     serve` runs) on SQLite in a temporary directory or on PostgreSQL in a
//     fresh schema, registry built through the HTTP API, then POST
//     /api/v1/purchases from terminals holding API keys: closed loop with 1,
//     16 and 64 clients, and open loop at a fixed offered rate with latency
//     measured from the intended send time (no coordinated omission).
//   - Fleet emulator: heap per meter after building a large fleet
//     (runtime.MemStats) and the wall time to simulate one day of it.
//
// Figures are rates on a shared, noisy machine: compare figures of the same
// run, and read docs/performance.md for what bounds each one. Nothing here
// asserts a speed; the tests check only the shape of the report.
package bench

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"runtime"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// DefaultPostgresURL is the server the vending runs use unless told
// otherwise: the one these machines run (trust authentication, database
// test). Each run creates a schema of its own and drops it afterwards.
const DefaultPostgresURL = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"

// Result is one measured figure.
type Result struct {
	Name   string         `json:"name"`
	Value  float64        `json:"value"`
	Unit   string         `json:"unit"`
	Params map[string]any `json:"params,omitempty"`
	// Goal is the project's target for this figure, when it has one,
	// written as a comparison ("≥ 1000000", "≤ 20").
	Goal string `json:"goal,omitempty"`
}

// Options select and size the measurements.
type Options struct {
	// Quick shortens every measurement for CI smoke runs (under two
	// minutes in all).
	Quick bool
	// Progress receives one line per step; nil discards them.
	Progress io.Writer
	// PostgresURL is the server for the PostgreSQL vending runs; each run
	// uses a fresh schema, dropped afterwards. Empty skips PostgreSQL.
	PostgresURL string
	// Only, when not empty, runs the measurements whose names start with
	// one of these prefixes (sts, meter, vend, fleet, campaign, telemetry).
	Only []string
	// Repeat, when above 1, runs the whole selection that many times in
	// rounds and reports each figure's median, with every round's value in
	// its parameters. On a shared machine one run's figures move by tens of
	// percent; rounds spread a measurement over time, so that a busy
	// minute moves one value of each figure, not all of one figure's.
	Repeat int

	// Overrides for tests; zero means the mode's default.
	CPUTime           time.Duration // per CPU-bound figure
	VendTime          time.Duration // per vending run
	Clients           []int         // closed-loop concurrencies
	OfferedRate       float64       // open-loop purchases per second
	FleetMeters       int           // emulated meters
	FleetDays         int           // simulated days
	Vendors           int           // vending points (terminals) for the vend runs
	CampaignMeters    int           // meters moved by the key-change campaign
	TelemetryReadings int           // readings published over MQTT per database
	MetersPerRun      int           // STS meters registered for the vend runs
	PostgresOnly      bool          // skip SQLite (tests of the PostgreSQL half)
	SQLiteOnly        bool          // skip PostgreSQL
}

func (o *Options) defaults() {
	pick := func(d *time.Duration, quick, full time.Duration) {
		if *d == 0 {
			*d = full
			if o.Quick {
				*d = quick
			}
		}
	}
	pick(&o.CPUTime, 300*time.Millisecond, 2*time.Second)
	pick(&o.VendTime, 2*time.Second, 10*time.Second)
	if o.Clients == nil {
		o.Clients = []int{1, 16, 64}
	}
	if o.OfferedRate == 0 {
		o.OfferedRate = 1000
	}
	if o.FleetMeters == 0 {
		o.FleetMeters = 1_000_000
		if o.Quick {
			o.FleetMeters = 100_000
		}
	}
	if o.FleetDays == 0 {
		o.FleetDays = 1
	}
	if o.Vendors == 0 {
		o.Vendors = 16
	}
	if o.CampaignMeters == 0 {
		o.CampaignMeters = 20_000
		if o.Quick {
			o.CampaignMeters = 2_000
		}
	}
	if o.TelemetryReadings == 0 {
		o.TelemetryReadings = 1_000_000
		if o.Quick {
			o.TelemetryReadings = 100_000
		}
	}
	if o.MetersPerRun == 0 {
		o.MetersPerRun = 128
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
}

func (o *Options) wants(name string) bool {
	if len(o.Only) == 0 {
		return true
	}
	return slices.ContainsFunc(o.Only, func(p string) bool { return strings.HasPrefix(name, p) })
}

func (o *Options) say(format string, args ...any) {
	fmt.Fprintf(o.Progress, "bench: "+format+"\n", args...)
}

// drivers lists the databases the store-bound measurements run on.
func (o *Options) drivers() []string {
	var ds []string
	if !o.PostgresOnly {
		ds = append(ds, "sqlite")
	}
	if !o.SQLiteOnly && o.PostgresURL != "" {
		ds = append(ds, "postgres")
	}
	return ds
}

// onEachDriver runs a measurement on each selected database in turn; a
// PostgreSQL that cannot be reached is reported and skipped, any other
// failure ends the run with the figures measured so far.
func (o *Options) onEachDriver(ctx context.Context, on func(context.Context, *Options, string) ([]Result, error)) ([]Result, error) {
	var out []Result
	for _, drv := range o.drivers() {
		rs, err := on(ctx, o, drv)
		out = append(out, rs...)
		if errors.Is(err, errNoPostgres) {
			o.say("postgres: skipped: %v", err)
			continue
		}
		if err != nil {
			return out, fmt.Errorf("%s: %w", drv, err)
		}
	}
	return out, nil
}

// one adapts a measurement that gives one figure to onEachDriver.
func one(on func(context.Context, *Options, string) (Result, error)) func(context.Context, *Options, string) ([]Result, error) {
	return func(ctx context.Context, o *Options, drv string) ([]Result, error) {
		r, err := on(ctx, o, drv)
		if err != nil {
			return nil, err
		}
		return []Result{r}, nil
	}
}

// Run performs the selected measurements in order and returns every figure
// (the median of Repeat rounds). A measurement that cannot run (no
// PostgreSQL) is reported on Progress and skipped; an error in one that
// should run stops the whole run.
func Run(ctx context.Context, opt Options) ([]Result, error) {
	opt.defaults()
	opt.say("%s, %d CPUs (GOMAXPROCS %d), %s/%s, quick=%v", runtime.Version(), runtime.NumCPU(), runtime.GOMAXPROCS(0), runtime.GOOS, runtime.GOARCH, opt.Quick)
	rounds := max(opt.Repeat, 1)
	var all [][]Result
	for round := 1; round <= rounds; round++ {
		if rounds > 1 {
			opt.say("round %d of %d", round, rounds)
		}
		rs, err := runOnce(ctx, &opt)
		if err != nil {
			return rs, err
		}
		all = append(all, rs)
	}
	if rounds == 1 {
		return all[0], nil
	}
	return medians(all), nil
}

func runOnce(ctx context.Context, opt *Options) ([]Result, error) {
	var out []Result
	groups := []struct {
		name string
		run  func(context.Context, *Options) ([]Result, error)
	}{
		{"sts", runSTS},
		{"meter", runMeterSide},
		{"vend", runVend},
		{"fleet", runFleet},
		{"campaign", runCampaign},
		{"telemetry", runTelemetry},
	}
	for _, g := range groups {
		if !opt.wants(g.name) {
			continue
		}
		if err := ctx.Err(); err != nil {
			return out, err
		}
		rs, err := g.run(ctx, opt)
		out = append(out, rs...)
		if err != nil {
			return out, fmt.Errorf("%s: %w", g.name, err)
		}
	}
	return out, nil
}

// medians merges rounds of results into one result per figure, in the
// order of the first round: the median value (the mean of the middle two
// for an even count), the parameters of the round of the (lower) middle
// value, and every round's value, in round order, under "rounds". A figure missing from some rounds (a
// PostgreSQL that went away) is the median of the rounds that have it.
func medians(rounds [][]Result) []Result {
	byName := map[string][]Result{}
	var order []string
	for _, rs := range rounds {
		for _, r := range rs {
			if _, seen := byName[r.Name]; !seen {
				order = append(order, r.Name)
			}
			byName[r.Name] = append(byName[r.Name], r)
		}
	}
	out := make([]Result, 0, len(order))
	for _, name := range order {
		rs := byName[name]
		values := make([]float64, len(rs))
		for i, r := range rs {
			values[i] = r.Value
		}
		sorted := slices.Clone(rs)
		slices.SortStableFunc(sorted, func(a, b Result) int { return cmp.Compare(a.Value, b.Value) })
		m := sorted[(len(sorted)-1)/2]
		if len(sorted)%2 == 0 {
			m.Value = (m.Value + sorted[len(sorted)/2].Value) / 2
		}
		params := maps.Clone(m.Params)
		if params == nil {
			params = map[string]any{}
		}
		params["rounds"] = values
		m.Params = params
		out = append(out, m)
	}
	return out
}

// WriteTable prints the results as an aligned table.
func WriteTable(w io.Writer, rs []Result) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "MEASUREMENT\tVALUE\tUNIT\tGOAL\tPARAMETERS")
	for _, r := range rs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.Name, formatValue(r.Value), r.Unit, r.Goal, formatParams(r.Params))
	}
	return tw.Flush()
}

// WriteJSON prints one JSON object per line, per result.
func WriteJSON(w io.Writer, rs []Result) error {
	enc := json.NewEncoder(w)
	for _, r := range rs {
		if err := enc.Encode(r); err != nil {
			return err
		}
	}
	return nil
}

func formatValue(v float64) string {
	switch {
	case v >= 1000:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.3g", v)
	}
}

func formatParams(p map[string]any) string {
	var b strings.Builder
	for i, k := range slices.Sorted(maps.Keys(p)) {
		if i > 0 {
			b.WriteByte(' ')
		}
		if vs, ok := p[k].([]float64); ok {
			// A figure's rounds read like the figure itself.
			fs := make([]string, len(vs))
			for j, v := range vs {
				fs[j] = formatValue(v)
			}
			fmt.Fprintf(&b, "%s=%s", k, strings.Join(fs, ","))
			continue
		}
		fmt.Fprintf(&b, "%s=%v", k, p[k])
	}
	return b.String()
}

// rate runs op in growing batches until at least d has passed and returns
// operations per second. op(n) performs n operations.
func rate(d time.Duration, op func(n int) error) (float64, error) {
	n := 1
	var total int
	start := time.Now()
	for {
		if err := op(n); err != nil {
			return 0, err
		}
		total += n
		el := time.Since(start)
		if el >= d {
			return float64(total) / el.Seconds(), nil
		}
		if el < d/10 {
			n *= 2
		}
	}
}

// parallelRate runs op on workers goroutines at once, each with its own
// state from mk, and returns the combined operations per second.
func parallelRate(d time.Duration, workers int, mk func() (func(n int) error, error)) (float64, error) {
	ops := make([]func(int) error, workers)
	for i := range ops {
		var err error
		if ops[i], err = mk(); err != nil {
			return 0, err
		}
	}
	type res struct {
		r   float64
		err error
	}
	ch := make(chan res, workers)
	for _, op := range ops {
		go func() {
			r, err := rate(d, op)
			ch <- res{r, err}
		}()
	}
	var sum float64
	var first error
	for range ops {
		r := <-ch
		sum += r.r
		if r.err != nil && first == nil {
			first = r.err
		}
	}
	return sum, first
}
