package console

// End-to-end tests of the console in headless Chromium, driven over the
// DevTools protocol (chromedp). The head-end under test is the real one:
// a SQLite store, the file KMS, the auth and vending services and the API
// server, with this package's handler mounted next to it exactly as
// `sluice serve` does.

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/fetch"
	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"sluice/auditlog"
	"sluice/auth"
	"sluice/campaign"
	"sluice/campaign/campaignapi"
	"sluice/internal/testenv"
	"sluice/keys"
	"sluice/kms"
	"sluice/kms/filekms"
	"sluice/protect"
	"sluice/report"
	"sluice/server"
	"sluice/server/servertest"
	"sluice/store"
	"sluice/store/sqlite"
	"sluice/tariff/tarifftest"
	"sluice/vend"
	"sluice/vend/engineeringapi"
	"sluice/webhook"
)

const (
	chromium = "/usr/bin/chromium"
	pan      = "600727000000000009"
)

var cheap = auth.Params{Memory: 64, Time: 1, Threads: 1}

// headend is a head-end with the console, over a fresh store.
type headend struct {
	url       string
	bootstrap string // path of bootstrap-admin.txt
	seal      func() // seals pending audit records into the chain
	// raise raises a revenue-protection alert the way the telemetry rules do.
	raise func(meter string, f protect.Finding)
	// runCampaign does what `sluice keys campaign run` does.
	runCampaign func(id int64)
}

func startHeadend(t *testing.T) *headend {
	t.Helper()
	ctx := context.Background()
	dir := t.TempDir()
	db, err := sqlite.Open(ctx, filepath.Join(dir, "sluice.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if _, err := db.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	km, err := filekms.Create(filepath.Join(dir, "keys.sealed"), []byte("test passphrase"), filekms.Options{Time: 1, MemoryKiB: 64, Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { km.Close() })
	if _, err := keys.Init(ctx, km, kms.Ed25519); err != nil {
		t.Fatal(err)
	}
	// Two revisions of the supply group's vending key, so that raising the
	// group's KRN schedules a key change that purchases carry.
	if _, err := keys.ImportVendingKeys(ctx, km, []keys.VendingKey{
		{SGC: 123457, KRN: 1, Kind: kms.STSDKGA04, Key: []byte("\xab\xab\xab\xab\xab\xab\xab\xab\x94\x94\x94\x94\x94\x94\x94\x94\x01\x23\x45\x67")},
		{SGC: 123457, KRN: 2, Kind: kms.STSDKGA04, Key: []byte("\x11\x22\x33\x44\x55\x66\x77\x88\x99\xaa\xbb\xcc\xdd\xee\xff\x00\x01\x02\x03\x04")},
		{SGC: 123457, KRN: 3, Kind: kms.STSDKGA04, Key: []byte("\x21\x32\x43\x54\x65\x76\x87\x98\xa9\xba\xcb\xdc\xed\xfe\x0f\x10\x21\x32\x43\x54")},
	}); err != nil {
		t.Fatal(err)
	}
	anchors, err := auditlog.NewKMSAnchors(ctx, km)
	if err != nil {
		t.Fatal(err)
	}
	cred := filepath.Join(dir, "bootstrap-admin.txt")
	if _, err := auth.Bootstrap(ctx, db, cred, cheap); err != nil {
		t.Fatal(err)
	}
	v := vend.New(vend.Config{Store: db, Keys: vend.KMSKeys{KM: km}})
	campaigns := campaign.New(campaign.Config{Store: db, Vend: v, KM: km})
	// Routes other packages contribute, as the head-end wires them.
	var extra []server.Route
	reports := report.New(db, time.UTC, nil)
	extra = append(extra, report.Routes(reports)...)
	extra = append(extra, campaignapi.Routes(campaigns)...)
	extra = append(extra, engineeringapi.Routes(v)...)
	box, err := webhook.NewBox(ctx, km)
	if err != nil {
		t.Fatal(err)
	}
	extra = append(extra, webhook.Routes(webhook.NewAdmin(db, box, nil))...)
	protection := protect.New(protect.Config{Store: db})
	extra = append(extra, protect.Routes(protection)...)
	authSvc := auth.NewService(db, cheap, nil)
	srv := server.New(server.Config{Store: db, Auth: authSvc, Vend: v, Extra: extra})
	// The head-end's mux: the report export beside the route table, and
	// the console mounted at / in front of the API.
	mux := http.NewServeMux()
	mux.Handle("GET /api/v1/reports/{name}/export", reports.ExportHandler(authSvc))
	mux.Handle("/", Mount(srv.Handler()))
	ts := httptest.NewServer(mux)
	t.Cleanup(ts.Close)
	return &headend{url: ts.URL, bootstrap: cred, seal: func() {
		if _, err := auditlog.Seal(ctx, db, anchors, 1000); err != nil {
			t.Fatal(err)
		}
	}, raise: func(meter string, f protect.Finding) {
		var m store.Meter
		err := db.Read(ctx, func(tx store.Tx) error {
			var err error
			m, err = tx.Meters().ByNumber(ctx, meter)
			return err
		})
		if err == nil {
			err = protection.Raise(ctx, m.ID, "meter:"+meter, f)
		}
		if err != nil {
			t.Fatal(err)
		}
	}, runCampaign: func(id int64) {
		if _, err := campaigns.Run(ctx, id, "operator:admin", nil); err != nil {
			t.Fatal(err)
		}
	}}
}

// operator creates an operator and sets its own password.
func (h *headend) operator(t *testing.T, admin *servertest.Client, user, role, vendor, pass string) *servertest.Client {
	t.Helper()
	var created server.NewOperatorResponse
	admin.Must(201, "POST", "/operators", auth.NewOperator{Username: user, DisplayName: strings.ToUpper(user[:1]) + user[1:], Role: role, Vendor: vendor}, &created)
	c := servertest.Login(t, h.url, user, created.OneTimePassword)
	c.Must(200, "POST", "/auth/password", server.PasswordRequest{CurrentPassword: created.OneTimePassword, NewPassword: pass}, nil)
	return c
}

// browser starts a fresh headless Chromium.
func browser(t *testing.T) (context.Context, *problems) {
	t.Helper()
	if _, err := os.Stat(chromium); err != nil {
		testenv.Missing(t, "Chromium (%s): %v; scripts/setup.sh installs it", chromium, err)
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(chromium),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true),
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-default-browser-check", true),
		chromedp.Flag("disable-extensions", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.WindowSize(1280, 900),
	}
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	bctx, cancelB := chromedp.NewContext(actx)
	t.Cleanup(func() { cancelB(); cancelA() })
	// The first action starts the browser; it must not run under a
	// deadline, which would stop the whole browser when it expires.
	if err := chromedp.Do(bctx, call(cdplog.Enable, cdp.Empty{})); err != nil {
		testenv.Missing(t, "start Chromium: %v", err)
	}
	ctx, cancelC := context.WithTimeout(bctx, 90*time.Second)
	t.Cleanup(cancelC)
	p := &problems{}
	err := chromedp.Listen(ctx, func(ev any) {
		switch e := ev.(type) {
		case *runtime.EventExceptionThrown:
			d := e.ExceptionDetails
			msg := d.Text
			if d.Exception != nil {
				msg += " " + d.Exception.Description
			}
			p.add(fmt.Sprintf("exception at %s:%d: %s", d.URL, d.LineNumber, msg))
		case *cdplog.EventEntryAdded:
			// CSP violations and script errors; failed requests (the 401 of
			// /auth/me before login) are the network's business.
			if e.Entry.Source != "network" && e.Entry.Level == "error" {
				p.add(string(e.Entry.Source) + ": " + e.Entry.Text)
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return ctx, p
}

// call is an action that sends one protocol command.
func call[P, R any](cmd cdp.Command[P, R], params P) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		_, err := cdp.Call(ctx, t, cmd, params)
		return err
	})
}

// into is an action that stores the value of a, for use in a list of steps.
func into[T any](dst *T, a chromedp.Action[T]) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		v, err := a(ctx, t)
		*dst = v
		return err
	})
}

