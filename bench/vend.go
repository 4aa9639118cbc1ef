package bench

import (
	"context"
	"crypto/rand"
	"database/sql"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx", for the schema set-up

	"sluice/auth"
	"sluice/client"
	"sluice/config"
	"sluice/headend"
	"sluice/keys"
	"sluice/kms/filekms"
	"sluice/server"
	"sluice/sts"
	"sluice/vend"
)

//go:embed testdata/domestic.json
var benchTariff []byte

// benchVendingKey is the published demo value (sluice demo uses it too),
// never a utility's key.
const benchVendingKey = "123457 1 dkga04 abababababababab949494949494949401234567\n"

// purchaseCents is what each terminal sells: after the month's fixed charge
// it buys about two kilolitres, one STS credit token.
const purchaseCents = 20_000

// rig is a running head-end with a registry built through its API: vending
// points, each with a cashier and a terminal API key, and STS meters.
type rig struct {
	driver    string
	dataDir   string
	cfg       config.Config
	heads     []*headend.Headend
	pool      *http.Client // shared by every terminal of every head-end
	terminals []string     // API keys, one per vending point
	// tills are the terminals' clients: tills[h][t] is terminal t's key
	// on head-end h.
	tills    [][]*client.Client
	meters   []string
	pgParams map[string]any
	cleanup  []func()
	seq      atomic.Int64
}

func (r *rig) close() {
	for _, h := range r.heads {
		h.Shutdown(context.Background())
	}
	for _, f := range slices.Backward(r.cleanup) {
		f()
	}
}

// newPostgresSchema creates an empty schema and returns a URL selecting it
// and a function dropping it.
func newPostgresSchema(ctx context.Context, base string) (string, func(), error) {
	admin, err := sql.Open("pgx", base)
	if err != nil {
		return "", nil, err
	}
	defer admin.Close()
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := admin.PingContext(pctx); err != nil {
		return "", nil, fmt.Errorf("%w: %v", errNoPostgres, err)
	}
	var b [6]byte
	rand.Read(b[:])
	schema := "sluice_bench_" + hex.EncodeToString(b[:])
	if _, err := admin.ExecContext(pctx, "CREATE SCHEMA "+schema); err != nil {
		return "", nil, fmt.Errorf("create schema: %w", err)
	}
	drop := func() {
		if a, err := sql.Open("pgx", base); err == nil {
			a.Exec("DROP SCHEMA " + schema + " CASCADE")
			a.Close()
		}
	}
	pu, err := url.Parse(base)
	if err != nil {
		drop()
		return "", nil, err
	}
	q := pu.Query()
	q.Set("search_path", schema)
	pu.RawQuery = q.Encode()
	return pu.String(), drop, nil
}

var errNoPostgres = errors.New("PostgreSQL not reachable")

// processCPU is the CPU time this process has used.
func processCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// groupStats reads the store's group-commit counters, when it has them.
func groupStats(h *headend.Headend) (txs, commits int64) {
	if g, ok := any(h.Store()).(interface{ GroupStats() (int64, int64) }); ok {
		return g.GroupStats()
	}
	return 0, 0
}

// startBareRig starts a head-end with the least registry the vending runs
// need (one vending point, one meter), for measurements that bring their
// own meters.
func startBareRig(ctx context.Context, o *Options, drv string) (*rig, error) {
	bare := *o
	bare.Vendors, bare.MetersPerRun = 1, 1
	return startRig(ctx, &bare, drv)
}

