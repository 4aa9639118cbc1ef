package crashtest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"sluice/auditlog"
	"sluice/config"
	"sluice/headend"
	"sluice/keys"
	"sluice/kms"
	"sluice/kms/filekms"
	"sluice/server/servertest"
	"sluice/store"
	"sluice/store/storetest"
	"sluice/sts"
	"sluice/tariff/tarifftest"
	"sluice/vend"
)

// binary is the sluice executable built once for the package's tests.
var binary string

func TestMain(m *testing.M) {
	code := func() int {
		dir, err := os.MkdirTemp("", "sluice-crashtest-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		binary = filepath.Join(dir, "sluice")
		goTool, err := exec.LookPath("go")
		if err != nil {
			goTool = filepath.Join(runtime.GOROOT(), "bin", "go")
		}
		build := exec.Command(goTool, "build", "-o", binary, "sluice/cmd/sluice")
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "crashtest: building sluice:", err)
			return 1
		}
		return m.Run()
	}()
	os.Exit(code)
}

// size is the run's shape: the 1000 purchases on SQLite (about 5 s
// on a 2-core machine), 300 on PostgreSQL, a third of that with -short;
// SLUICE_CRASH_PURCHASES sets the number for both.
type size struct {
	purchases, clients, meters, kills int
}

func crashSize(t *testing.T, purchases, kills int) size {
	s := size{purchases: purchases, clients: 8, meters: 16, kills: kills}
	if testing.Short() {
		s.purchases, s.kills = purchases/3, 3
	}
	if v := os.Getenv("SLUICE_CRASH_PURCHASES"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 10 {
			t.Fatalf("SLUICE_CRASH_PURCHASES=%q: want a number of at least 10", v)
		}
		s.purchases = n
		s.kills = max(5, n/100)
	}
	return s
}

func TestCrashSQLite(t *testing.T) {
	run(t, crashSize(t, 1000, 8), nil)
}

func TestCrashPostgres(t *testing.T) {
	url, _ := storetest.NewPostgresSchema(t)
	run(t, crashSize(t, 300, 5), []string{"--db-driver", "postgres", "--db-url", url})
}

const (
	supplyGroup = "123457"
	vendorCode  = "OFFICE1"
	amountBase  = 20_000 // cents tendered, plus a little per purchase
)

// vendingKey is the supply group's DKGA04 key (the one the server tests use).
var vendingKey = []byte("\xab\xab\xab\xab\xab\xab\xab\xab\x94\x94\x94\x94\x94\x94\x94\x94\x01\x23\x45\x67")