type css = chromedp.CSS

// problems collects what the browser reported as broken.
type problems struct {
	mu   sync.Mutex
	list []string
}

func (p *problems) add(s string) { p.mu.Lock(); p.list = append(p.list, s); p.mu.Unlock() }
func (p *problems) check(t *testing.T) {
	t.Helper()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, s := range p.list {
		t.Errorf("browser reported %s", s)
	}
}

// artifacts is where screenshots go: $SLUICE_ARTIFACTS/console, or a
// temporary directory.
func artifacts(t *testing.T) string {
	dir := t.TempDir()
	if d := os.Getenv("SLUICE_ARTIFACTS"); d != "" {
		dir = filepath.Join(d, "console")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

var unformatted = regexp.MustCompile(`\b(null|undefined|NaN|Invalid Date|\[object \w+\])\b`)

func shot(t *testing.T, dir, name string) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		// Every page the tests photograph must read well: no value the
		// code failed to format.
		text, err := chromedp.Evaluate[string](`document.body.innerText`)(ctx, tg)
		if err != nil {
			return err
		}
		if m := unformatted.FindString(text); m != "" {
			t.Errorf("%s shows %q:\n%s", name, m, text)
		}
		png, err := chromedp.FullScreenshot(100)(ctx, tg)
		if err != nil {
			return err
		}
		p := filepath.Join(dir, name+".png")
		if err := os.WriteFile(p, png, 0o644); err != nil {
			return err
		}
		t.Logf("screenshot %s", p)
		return nil
	})
}

func run(t *testing.T, ctx context.Context, step string, actions ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	start := time.Now()
	defer func() {
		if d := time.Since(start); d > time.Second {
			t.Logf("step %q took %v", step, d.Round(time.Millisecond))
		}
	}()
	if err := chromedp.Do(sctx, actions...); err != nil {
		url, _ := chromedp.Run(ctx, chromedp.Location())
		text, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body.innerText`))
		if png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)); err == nil {
			p := filepath.Join(artifacts(t), "failed-"+strings.ReplaceAll(step, " ", "-")+".png")
			os.WriteFile(p, png, 0o644)
			t.Logf("screenshot of the failure: %s", p)
		}
		t.Fatalf("%s (at %s): %v\npage text:\n%s", step, url, err, text)
	}
}

// login fills the login form and presses Enter.
func login(user, pass string) chromedp.Action[chromedp.Void] {
	return chromedp.Steps(
		chromedp.WaitVisible(css("#login-form")),
		chromedp.SendKeys(css(`#login-form input[name="username"]`), user),
		chromedp.SendKeys(css(`#login-form input[name="password"]`), pass+"\r"),
	)
}

func logout() chromedp.Action[chromedp.Void] {
	return chromedp.Steps(chromedp.Click(css("#who button")), chromedp.WaitVisible(css("#login-form")))
}

type tokenView struct {
	Kind   string `json:"kind"`
	Label  string `json:"label"`
	Digits string `json:"digits"`
}

const readTokens = `[...document.querySelectorAll("#receipt #tokens li")].map(li => ({
	kind: li.dataset.kind, label: li.querySelector(".token-label").textContent,
	digits: li.querySelector(".token-digits").textContent}))`

var grouped = regexp.MustCompile(`^\d{4} \d{4} \d{4} \d{4} \d{4}$`)