// startRig starts a head-end on driver and registers vendors and meters.
func startRig(ctx context.Context, o *Options, driver string) (_ *rig, err error) {
	r := &rig{driver: driver}
	defer func() {
		if err != nil {
			r.close()
		}
	}()
	if r.dataDir, err = os.MkdirTemp("", "sluice-bench-"); err != nil {
		return nil, err
	}
	r.cleanup = append(r.cleanup, func() { os.RemoveAll(r.dataDir) })
	ov := []config.Override{
		{Key: "data_dir", Value: r.dataDir, Source: "bench"},
		{Key: "listen", Value: "127.0.0.1:0", Source: "bench"},
		{Key: "mqtt.mode", Value: "off", Source: "bench"},
	}
	if driver == "postgres" {
		u, drop, err := newPostgresSchema(ctx, o.PostgresURL)
		if err != nil {
			return nil, err
		}
		r.cleanup = append(r.cleanup, drop)
		ov = append(ov, config.Override{Key: "database.driver", Value: "postgres", Source: "bench"},
			config.Override{Key: "database.url", Value: u, Source: "bench"})
	}
	if r.cfg, err = config.Load("", nil, ov); err != nil {
		return nil, err
	}
	tr := &http.Transport{MaxIdleConns: 512, MaxIdleConnsPerHost: 512, IdleConnTimeout: time.Minute}
	r.pool = &http.Client{Transport: tr, Timeout: 60 * time.Second}
	r.cleanup = append(r.cleanup, tr.CloseIdleConnections)
	he, err := r.startHead(ctx)
	if err != nil {
		return nil, err
	}
	if driver == "postgres" {
		r.pgParams = map[string]any{"pool": r.cfg.Database.MaxConns}
		for _, s := range []string{"synchronous_commit", "fsync", "max_connections"} {
			var v string
			if err := he.Store().SQL().QueryRowContext(ctx, "SHOW "+s).Scan(&v); err == nil {
				r.pgParams[s] = v
			}
		}
		if r.pgParams["synchronous_commit"] == "off" || r.pgParams["fsync"] == "off" {
			return nil, fmt.Errorf("PostgreSQL runs without durable commits (%v): refusing to measure", r.pgParams)
		}
	}
	return r, r.register(ctx, o, he)
}

func (r *rig) startHead(ctx context.Context) (*headend.Headend, error) {
	he, err := headend.Start(ctx, r.cfg, slog.New(slog.DiscardHandler), headend.Options{
		Version:        "bench",
		PasswordParams: &auth.Params{Memory: 8 * 1024, Time: 1, Threads: 1},
		KMSOptions:     filekms.Options{Time: 1, MemoryKiB: 8 * 1024, Threads: 1},
	})
	if err != nil {
		return nil, err
	}
	r.heads = append(r.heads, he)
	r.tills = append(r.tills, nil)
	r.connectTills(len(r.heads) - 1)
	return he, nil
}

// connectTills makes head-end h's terminal clients, one per API key.
func (r *rig) connectTills(h int) {
	r.tills[h] = r.tills[h][:0]
	for _, k := range r.terminals {
		r.tills[h] = append(r.tills[h], client.New(r.heads[h].URL(), client.WithHTTPClient(r.pool), client.WithAPIKey(k)))
	}
}