func run(t *testing.T, sz size, dbFlags []string) {
	start := time.Now()
	dir := t.TempDir()
	prepareKMS(t, dir)
	srv := newServer(t, dir, dbFlags)
	srv.start()
	srv.waitReady(60 * time.Second)
	t.Cleanup(srv.stop)

	// Set up through the API, as an administrator would.
	apiKey, pans := setUp(t, srv, sz)
	t.Logf("set up in %v", time.Since(start).Round(time.Millisecond))

	// Purchases from concurrent clients that retry on any error, while the
	// server is killed and restarted.
	till := &terminal{base: srv.base, hc: newHTTPClient(sz.clients), apiKey: apiKey}
	type result struct {
		status  int
		receipt vend.Receipt
		body    []byte
	}
	results := make([]result, sz.purchases)
	var completed, retries, replayed atomic.Int64
	var failMu sync.Mutex
	failures := map[string]int{}
	done := make(chan struct{})
	var kills int
	killerDone := make(chan struct{})
	go func() {
		defer close(killerDone)
		for i := 1; i <= sz.kills; i++ {
			threshold := int64(i * sz.purchases / (sz.kills + 1))
			for completed.Load() < threshold {
				select {
				case <-done:
					return
				case <-time.After(2 * time.Millisecond):
				}
			}
			time.Sleep(time.Duration(rand.IntN(30)) * time.Millisecond)
			srv.kill()
			kills++
			srv.start()
			if rand.IntN(2) == 0 {
				// Half the time the next kill may land during start-up.
				srv.waitReady(60 * time.Second)
			}
		}
	}()

	var wg sync.WaitGroup
	vendStart := time.Now()
	deadline := vendStart.Add(5 * time.Minute)
	for c := range sz.clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := c; j < sz.purchases; j += sz.clients {
				req := purchaseRequest(pans, j)
				key := idemKey(j)
				for attempt := 0; ; attempt++ {
					status, body, err := till.do("POST", "/purchases", req, map[string]string{"Idempotency-Key": key})
					if err == nil && (status == http.StatusCreated || status == http.StatusOK) {
						var r vend.Receipt
						if err := json.Unmarshal(body, &r); err != nil {
							t.Errorf("purchase %s: %v: %s", key, err, body)
							return
						}
						results[j] = result{status: status, receipt: r, body: body}
						if status == http.StatusOK {
							replayed.Add(1) // committed before a crash, answer lost
						}
						completed.Add(1)
						break
					}
					if err == nil && status < 500 && status != http.StatusConflict && status != http.StatusTooManyRequests {
						t.Errorf("purchase %s: refused with %d: %s", key, status, body)
						return
					}
					if time.Now().After(deadline) {
						t.Errorf("purchase %s: still failing after %d attempts: %d %v %s", key, attempt, status, err, body)
						return
					}
					retries.Add(1)
					why := "connection"
					if err == nil {
						why = strconv.Itoa(status)
					}
					failMu.Lock()
					failures[why]++
					failMu.Unlock()
					time.Sleep(time.Duration(5+rand.IntN(20)) * time.Millisecond)
				}
			}
		}()
	}
	wg.Wait()
	close(done)
	<-killerDone
	vendTime := time.Since(vendStart)
	if t.Failed() {
		t.FailNow()
	}
	srv.waitReady(60 * time.Second)

	// Every retry now replays the stored receipt, byte for byte.
	for c := range sz.clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := c; j < sz.purchases; j += sz.clients {
				status, body, err := till.do("POST", "/purchases", purchaseRequest(pans, j), map[string]string{"Idempotency-Key": idemKey(j)})
				if err != nil || status != http.StatusOK || !bytes.Equal(body, results[j].body) {
					t.Errorf("replay of %s: %d %v\n%s\nfirst answer:\n%s", idemKey(j), status, err, body, results[j].body)
					return
				}
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	srv.stop()

	// The audit chain verifies with its anchors, once the last records
	// are sealed (`serve` seals on a clean stop; seal covers a sealer
	// that was killed mid-round).
	cli(t, dir, dbFlags, 0, "audit", "seal")
	out := cli(t, dir, dbFlags, 0, "audit", "verify", "--json")
	var rep auditlog.Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil || !rep.OK || !rep.AnchorsChecked || rep.Pending != 0 || rep.Records == 0 {
		t.Fatalf("audit verify: %v\n%s", err, out)
	}
	// The ledger balances and breaks no invariant.
	out = cli(t, dir, dbFlags, 0, "ledger", "check")
	t.Log(strings.TrimSpace(out))

	checkStore(t, dir, dbFlags, sz, func(j int) vend.Receipt { return results[j].receipt })
	t.Logf("%d purchases by %d clients over %d meters, %d SIGKILLs and restarts: %d failed attempts retried, %d purchases committed before a crash and answered on retry; audit chain %d records (%d anchored); vending took %v, all %v",
		sz.purchases, sz.clients, sz.meters, kills, retries.Load(), replayed.Load(), rep.Records, rep.Anchored,
		vendTime.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	t.Logf("failed attempts by cause: %v", failures)
	if kills < sz.kills {
		t.Errorf("only %d of %d kills happened", kills, sz.kills)
	}
}

func idemKey(j int) string { return fmt.Sprintf("crash-%05d", j) }

func purchaseRequest(pans []string, j int) vend.PurchaseRequest {
	return vend.PurchaseRequest{Meter: pans[j%len(pans)], AmountCents: amountBase + int64(j%7)*100}
}

// checkStore reads the database after the run: one purchase per key, with
// the token set its client was given and nothing else, one ledger entry
// each, and the float drawn down by exactly what was paid.
func checkStore(t *testing.T, dir string, dbFlags []string, sz size, receipt func(int) vend.Receipt) {
	t.Helper()
	ctx := context.Background()
	cfg := loadConfig(t, dir, dbFlags)
	db, err := headend.OpenStore(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	count := func(q string) int {
		var n int
		if err := db.SQL().QueryRowContext(ctx, q).Scan(&n); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		return n
	}
	if n := count(`SELECT COUNT(*) FROM purchases`); n != sz.purchases {
		t.Errorf("%d purchases stored, want %d", n, sz.purchases)
	}
	if n := count(`SELECT COUNT(*) FROM ledger_entries WHERE type = 'purchase'`); n != sz.purchases {
		t.Errorf("%d purchase ledger entries, want %d", n, sz.purchases)
	}
	// Each purchase's audit record committed with it: one each, sealed.
	if n := count(`SELECT COUNT(*) FROM audit_log WHERE action = 'vend.purchase' AND seq IS NOT NULL`); n != sz.purchases {
		t.Errorf("%d sealed vend.purchase audit records, want %d", n, sz.purchases)
	}
	t.Logf("audit records of key uses (kms.*): %d", count(`SELECT COUNT(*) FROM audit_log WHERE action LIKE 'kms.%'`))
	var paid int64
	tokens := 0
	err = db.Read(ctx, func(tx store.Tx) error {
		v, err := tx.Vendors().ByCode(ctx, vendorCode)
		if err != nil {
			return err
		}
		paid, tokens = 0, 0
		for j := range sz.purchases {
			r := receipt(j)
			p, err := tx.Purchases().ByKey(ctx, v.ID, idemKey(j))
			if err != nil {
				return fmt.Errorf("purchase %s: %w", idemKey(j), err)
			}
			if p.ID != r.PurchaseID {
				t.Errorf("key %s: stored purchase %d, client was told %d", idemKey(j), p.ID, r.PurchaseID)
			}
			stored, err := tx.Tokens().ByPurchase(ctx, p.ID)
			if err != nil {
				return err
			}
			var got, want []string
			for _, s := range stored {
				got = append(got, s.Digits)
			}
			for _, it := range r.Tokens {
				want = append(want, it.Token)
			}
			if len(want) == 0 || !slices.Equal(got, want) {
				t.Errorf("key %s: stored tokens %v, client was given %v", idemKey(j), got, want)
			}
			tokens += len(stored)
			paid += r.Paid
		}
		if v.FloatCents != deposit(sz)-paid {
			t.Errorf("float %d, want deposit %d less paid %d", v.FloatCents, deposit(sz), paid)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n := count(`SELECT COUNT(*) FROM tokens`); n != tokens {
		t.Errorf("%d tokens stored, %d given to clients: a token set was issued twice", n, tokens)
	}
}

func deposit(sz size) int64 { return int64(sz.purchases)*(amountBase+1000) + 1_000_000 }

// prepareKMS creates the data directory's sealed key store the way a key
// ceremony would (standard keys, the supply group's vending key imported),
// with a cheap passphrase stretch so the many restarts stay fast.
func prepareKMS(t *testing.T, dir string) {
	t.Helper()
	ctx := context.Background()
	pass := []byte("crash test passphrase")
	if err := os.WriteFile(filepath.Join(dir, "kms.passphrase"), pass, 0o600); err != nil {
		t.Fatal(err)
	}
	km, err := filekms.Create(filepath.Join(dir, "keys.sealed"), pass, filekms.Options{Time: 1, MemoryKiB: 64, Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer km.Close()
	if _, err := keys.Init(ctx, km, kms.Ed25519); err != nil {
		t.Fatal(err)
	}
	if _, err := keys.ImportVendingKeys(ctx, km, []keys.VendingKey{{SGC: 123457, KRN: 1, Kind: kms.STSDKGA04, Key: vendingKey}}); err != nil {
		t.Fatal(err)
	}
}

func loadConfig(t *testing.T, dir string, dbFlags []string) config.Config {
	t.Helper()
	ov := []config.Override{{Key: "data_dir", Value: dir, Source: "test"}}
	for i := 0; i+1 < len(dbFlags); i += 2 {
		key := map[string]string{"--db-driver": "database.driver", "--db-url": "database.url"}[dbFlags[i]]
		ov = append(ov, config.Override{Key: key, Value: dbFlags[i+1], Source: dbFlags[i]})
	}
	cfg, err := config.Load("", func(string) string { return "" }, ov)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// setUp registers a vending point with a float, a supply group, the
// tariff, customers and meters, and a till's API key, over the API.
func setUp(t *testing.T, srv *server, sz size) (apiKey string, pans []string) {
	t.Helper()
	boot, err := os.ReadFile(filepath.Join(srv.dir, headend.BootstrapFile))
	if err != nil {
		t.Fatal(err)
	}
	var bootPass string
	sc := bufio.NewScanner(bytes.NewReader(boot))
	for sc.Scan() {
		if p, ok := strings.CutPrefix(sc.Text(), "password: "); ok {
			bootPass = p
		}
	}
	admin := login(t, srv, "admin", bootPass, "crash test admin password")
	admin.Must(201, "POST", "/vendors", vend.NewVendor{Code: vendorCode, Name: "Main office", DailyLimitCents: 10_000_000_000}, nil)
	admin.Must(200, "PUT", "/supply-groups/"+supplyGroup, vend.SupplyGroupSpec{Code: supplyGroup, Name: "North", DKGA: "04", EA: "11", BaseDate: 2014, KRN: 1, TI: 1}, nil)
	admin.Must(200, "PUT", "/tariffs/DOM-2026", tarifftest.Domestic(), nil)
	for i := range sz.meters {
		acc := fmt.Sprintf("ACC-%03d", i)
		admin.Must(201, "POST", "/customers", vend.NewCustomer{Account: acc, Name: "Household " + acc, Area: "Soweto"}, nil)
		drn := fmt.Sprintf("600727%011d", 1000+i)
		d, err := sts.LuhnDigit(drn)
		if err != nil {
			t.Fatal(err)
		}
		pan := drn + strconv.Itoa(d)
		admin.Must(201, "POST", "/meters", vend.NewMeter{Number: pan, Kind: "sts", Customer: acc, Tariff: "DOM-2026", SupplyGroup: supplyGroup}, nil)
		pans = append(pans, pan)
	}
	newOperator := func(username, role, vendor string) *servertest.Client {
		var created struct {
			OneTimePassword string `json:"one_time_password"`
		}
		body := map[string]string{"username": username, "display_name": username, "role": role}
		if vendor != "" {
			body["vendor"] = vendor
		}
		admin.Must(201, "POST", "/operators", body, &created)
		return login(t, srv, username, created.OneTimePassword, "a long enough password for "+username)
	}
	super := newOperator("supervisor1", "supervisor", "")
	super.Must(201, "POST", "/vendors/"+vendorCode+"/deposits", map[string]any{"amount_cents": deposit(sz), "reference": "SLIP-1"}, nil)
	newOperator("till1", "vendor", vendorCode)
	var key struct {
		Key string `json:"key"`
	}
	admin.Must(201, "POST", "/api-keys", map[string]string{"operator": "till1", "label": "crash test till"}, &key)
	if key.Key == "" {
		t.Fatal("no API key issued")
	}
	return key.Key, pans
}

// login logs in with a one-time password, replaces it, and logs in again
// in a fresh session.
func login(t *testing.T, srv *server, user, oneTime, newPass string) *servertest.Client {
	t.Helper()
	servertest.Login(t, srv.base, user, oneTime).Must(200, "POST", "/auth/password", map[string]string{"current_password": oneTime, "new_password": newPass}, nil)
	return servertest.Login(t, srv.base, user, newPass)
}

// terminal is a vending till on an API key. Unlike servertest's console
// sessions it returns a failed connection as an error rather than failing
// the test: the server is killed under it, its callers retry, and they run
// in goroutines other than the test's.
type terminal struct {
	base   string
	hc     *http.Client
	apiKey string
}

func newHTTPClient(conns int) *http.Client {
	return &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: conns, DisableCompression: true}}
}

func (c *terminal) do(method, path string, body any, hdr map[string]string) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		js, err := json.Marshal(body)
		if err != nil {
			return 0, nil, err
		}
		rd = bytes.NewReader(js)
	}
	req, err := http.NewRequest(method, c.base+"/api/v1"+path, rd)
	if err != nil {
		return 0, nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Authorization", "Bearer "+c.apiKey)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// server is `sluice serve` as a child process on a fixed address, so
// clients reach each incarnation at the same URL.
type server struct {
	t      *testing.T
	dir    string
	base   string
	args   []string
	log    *os.File
	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
}

func newServer(t *testing.T, dir string, dbFlags []string) *server {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	logf, err := os.Create(filepath.Join(t.TempDir(), "serve.log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		logf.Close()
		if t.Failed() {
			b, _ := os.ReadFile(logf.Name())
			if len(b) > 8000 {
				b = b[len(b)-8000:]
			}
			t.Logf("tail of the server log:\n%s", b)
		}
	})
	args := append([]string{"serve", "--data", dir, "--listen", addr, "--log-level", "warn"}, dbFlags...)
	return &server{t: t, dir: dir, base: "http://" + addr, args: args, log: logf}
}

func (s *server) start() {
	s.mu.Lock()
	defer s.mu.Unlock()
	cmd := exec.Command(binary, s.args...)
	cmd.Env = append(os.Environ(), "SLUICE_MQTT_MODE=off")
	cmd.Stdout, cmd.Stderr = s.log, s.log
	if err := cmd.Start(); err != nil {
		s.t.Errorf("start sluice serve: %v", err)
		return
	}
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(exited)
	}()
	s.cmd, s.exited = cmd, exited
}

// waitReady polls /readyz until the server answers 200.
func (s *server) waitReady(timeout time.Duration) {
	s.mu.Lock()
	exited := s.exited
	s.mu.Unlock()
	hc := &http.Client{Timeout: time.Second}
	end := time.Now().Add(timeout)
	for time.Now().Before(end) {
		select {
		case <-exited:
			s.t.Errorf("sluice serve exited during start-up")
			return
		default:
		}
		if resp, err := hc.Get(s.base + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	s.t.Errorf("sluice serve not ready after %v", timeout)
}

func (s *server) signal(sig syscall.Signal, wait time.Duration) {
	s.mu.Lock()
	cmd, exited := s.cmd, s.exited
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Signal(sig)
	select {
	case <-exited:
	case <-time.After(wait):
		cmd.Process.Kill()
		<-exited
		s.t.Errorf("sluice serve ignored %v for %v", sig, wait)
	}
}

// kill is the crash: SIGKILL, no chance to finish anything.
func (s *server) kill() { s.signal(syscall.SIGKILL, 10*time.Second) }

// stop is a clean shutdown.
func (s *server) stop() { s.signal(syscall.SIGTERM, 30*time.Second) }

// cli runs a sluice command on the data directory and checks its status.
func cli(t *testing.T, dir string, dbFlags []string, want int, args ...string) string {
	t.Helper()
	args = append(append(args, "--data", dir), dbFlags...)
	cmd := exec.Command(binary, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("sluice %v: %v", args, err)
	}
	if code != want {
		t.Fatalf("sluice %v: exit %d, want %d\n%s%s", args, code, want, out.String(), errb.String())
	}
	return out.String()
}