func TestConsoleEndToEnd(t *testing.T) {
	ctx, probs := browser(t)
	h := startHeadend(t)
	dir := artifacts(t)
	const adminPass = "correct horse battery staple"

	// First run: the administrator's one-time password from the data
	// directory, then the forced password change.
	cred, err := os.ReadFile(h.bootstrap)
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^password: (\S+)$`).FindSubmatch(cred)
	if m == nil {
		t.Fatalf("no password in %s", h.bootstrap)
	}
	var heading string
	run(t, ctx, "bootstrap login",
		chromedp.Navigate(h.url+"/"),
		login("admin", string(m[1])),
		chromedp.WaitVisible(css("#password-form")),
		shot(t, dir, "01-password-change"),
		chromedp.SendKeys(css("#pw-current"), string(m[1])),
		chromedp.SendKeys(css("#pw-new"), adminPass),
		chromedp.SendKeys(css("#pw-again"), adminPass+"\r"),
		chromedp.WaitVisible(css("#nav a")),
		into(&heading, chromedp.Text(css("main h1"))))
	if heading != "Dashboard" {
		t.Fatalf("after the password change: %q", heading)
	}

	// Data through the API, as an integration would: a vending point with a
	// float, a supply group, a tariff, a customer with arrears and an STS
	// meter still on key revision 1, then the group moves to revision 2 so
	// the meter's next purchase carries a key change.
	admin := servertest.Login(t, h.url, "admin", adminPass)
	admin.Must(201, "POST", "/vendors", vend.NewVendor{Code: "OFFICE1", Name: "Main office", DailyLimitCents: 5_000_000}, nil)
	admin.Must(201, "POST", "/vendors", vend.NewVendor{Code: "SPAZA7", Name: "Corner shop", DailyLimitCents: 500_000}, nil)
	admin.Must(200, "PUT", "/supply-groups/123457", vend.SupplyGroupSpec{Code: "123457", Name: "North", DKGA: "04", EA: "11", BaseDate: 2014, KRN: 1, TI: 1}, nil)
	admin.Must(200, "PUT", "/tariffs/DOM-2026", tarifftest.Domestic(), nil)
	admin.Must(201, "POST", "/customers", vend.NewCustomer{Account: "ACC-001", Name: "Thandi Nkosi", Address: "12 Vilakazi St", Area: "Soweto"}, nil)
	admin.Must(201, "POST", "/customers", vend.NewCustomer{Account: "ACC-002", Name: "Sipho Dlamini", Area: "Soweto"}, nil)
	admin.Must(201, "POST", "/meters", vend.NewMeter{Number: pan, Kind: "sts", Customer: "ACC-001", Tariff: "DOM-2026", SupplyGroup: "123457", Area: "Soweto"}, nil)
	admin.Must(200, "PUT", "/supply-groups/123457", vend.SupplyGroupSpec{Code: "123457", Name: "North", DKGA: "04", EA: "11", BaseDate: 2014, KRN: 2, TI: 1}, nil)
	super := h.operator(t, admin, "sam", auth.Supervisor, "", "supervisor password one")
	h.operator(t, admin, "cashier1", auth.Vendor, "OFFICE1", "cashier password one")
	h.operator(t, admin, "eve", auth.Engineer, "", "engineer password one")
	h.operator(t, admin, "audrey", auth.Auditor, "", "auditor password one")
	super.Must(201, "POST", "/vendors/OFFICE1/deposits", server.DepositBody{AmountCents: 1_000_000, Reference: "SLIP-1"}, nil)
	super.Must(201, "POST", "/vendors/SPAZA7/deposits", server.DepositBody{AmountCents: 50_000, Reference: "SLIP-2"}, nil)
	super.Must(201, "POST", "/customers/ACC-001/debt", server.DebtBody{AmountCents: 20_000, Reference: "ARREARS-2026"}, nil)

	// The cashier vends: search by name, preview, pay, receipt.
	var receipt []tokenView
	var keyChangeNote string
	run(t, ctx, "vend",
		logout(),
		login("cashier1", "cashier password one"),
		chromedp.WaitVisible(css(`#nav a[href="#/vend"]`)),
		chromedp.Click(css(`#nav a[href="#/vend"]`)),
		chromedp.WaitVisible(css("#vend-search")),
		chromedp.SendKeys(css("#vend-search"), "thandi\r"),
		chromedp.WaitVisible(css(`button.pick[data-meter="`)+pan+`"]`),
		chromedp.Click(css(`button.pick[data-meter="`)+pan+`"]`),
		chromedp.WaitVisible(css("#vend-amount")),
		chromedp.SendKeys(css("#vend-amount"), "300\r"),
		chromedp.WaitVisible(css("#breakdown")),
		chromedp.WaitVisible(css("#key-change-due")),
		shot(t, dir, "02-vend-preview"),
		chromedp.Click(css("#pay-btn")),
		chromedp.WaitVisible(css("#receipt")),
		into(&receipt, chromedp.Evaluate[[]tokenView](readTokens)),
		into(&keyChangeNote, chromedp.Text(css("#key-change-note"))),
		shot(t, dir, "03-receipt"))
	kinds := make([]string, len(receipt))
	for i, tk := range receipt {
		kinds[i] = tk.Kind
		if !grouped.MatchString(tk.Digits) {
			t.Errorf("token %d %q not grouped 4-4-4-4-4", i, tk.Digits)
		}
	}
	if got := strings.Join(kinds, ","); got != "key_change,key_change,key_change,key_change,free_water,credit" {
		t.Fatalf("receipt token order %s", got)
	}
	for i := range 4 {
		if want := fmt.Sprintf("Key change %d of 4", i+1); !strings.Contains(receipt[i].Label, want) {
			t.Errorf("token %d labelled %q, want %q", i, receipt[i].Label, want)
		}
	}
	if !strings.Contains(keyChangeNote, "key-change tokens first") {
		t.Errorf("key change note %q", keyChangeNote)
	}
	// The receipt shows exactly the tokens the head-end stored.
	var purchases []server.PurchaseRow
	super.Must(200, "GET", "/meters/"+pan+"/purchases", nil, &purchases)
	if len(purchases) != 1 {
		t.Fatalf("purchases %+v", purchases)
	}
	var stored vend.Receipt
	super.Must(200, "GET", fmt.Sprint("/purchases/", purchases[0].ID), nil, &stored)
	for i, tk := range stored.Tokens {
		if strings.ReplaceAll(receipt[i].Digits, " ", "") != tk.Token {
			t.Errorf("receipt token %d %q, stored %q", i, receipt[i].Digits, tk.Token)
		}
	}

	// Printing: the print stylesheet leaves only the receipt.
	var visible []string
	run(t, ctx, "print",
		call(emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{Media: "print"}),
		into(&visible, chromedp.Evaluate[[]string](`[...document.querySelectorAll("header.top, #search-form, #reprint-last, #print-btn, #receipt")].filter(e => e.offsetParent !== null || e.getClientRects().length).map(e => e.id || e.className)`)),
		shot(t, dir, "04-receipt-print"),
		chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			pdf, err := chromedp.PrintToPDF(chromedp.PDFPaper(chromedp.PaperSize{Width: 3.2, Height: 11}))(ctx, tg)
			if err != nil {
				return err
			}
			p := filepath.Join(dir, "04-receipt.pdf")
			t.Logf("receipt PDF %s", p)
			return os.WriteFile(p, pdf, 0o644)
		}),
		call(emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{}))
	if strings.Join(visible, ",") != "receipt" {
		t.Errorf("printed page shows %v, want only the receipt", visible)
	}

	// A sale whose answer is lost on the way back: the head-end records it,
	// the browser sees a network error. The retry must reuse the purchase
	// key and get the same sale back, not a second one.
	ictx, stopIntercept := context.WithCancel(ctx)
	paused := chromedp.Events(ictx, fetch.RequestPaused)
	intercepted := make(chan struct{})
	go func() {
		defer close(intercepted)
		failed := false
		for e, err := range paused {
			if err != nil {
				return
			}
			if e.Request.Method == "POST" && e.ResponseStatusCode == 201 && !failed {
				// The server has committed the sale; its answer never arrives.
				failed = true
				chromedp.Call(ictx, fetch.FailRequest, fetch.FailRequestParams{RequestID: e.RequestID, ErrorReason: network.ErrorReasonConnectionReset})
				continue
			}
			chromedp.Call(ictx, fetch.ContinueRequest, fetch.ContinueRequestParams{RequestID: e.RequestID})
		}
	}()
	var keyBefore string
	var second []tokenView
	run(t, ctx, "lost answer",
		call(fetch.Enable, fetch.EnableParams{Patterns: []*fetch.RequestPattern{{URLPattern: "*/api/v1/purchases", RequestStage: fetch.RequestStageResponse}}}),
		// This sale is made with the keyboard alone: each step leaves the
		// focus where the next one starts.
		// (The print emulation hid the button, which blurred it.)
		chromedp.Focus(css("#print-btn")),
		chromedp.KeyEvent("\t"),
		chromedp.WaitVisible(css("#new-sale:focus")),
		chromedp.KeyEvent("\r"),
		chromedp.WaitVisible(css("#vend-search:focus")),
		chromedp.KeyEvent(pan+"\r"),
		chromedp.WaitVisible(css(`button.pick[data-meter="`+pan+`"]:focus`)),
		chromedp.KeyEvent("\r"),
		chromedp.WaitVisible(css("#vend-amount:focus")),
		chromedp.KeyEvent("50.00\r"),
		chromedp.WaitVisible(css("#pay-btn:focus")),
		chromedp.KeyEvent("\r"),
		chromedp.WaitVisible(css("#pending")),
		into(&keyBefore, chromedp.Text(css("#pending-key"))),
		shot(t, dir, "05-vend-retry"),
		chromedp.WaitVisible(css("#retry-btn:focus")),
		chromedp.KeyEvent("\r"),
		chromedp.WaitVisible(css("#receipt")),
		into(&second, chromedp.Evaluate[[]tokenView](readTokens)),
		call(fetch.Disable, cdp.Empty{}))
	stopIntercept()
	<-intercepted
	if !regexp.MustCompile(`^[0-9a-f-]{36}$`).MatchString(keyBefore) {
		t.Errorf("purchase key %q is not a UUID", keyBefore)
	}
	super.Must(200, "GET", "/meters/"+pan+"/purchases", nil, &purchases)
	if len(purchases) != 2 {
		t.Fatalf("after a lost answer and a retry the meter has %d purchases, want 2: %+v", len(purchases), purchases)
	}
	if len(second) != 1 || second[0].Kind != "credit" {
		t.Fatalf("second receipt %+v", second)
	}
	last := purchases[0]
	if purchases[1].ID > last.ID {
		last = purchases[1]
	}
	super.Must(200, "GET", fmt.Sprint("/purchases/", last.ID), nil, &stored)
	if strings.ReplaceAll(second[0].Digits, " ", "") != stored.Tokens[0].Token {
		t.Errorf("retry showed %s, the head-end sold %s", second[0].Digits, stored.Tokens[0].Token)
	}

	// Reprint of the first receipt.
	var reprint []tokenView
	run(t, ctx, "reprint",
		chromedp.Navigate(fmt.Sprintf("%s/#/receipts/%d", h.url, min(purchases[0].ID, purchases[1].ID))),
		chromedp.WaitVisible(css("#reprint-mark")),
		into(&reprint, chromedp.Evaluate[[]tokenView](readTokens)))
	if fmt.Sprint(reprint) != fmt.Sprint(receipt) {
		t.Errorf("reprint %v differs from the receipt %v", reprint, receipt)
	}

	// Revenue protection has found two things about the meter.
	h.raise(pan, protect.Finding{Rule: protect.RuleTokenGuessing, Severity: "warning", Summary: "5 rejected token entries in 10 minutes"})
	h.raise(pan, protect.Finding{Rule: protect.RuleSilent, Severity: "warning", Summary: "no report for 26 hours"})

	// The supervisor opens the meter page: key state, the chart, the tokens.
	var krn, vendsToday, revenueToday, openAlerts, silent, exportCSV string
	var tokenRows, bars, reportRows, meterAlerts, resolved int
	run(t, ctx, "meter page",
		logout(),
		login("sam", "supervisor password one"),
		chromedp.WaitVisible(css("#dash-alerts")),
		chromedp.WaitVisible(css("#floats table")),
		chromedp.WaitVisible(css("#stat-vends")),
		into(&vendsToday, chromedp.Text(css("#stat-vends .stat"))),
		into(&revenueToday, chromedp.Text(css("#stat-revenue .stat"))),
		chromedp.WaitVisible(css("#stat-alerts")),
		into(&openAlerts, chromedp.Text(css("#stat-alerts .stat"))),
		into(&silent, chromedp.Text(css("#stat-silent .stat"))),
		shot(t, dir, "06-dashboard"),
		chromedp.Navigate(h.url+"/#/meters/"+pan),
		chromedp.WaitVisible(css("#tokens-section table")),
		chromedp.WaitVisible(css("#meter-chart")),
		into(&krn, chromedp.Text(css("#meter-krn"))),
		into(&tokenRows, chromedp.Evaluate[int](`document.querySelectorAll("#tokens-section tbody tr").length`)),
		into(&bars, chromedp.Evaluate[int](`[...document.querySelectorAll("#meter-chart rect.bar-credit")].filter(r => Number(r.dataset.litres) > 0).length`)),
		chromedp.WaitVisible(css("table.meter-alerts")),
		into(&meterAlerts, chromedp.Evaluate[int](`document.querySelectorAll("table.meter-alerts tbody tr").length`)),
		shot(t, dir, "07-meter"),
		chromedp.Navigate(h.url+"/#/reports"),
		chromedp.WaitVisible(css("#report-form")),
		chromedp.SetValue(css("#report-name"), "vends"),
		chromedp.Click(css(`#report-form button[type="submit"]`)),
		chromedp.WaitVisible(css("#report-out table.report")),
		into(&reportRows, chromedp.Evaluate[int](`document.querySelectorAll("#report-out tbody tr:not(.total)").length`)),
		into(&exportCSV, chromedp.Evaluate[string](`fetch(document.getElementById("report-export").href).then(r => r.ok ? r.text() : "HTTP " + r.status)`, chromedp.EvalAwaitPromise)),
		shot(t, dir, "08-report"),
		// Alerts: acknowledge one, resolve the other with a note.
		chromedp.Click(css(`#nav a[href="#/alerts"]`)),
		chromedp.WaitVisible(css("#alerts tr.state-open button[data-ack]")),
		chromedp.Click(css("#alerts tr.state-open button[data-ack]")),
		chromedp.WaitVisible(css("#alerts tr.state-acknowledged button[data-resolve]")),
		chromedp.Click(css("#alerts tr.state-acknowledged button[data-resolve]")),
		chromedp.SendKeys(css("#alerts tr.state-acknowledged textarea"), "meter visited: keypad stuck, replaced"),
		chromedp.Click(css(`#alerts tr.state-acknowledged .resolve-form button[type="submit"]`)),
		chromedp.WaitNotPresent(css("#alerts tr.state-acknowledged")),
		chromedp.SetValue(css("#alert-state"), "resolved"),
		chromedp.Click(css(`form:has(#alert-state) button[type="submit"]`)),
		chromedp.WaitVisible(css("#alerts tr.state-resolved")),
		into(&resolved, chromedp.Evaluate[int](`document.querySelectorAll("#alerts tbody tr").length`)),
		shot(t, dir, "09-alerts"))
	if openAlerts != "2" || silent != "1" || meterAlerts != 2 {
		t.Errorf("alerts: dashboard %s open, %s silent; meter page %d", openAlerts, silent, meterAlerts)
	}
	if resolved != 1 {
		t.Errorf("%d resolved alerts listed, want 1", resolved)
	}
	// Header, two purchases, totals.
	if lines := strings.Split(strings.TrimSpace(exportCSV), "\n"); len(lines) != 4 || !strings.HasPrefix(lines[0], "time,") || !strings.HasPrefix(lines[3], "total,") {
		t.Errorf("report export: %q", exportCSV)
	}
	if reportRows != 2 {
		t.Errorf("vends report shows %d rows, want 2", reportRows)
	}

	// Money: the supervisor records a float deposit, then undoes the
	// second sale; its token was printed, so only a compensating entry is
	// possible.
	var depositMsg string
	var floatAfter server.Vendor
	run(t, ctx, "deposit and reversal",
		chromedp.Click(css(`#nav a[href="#/vendors"]`)),
		chromedp.WaitVisible(css("#deposit-form")),
		chromedp.SendKeys(css("#deposit-vendor"), "SPAZA7"),
		chromedp.SendKeys(css("#deposit-amount"), "1 500"),
		chromedp.SendKeys(css("#deposit-ref"), "SLIP-77\r"),
		chromedp.WaitVisible(css("#deposit-form .success")),
		into(&depositMsg, chromedp.Text(css("#deposit-form .success"))),
		shot(t, dir, "10-floats"),
		chromedp.Navigate(fmt.Sprintf("%s/#/receipts/%d", h.url, max(purchases[0].ID, purchases[1].ID))),
		chromedp.WaitVisible(css("#reverse form")),
		chromedp.SendKeys(css("#reverse-reason"), "customer paid twice"),
		chromedp.Click(css("#reverse-compensate")),
		chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			// Accept the confirmation dialog the reversal asks for
			// (subscribed before the click, read while it waits).
			dialogs := chromedp.Events(ctx, page.JavascriptDialogOpening)
			go func() {
				for _, err := range dialogs {
					if err == nil {
						chromedp.Call(ctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: true})
					}
					return
				}
			}()
			return nil
		}),
		chromedp.Click(css(`#reverse button[type="submit"]`)),
		chromedp.WaitNotPresent(css("#reverse")),
		shot(t, dir, "11-reversed"))
	if !strings.Contains(depositMsg, "SPAZA7 float is now 2 000.00") {
		t.Errorf("deposit: %q", depositMsg)
	}
	var vendors []server.Vendor
	super.Must(200, "GET", "/vendors", nil, &vendors)
	for _, v := range vendors {
		if v.Code == "OFFICE1" {
			floatAfter = v
		}
	}
	// The compensated sale's 48.99 went back to the float.
	if floatAfter.FloatCents != 1_000_000-34_684+4_899 {
		t.Errorf("OFFICE1 float %d after the compensating entry", floatAfter.FloatCents)
	}
	if vendsToday != "2" || revenueToday != "346.84" {
		t.Errorf("dashboard: %s vends today for %s, want 2 for 346.84", vendsToday, revenueToday)
	}
	if krn != "2" {
		t.Errorf("meter page KRN %q after the key change", krn)
	}
	if tokenRows != 7 {
		t.Errorf("tokens table has %d rows, want 7", tokenRows)
	}
	if bars != 1 {
		t.Errorf("chart has %d days with credit, want 1 (today)", bars)
	}

	// The administrator's pages: operators and roles, the audit log.
	h.seal()
	var auditRows, keyRows int
	var apiKey string
	run(t, ctx, "admin pages",
		logout(),
		login("admin", adminPass),
		chromedp.WaitVisible(css(`#nav a[href="#/operators"]`)),
		chromedp.Click(css(`#nav a[href="#/operators"]`)),
		chromedp.WaitVisible(css("#operators table")),
		chromedp.SendKeys(css("#new-username"), "eng1"),
		chromedp.SendKeys(css("#new-display"), "Field engineer"),
		chromedp.SetValue(css("#new-role"), "engineer"),
		chromedp.Click(css(`#operator-form button[type="submit"]`)),
		chromedp.WaitVisible(css("#one-time-password")),
		chromedp.SendKeys(css("#key-operator"), "cashier1"),
		chromedp.SendKeys(css("#key-label"), "OFFICE1 till 2\r"),
		chromedp.WaitVisible(css("#new-api-key")),
		into(&apiKey, chromedp.Text(css("#new-api-key"))),
		chromedp.WaitVisible(css("#api-keys-list table")),
		shot(t, dir, "12-operators"),
		// The registry: a new customer account and a meter for it.
		chromedp.Click(css(`#nav a[href="#/meters"]`)),
		chromedp.WaitVisible(css("#customer-form")),
		chromedp.SendKeys(css("#cust-account"), "ACC-003"),
		chromedp.SendKeys(css("#cust-name"), "Lindiwe Dube"),
		chromedp.SendKeys(css("#cust-area"), "Brixton\r"),
		chromedp.WaitVisible(css("#customer-form .success")),
		chromedp.SendKeys(css("#meter-number"), "600727 0000 0000 0017"),
		chromedp.SendKeys(css("#meter-customer"), "ACC-003"),
		chromedp.SendKeys(css("#meter-area"), "Brixton\r"),
		chromedp.WaitVisible(css("#meter-form .success")),
		shot(t, dir, "13-registry"),
		chromedp.Click(css(`#nav a[href="#/webhooks"]`)),
		chromedp.WaitVisible(css("#hook-form")),
		chromedp.SendKeys(css("#hook-name"), "billing"),
		chromedp.SendKeys(css("#hook-url"), "https://billing.example/hooks/sluice\r"),
		chromedp.WaitVisible(css("#hook-secret")),
		chromedp.WaitVisible(css("#webhook-subscribers table")),
		shot(t, dir, "14-webhooks"),
		chromedp.Click(css(`#nav a[href="#/audit"]`)),
		chromedp.WaitVisible(css("#audit-records table")),
		into(&auditRows, chromedp.Evaluate[int](`document.querySelectorAll("#audit-records tbody tr").length`)),
		into(&keyRows, chromedp.Evaluate[int](`[...document.querySelectorAll("#audit-records tbody tr")].filter(tr => tr.textContent.includes(`+strconv.Quote(keyBefore)+`)).length`)),
		shot(t, dir, "15-audit"))
	// The key issued in the console works for a terminal.
	if code, b := servertest.WithAPIKey(t, h.url, apiKey).Do("GET", "/auth/me", nil); code != 200 {
		t.Errorf("API key from the console: %d %s", code, b)
	}
	var registered server.Meter
	admin.Must(200, "GET", "/meters/600727000000000017", nil, &registered)
	if registered.Customer != "ACC-003" || registered.SupplyGroup != "123457" || registered.Tariff != "DOM-2026" {
		t.Errorf("meter registered in the console: %+v", registered)
	}
	if auditRows < 10 {
		t.Errorf("audit page shows %d records", auditRows)
	}
	// The sale whose answer was lost was recorded once, under the key the
	// browser made for it before the first attempt.
	if keyRows != 1 {
		t.Errorf("the purchase key %s appears in %d audit records, want 1", keyBefore, keyRows)
	}

	// A key-change campaign: the administrator starts it in the console,
	// the head-end runs it, the console shows the meter's tokens and takes
	// the delivery mark.
	var pending, issued, delivered, campaignURL string
	var campaignTokens []tokenView
	run(t, ctx, "campaign",
		chromedp.Click(css(`#nav a[href="#/campaigns"]`)),
		chromedp.WaitVisible(css("#campaign-form")),
		chromedp.SendKeys(css("#camp-name"), "North to KRN 3"),
		chromedp.SendKeys(css("#camp-krn"), "3\r"),
		chromedp.WaitVisible(css(`#campaign-counts td[data-state="pending"]`)),
		into(&pending, chromedp.Text(css(`#campaign-counts td[data-state="pending"]`))),
		into(&campaignURL, chromedp.Location()))
	id, err := strconv.ParseInt(campaignURL[strings.LastIndex(campaignURL, "/")+1:], 10, 64)
	if err != nil || pending != "2" { // both meters of the group
		t.Fatalf("campaign page %s shows %s pending", campaignURL, pending)
	}
	// Dual control: the proposer cannot approve; another operator does.
	var approveOffered bool
	run(t, ctx, "approve campaign",
		chromedp.WaitVisible(css("#campaign-needs-approval")),
		into(&approveOffered, chromedp.Evaluate[bool](`!!document.getElementById("campaign-approve")`)),
		logout(),
		login("sam", "supervisor password one"),
		chromedp.WaitVisible(css("#top")),
		chromedp.Navigate(campaignURL),
		chromedp.WaitVisible(css("#campaign-approve")),
		shot(t, dir, "16-campaign-approval"),
		chromedp.Click(css("#campaign-approve")),
		chromedp.WaitVisible(css("#campaign-approved")),
		logout(),
		login("admin", adminPass),
		chromedp.WaitVisible(css("#top")),
		chromedp.Navigate(campaignURL),
		chromedp.WaitVisible(css("#campaign-counts")))
	if approveOffered {
		t.Errorf("the console offered the proposer to approve its own campaign")
	}
	h.runCampaign(id)
	run(t, ctx, "campaign issued",
		chromedp.Reload(),
		chromedp.WaitVisible(css(`#campaign-counts td[data-state="issued"]`)),
		into(&issued, chromedp.Text(css(`#campaign-counts td[data-state="issued"]`))),
		chromedp.Click(css(`button[data-meter="`+pan+`"]`)),
		chromedp.WaitVisible(css("#campaign-tokens")),
		into(&campaignTokens, chromedp.Evaluate[[]tokenView](strings.ReplaceAll(readTokens, "#receipt #tokens", "#campaign-tokens ol.tokens"))),
		shot(t, dir, "17-campaign"),
		chromedp.Click(css("#mark-delivered")),
		chromedp.WaitVisible(css(`#campaign-tokens[data-state="delivered"]`)),
		into(&delivered, chromedp.Text(css(`#campaign-counts td[data-state="delivered"]`))))
	if issued != "2" || delivered != "1" {
		t.Errorf("campaign counts: issued %s, then delivered %s", issued, delivered)
	}
	if len(campaignTokens) != 4 {
		t.Fatalf("campaign tokens %+v", campaignTokens)
	}
	for i, tk := range campaignTokens {
		if !grouped.MatchString(tk.Digits) || !strings.Contains(tk.Label, fmt.Sprintf("Key change %d of 4", i+1)) {
			t.Errorf("campaign token %d: %q %q", i, tk.Label, tk.Digits)
		}
	}

	// Dual control: the engineer files a request, the supervisor approves
	// it, and only then are its tokens issued.
	var engTokens []tokenView
	run(t, ctx, "engineering",
		logout(),
		login("eve", "engineer password one"),
		chromedp.WaitVisible(css(`#nav a[href="#/engineering"]`)),
		chromedp.Click(css(`#nav a[href="#/engineering"]`)),
		chromedp.WaitVisible(css("#eng-form")),
		chromedp.SendKeys(css("#eng-meter"), pan),
		chromedp.SendKeys(css("#eng-reason"), "magnet tamper flag after a site visit\r"),
		chromedp.WaitVisible(css("#eng-form .success")),
		logout(),
		login("sam", "supervisor password one"),
		chromedp.WaitVisible(css(`#nav a[href="#/engineering"]`)),

		chromedp.Click(css(`#nav a[href="#/engineering"]`)),
		chromedp.WaitVisible(css(`#eng-list button[data-request]`)),
		chromedp.Click(css(`#eng-list button[data-request]`)),
		chromedp.WaitVisible(css("#eng-approve")),
		chromedp.Click(css("#eng-approve")),
		chromedp.WaitVisible(css(`#eng-request[data-state="issued"] ol.tokens`)),
		into(&engTokens, chromedp.Evaluate[[]tokenView](strings.ReplaceAll(readTokens, "#receipt #tokens", "#eng-request ol.tokens"))),
		shot(t, dir, "18-engineering"))
	if len(engTokens) != 1 || engTokens[0].Kind != "engineering" || !grouped.MatchString(engTokens[0].Digits) {
		t.Errorf("engineering tokens %+v", engTokens)
	}

	// A tablet in portrait: the vend screen reflows, the menu folds away.
	var menuShown bool
	run(t, ctx, "tablet",
		logout(),
		login("cashier1", "cashier password one"),
		chromedp.WaitVisible(css("#top")),
		chromedp.EmulateViewport(768, 1024),
		chromedp.Navigate(h.url+"/#/vend"),
		chromedp.WaitVisible(css("#vend-search")),
		into(&menuShown, chromedp.Evaluate[bool](`getComputedStyle(document.getElementById("menu-toggle")).display !== "none"`)),
		chromedp.Click(css("#menu-toggle")),
		chromedp.WaitVisible(css(`#nav.open a[href="#/vend"]`)),
		shot(t, dir, "19-tablet-menu"),
		chromedp.Click(css(`#nav.open a[href="#/vend"]`)),
		chromedp.SendKeys(css("#vend-search"), "ACC-001\r"),
		chromedp.WaitVisible(css(`button.pick[data-meter="`+pan+`"]`)),
		chromedp.Click(css(`button.pick[data-meter="`+pan+`"]`)),
		chromedp.SendKeys(css("#vend-amount"), "20\r"),
		chromedp.WaitVisible(css("#pay-btn")),
		shot(t, dir, "20-tablet-preview"),
		chromedp.Click(css("#pay-btn")),
		chromedp.WaitVisible(css("#receipt")),
		shot(t, dir, "21-tablet-receipt"))
	if !menuShown {
		t.Errorf("no menu button on a tablet")
	}

	// Every page of every role opens without an error: the roles walk the
	// navigation the console gives them.
	run(t, ctx, "desktop", chromedp.EmulateViewport(1280, 900))
	for _, who := range []struct{ user, pass string }{
		{"audrey", "auditor password one"}, {"eve", "engineer password one"}, {"cashier1", "cashier password one"},
		{"sam", "supervisor password one"}, {"admin", adminPass},
	} {
		var links []string
		run(t, ctx, "walk "+who.user,
			logout(),
			login(who.user, who.pass),
			chromedp.WaitVisible(css("#nav a")),
			into(&links, chromedp.Evaluate[[]string](`[...document.querySelectorAll("#nav a")].map(a => a.getAttribute("href"))`)))
		for _, l := range links {
			var errs []string
			run(t, ctx, who.user+" "+l,
				chromedp.Click(css(`#nav a[href="`+l+`"]`)),
				chromedp.WaitVisible(css(`#nav a[href="`+l+`"][aria-current="page"]`)),
				chromedp.WaitVisible(css("main h1")),
				chromedp.WaitVisible(css(`main[aria-busy="false"]`)), // the page's reads are done
				into(&errs, chromedp.Evaluate[[]string](`[...document.querySelectorAll("main .error")].map(e => e.textContent)`)))
			if len(errs) > 0 {
				t.Errorf("%s on %s: %q", who.user, l, errs)
			}
			if who.user == "cashier1" && l == "#/tariffs" {
				run(t, ctx, "tariffs", shot(t, dir, "22-tariffs"))
			}
		}
		t.Logf("%s walked %v", who.user, links)
	}
	probs.check(t)
}