// register builds the registry through the API, as an operator would.
func (r *rig) register(ctx context.Context, o *Options, he *headend.Headend) error {
	admin := client.New(he.URL())
	if err := admin.FirstLogin(ctx, auth.BootstrapUsername, he.BootstrapPassword, "bench administrator password"); err != nil {
		return err
	}
	vks, err := keys.ParseVendingKeys([]byte(benchVendingKey))
	if err != nil {
		return err
	}
	if _, err := keys.ImportVendingKeys(ctx, he.KMS(), vks); err != nil {
		return err
	}
	if _, err := admin.PutSupplyGroup(ctx, vend.SupplyGroupSpec{Code: "123457", Name: "Bench", DKGA: "04", EA: "11", BaseDate: 2014, KRN: 1, TI: 1}); err != nil {
		return err
	}
	if err := admin.PutTariff(ctx, "DOM-2026", benchTariff); err != nil {
		return err
	}
	sup, err := admin.Onboard(ctx, auth.NewOperator{Username: "bench-supervisor", DisplayName: "bench-supervisor", Role: auth.Supervisor}, "bench password for bench-supervisor")
	if err != nil {
		return err
	}
	for i := range o.Vendors {
		code := fmt.Sprintf("BENCH%02d", i)
		if _, err := admin.CreateVendor(ctx, vend.NewVendor{Code: code, Name: "Bench till " + code, DailyLimitCents: 10_000_000_000}); err != nil {
			return err
		}
		for d := range 3 {
			if _, err := sup.Deposit(ctx, code, server.DepositBody{AmountCents: 1_000_000_000, Reference: fmt.Sprintf("SLIP-%d", d)}); err != nil {
				return err
			}
		}
		user := fmt.Sprintf("cashier%02d", i)
		if _, err := admin.Onboard(ctx, auth.NewOperator{Username: user, DisplayName: user, Role: auth.Vendor, Vendor: code}, "bench password for "+user); err != nil {
			return err
		}
		k, err := admin.CreateAPIKey(ctx, user, "bench terminal "+code)
		if err != nil {
			return err
		}
		r.terminals = append(r.terminals, k.Key)
	}
	for h := range r.heads {
		r.connectTills(h)
	}
	for i := range o.MetersPerRun {
		drn := "6007270" + fmt.Sprintf("%010d", 100+i)
		luhn, err := sts.LuhnDigit(drn)
		if err != nil {
			return err
		}
		pan := drn + strconv.Itoa(luhn)
		acc := fmt.Sprintf("BENCH-%05d", i)
		if _, err := admin.CreateCustomer(ctx, vend.NewCustomer{Account: acc, Name: "Bench household " + acc}); err != nil {
			return err
		}
		if _, err := admin.CreateMeter(ctx, vend.NewMeter{Number: pan, Kind: "sts", Customer: acc, Tariff: "DOM-2026", SupplyGroup: "123457"}); err != nil {
			return err
		}
		r.meters = append(r.meters, pan)
	}
	o.say("%s: head-end up, %d vending points with terminals, %d STS meters registered through the API", r.driver, o.Vendors, o.MetersPerRun)
	return nil
}