// TestFormatting checks, in the browser, the helpers every money amount and
// token on screen goes through.
func TestFormatting(t *testing.T) {
	ctx, probs := browser(t)
	ts := httptest.NewServer(Handler())
	t.Cleanup(ts.Close)
	type result struct {
		Cents  []any    `json:"cents"`
		Money  []string `json:"money"`
		Tokens []string `json:"tokens"`
		PANs   []string `json:"pans"`
	}
	var got result
	run(t, ctx, "formatting",
		chromedp.Navigate(ts.URL+"/formatting-test"),
		into(&got, chromedp.Evaluate[result](`import("/js/dom.js").then(d => ({
			cents: ["300", "300.5", "300.05", "1 234,50", "0.1", "", "abc", "1.234", "-5", "12345678901"].map(d.parseCents),
			money: [0, 5, 12345, -250, 123456789].map(c => d.money(c)),
			tokens: ["12345678901234567890", "1234 5678 9012 3456 7890"].map(d.groupToken),
			pans: ["600727000000000009", "CARD-1"].map(d.groupPAN),
		}))`, chromedp.EvalAwaitPromise)))
	wantCents := []any{30000.0, 30050.0, 30005.0, 123450.0, 10.0, nil, nil, nil, nil, nil}
	if fmt.Sprint(got.Cents) != fmt.Sprint(wantCents) {
		t.Errorf("parseCents %v, want %v", got.Cents, wantCents)
	}
	if want := []string{"0.00", "0.05", "123.45", "−2.50", "1 234 567.89"}; fmt.Sprint(got.Money) != fmt.Sprint(want) {
		t.Errorf("money %q, want %q", got.Money, want)
	}
	for _, tk := range got.Tokens {
		if tk != "1234 5678 9012 3456 7890" {
			t.Errorf("groupToken %q", tk)
		}
	}
	if fmt.Sprint(got.PANs) != "[600727 0000 0000 0009 CARD-1]" {
		t.Errorf("groupPAN %q", got.PANs)
	}
	probs.check(t)
}

// TestChartFromReadings feeds the meter page's chart code the readings a
// meter reports (a cumulative forward register and its credit in litres)
// and checks the daily consumption it draws.
func TestChartFromReadings(t *testing.T) {
	ctx, probs := browser(t)
	ts := httptest.NewServer(Handler())
	t.Cleanup(ts.Close)
	type bar struct {
		Date   string `json:"date"`
		Litres int    `json:"litres"`
	}
	type drawn struct {
		Consumption []bar `json:"consumption"`
		Credit      []bar `json:"credit"`
		Points      int   `json:"points"`
	}
	var got drawn
	run(t, ctx, "chart",
		chromedp.Navigate(ts.URL+"/chart-test"),
		into(&got, chromedp.Evaluate[drawn](`Promise.all([import("/js/meter.js"), import("/js/chart.js")]).then(([m, c]) => {
			const days = ["2026-11-20", "2026-11-21", "2026-11-22"].map(date => ({ date, credit: 0 }));
			const byDate = new Map(days.map(d => [d.date, d]));
			days[1].credit = 5000;
			m.mergeReadings([
				{ time: "2026-11-20T06:00:00Z", forward: 1000, credit: 9000, unit: 1 },
				{ time: "2026-11-20T20:00:00Z", forward: 1400, credit: 8600, unit: 1 },
				{ time: "2026-11-21T20:00:00Z", forward: 1750, credit: 13250, unit: 1 },
				{ time: "2026-11-22T20:00:00Z", forward: 2250, credit: 12750, unit: 1 },
			], byDate);
			const fig = c.dailyChart(days, { id: "t" });
			document.body.append(fig);
			const bars = cls => [...fig.querySelectorAll("rect." + cls)].map(r => ({ date: r.dataset.date, litres: Number(r.dataset.litres) }));
			return { consumption: bars("bar-consumption"), credit: bars("bar-credit"), points: fig.querySelectorAll("circle.pt-credit").length };
		})`, chromedp.EvalAwaitPromise)),
		chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			png, err := chromedp.Screenshot(css("figure.chart-figure"))(ctx, tg)
			if err == nil {
				p := filepath.Join(artifacts(t), "chart-from-readings.png")
				t.Logf("screenshot %s", p)
				err = os.WriteFile(p, png, 0o644)
			}
			return err
		}))
	want := "[{2026-11-20 400} {2026-11-21 350} {2026-11-22 500}]"
	if fmt.Sprint(got.Consumption) != want {
		t.Errorf("consumption bars %v, want %s", got.Consumption, want)
	}
	if fmt.Sprint(got.Credit) != "[{2026-11-20 0} {2026-11-21 5000} {2026-11-22 0}]" {
		t.Errorf("credit bars %v", got.Credit)
	}
	if got.Points != 3 {
		t.Errorf("%d balance points, want 3", got.Points)
	}
	probs.check(t)
}