// purchase sells one token over HTTP from terminal t for meter m through
// head-end h, and returns the round-trip latency. The receipt is not read:
// the load generator shares the CPU with the head-end it measures.
func (r *rig) purchase(ctx context.Context, h, t, m int) (time.Duration, error) {
	req := vend.PurchaseRequest{Meter: r.meters[m], AmountCents: purchaseCents}
	key := "bench-" + strconv.FormatInt(r.seq.Add(1), 10)
	start := time.Now()
	if _, err := r.tills[h][t].Purchase(ctx, key, req, nil); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

// latencies summarises a run.
type latencies []time.Duration

func (l latencies) pct(p float64) time.Duration {
	if len(l) == 0 {
		return 0
	}
	i := int(float64(len(l)-1) * p)
	return l[i]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// closedLoop runs clients terminals selling as fast as answers come back,
// for d, spread over the rig's head-ends, and returns purchases per second
// and the sorted latencies.
func (r *rig) closedLoop(ctx context.Context, clients int, d time.Duration) (float64, latencies, error) {
	return r.closedLoopOn(ctx, clients, len(r.terminals), d)
}

// closedLoopOn is closedLoop with the clients sharing the first terminals
// vending points only.
func (r *rig) closedLoopOn(ctx context.Context, clients, terminals int, d time.Duration) (float64, latencies, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var mu sync.Mutex
	var all latencies
	var first error
	var wg sync.WaitGroup
	start := time.Now()
	deadline := start.Add(d)
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Each client owns its meters, so two clients never queue on
			// one meter's row; they share vending points when clients
			// outnumber them, as tills of one office do.
			var mine []int
			for m := c % len(r.meters); m < len(r.meters); m += clients {
				mine = append(mine, m)
			}
			if len(mine) == 0 {
				mine = []int{c % len(r.meters)}
			}
			var own latencies
			for i := 0; time.Now().Before(deadline); i++ {
				l, err := r.purchase(ctx, c%len(r.heads), c%terminals, mine[i%len(mine)])
				if err != nil {
					mu.Lock()
					if first == nil && ctx.Err() == nil {
						first = err
					}
					mu.Unlock()
					cancel()
					return
				}
				own = append(own, l)
			}
			mu.Lock()
			all = append(all, own...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	el := time.Since(start)
	if first != nil {
		return 0, nil, first
	}
	slices.Sort(all)
	return float64(len(all)) / el.Seconds(), all, nil
}

// openLoop offers purchases at a fixed rate for d, whatever the answers
// take, and measures each latency from the moment the request was due: a
// slow answer does not slow the offered load (no coordinated omission).
func (r *rig) openLoop(ctx context.Context, perSecond float64, d time.Duration) (float64, latencies, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	interval := time.Duration(float64(time.Second) / perSecond)
	n := int(d / interval)
	lat := make(latencies, n)
	var first error
	var once sync.Once
	var wg sync.WaitGroup
	// Meters are taken round robin; a meter's next purchase is due
	// len(meters) intervals later, long after its previous one returned.
	start := time.Now()
	for i := range n {
		due := start.Add(time.Duration(i) * interval)
		if w := time.Until(due); w > 0 {
			time.Sleep(w)
		}
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := r.purchase(ctx, i%len(r.heads), i%len(r.terminals), i%len(r.meters))
			if err != nil {
				once.Do(func() { first = err; cancel() })
				return
			}
			lat[i] = time.Since(due)
		}()
	}
	wg.Wait()
	el := time.Since(start)
	if first != nil {
		return 0, nil, first
	}
	slices.Sort(lat)
	return float64(n) / el.Seconds(), lat, nil
}

func runVend(ctx context.Context, o *Options) ([]Result, error) {
	return o.onEachDriver(ctx, vendOn)
}

func vendOn(ctx context.Context, o *Options, drv string) ([]Result, error) {
	r, err := startRig(ctx, o, drv)
	if err != nil {
		return nil, err
	}
	defer r.close()
	var out []Result
	var peak float64 // best closed-loop rate, for the open loop below it
	params := func(extra map[string]any) map[string]any {
		p := map[string]any{"db": drv, "vendors": len(r.terminals), "meters": len(r.meters), "seconds": o.VendTime.Seconds()}
		for k, v := range r.pgParams {
			p[k] = v
		}
		for k, v := range extra {
			p[k] = v
		}
		return p
	}
	// A short warm-up fills the per-meter decoder key cache, the tariff
	// cache and the connection pools, as a running head-end has them.
	if _, _, err := r.closedLoop(ctx, 4, o.VendTime/10); err != nil {
		return nil, fmt.Errorf("warm-up: %w", err)
	}
	for _, c := range o.Clients {
		txs0, commits0 := groupStats(r.heads[0])
		cpu0 := processCPU()
		tput, lat, err := r.closedLoop(ctx, c, o.VendTime)
		if err != nil {
			return out, fmt.Errorf("%d clients: %w", c, err)
		}
		cpu := processCPU() - cpu0
		txs, commits := groupStats(r.heads[0])
		peak = max(peak, tput)
		p := params(map[string]any{"clients": c, "replicas": 1})
		name := fmt.Sprintf("vend.%s.c%d", drv, c)
		out = append(out,
			Result{Name: name + ".rate", Value: tput, Unit: "purchases/s", Params: p, Goal: "≥ 5000"},
			Result{Name: name + ".p50", Value: ms(lat.pct(0.50)), Unit: "ms", Params: p},
			Result{Name: name + ".p99", Value: ms(lat.pct(0.99)), Unit: "ms", Params: p},
			// CPU of this process (clients and head-end; not PostgreSQL's)
			// per purchase: steadier than rates on a shared machine.
			Result{Name: name + ".cpu", Value: float64(cpu.Microseconds()) / float64(len(lat)), Unit: "µs/purchase", Params: p},
		)
		batch := ""
		if commits > commits0 {
			// Group commit (SQLite): write transactions per commit, the
			// factor by which fsyncs are shared.
			per := float64(txs-txs0) / float64(commits-commits0)
			out = append(out, Result{Name: name + ".tx_per_commit", Value: per, Unit: "tx/commit", Params: p})
			batch = fmt.Sprintf(", %.1f transactions per commit", per)
		}
		o.say("vend %s, %d clients: %.0f purchases/s, p50 %.2f ms, p99 %.2f ms (%d purchases%s)", drv, c, tput, ms(lat.pct(0.5)), ms(lat.pct(0.99)), len(lat), batch)
	}
	// One vending point for all clients: its float row (and its day's
	// sales row) is locked by every purchase until that purchase commits,
	// so purchases of one vending point serialise.
	hot := min(16, slices.Max(o.Clients))
	tput, lat, err := r.closedLoopOn(ctx, hot, 1, o.VendTime)
	if err != nil {
		return out, fmt.Errorf("one vending point: %w", err)
	}
	hp := params(map[string]any{"clients": hot, "replicas": 1, "vendors": 1})
	out = append(out,
		Result{Name: fmt.Sprintf("vend.%s.c%d.onevendor.rate", drv, hot), Value: tput, Unit: "purchases/s", Params: hp},
		Result{Name: fmt.Sprintf("vend.%s.c%d.onevendor.p99", drv, hot), Value: ms(lat.pct(0.99)), Unit: "ms", Params: hp},
	)
	o.say("vend %s, %d clients on one vending point: %.0f purchases/s, p99 %.2f ms", drv, hot, tput, ms(lat.pct(0.99)))

	// Open loop at the goal's rate, and at half of the best closed-loop
	// rate this machine reached: the latency of a head-end that keeps up.
	for i, offered := range []float64{o.OfferedRate, math.Round(peak / 2)} {
		if offered < 1 || (i > 0 && offered >= o.OfferedRate) {
			continue
		}
		rate, lat, err := r.openLoop(ctx, offered, o.VendTime)
		if err != nil {
			return out, fmt.Errorf("open loop: %w", err)
		}
		p := params(map[string]any{"offered_per_s": offered, "replicas": 1})
		name := fmt.Sprintf("vend.%s.open%.0f", drv, offered)
		if i > 0 {
			name = fmt.Sprintf("vend.%s.openhalfpeak", drv)
		}
		goal := ""
		if offered == 1000 {
			goal = "≤ 20"
		}
		out = append(out,
			Result{Name: name + ".p50", Value: ms(lat.pct(0.50)), Unit: "ms", Params: p},
			Result{Name: name + ".p99", Value: ms(lat.pct(0.99)), Unit: "ms", Params: p, Goal: goal},
			Result{Name: name + ".achieved", Value: rate, Unit: "purchases/s", Params: p},
		)
		o.say("vend %s open loop at %.0f/s offered: achieved %.0f/s, p50 %.2f ms, p99 %.2f ms", drv, offered, rate, ms(lat.pct(0.5)), ms(lat.pct(0.99)))
	}

	if drv == "postgres" {
		// A second head-end replica on the same database, in this process:
		// the clients are split between the two.
		if _, err := r.startHead(ctx); err != nil {
			return out, fmt.Errorf("second replica: %w", err)
		}
		c := slices.Max(o.Clients)
		tput, lat, err := r.closedLoop(ctx, c, o.VendTime)
		if err != nil {
			return out, fmt.Errorf("two replicas: %w", err)
		}
		p := params(map[string]any{"clients": c, "replicas": 2})
		name := fmt.Sprintf("vend.%s.c%d.replicas2", drv, c)
		out = append(out,
			Result{Name: name + ".rate", Value: tput, Unit: "purchases/s", Params: p},
			Result{Name: name + ".p99", Value: ms(lat.pct(0.99)), Unit: "ms", Params: p},
		)
		o.say("vend %s, two replicas, %d clients: %.0f purchases/s, p99 %.2f ms", drv, c, tput, ms(lat.pct(0.99)))
	}
	return out, nil
}
