package headend

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"sluice/auditlog"
	"sluice/auth"
	"sluice/config"
	"sluice/kms/filekms"
	"sluice/server/servertest"
)

func testConfig(t *testing.T, dir string, extra ...config.Override) config.Config {
	t.Helper()
	o := append([]config.Override{
		{Key: "data_dir", Value: dir}, {Key: "listen", Value: "127.0.0.1:0"}, {Key: "mqtt.mode", Value: "off"},
	}, extra...)
	cfg, err := config.Load("", nil, o)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

var opts = Options{PasswordParams: &auth.Params{Memory: 64, Time: 1, Threads: 1}, KMSOptions: filekms.Options{Time: 1, MemoryKiB: 64, Threads: 1}}

func TestFirstRunThenRestart(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "data")
	// The embedded defaults, broker included (on a free port).
	cfg := testConfig(t, dir, config.Override{Key: "mqtt.mode", Value: "embedded"}, config.Override{Key: "mqtt.listen", Value: "127.0.0.1:0"})
	h, err := Start(ctx, cfg, slog.New(slog.DiscardHandler), opts)
	if err != nil {
		t.Fatal(err)
	}
	if h.BootstrapPassword == "" {
		t.Fatal("first run made no bootstrap administrator")
	}
	for _, f := range []string{"sluice.db", "keys.sealed", "kms.passphrase", BootstrapFile} {
		fi, err := os.Stat(filepath.Join(dir, f))
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if fi.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s is readable by others: %v", f, fi.Mode().Perm())
		}
	}
	if fi, _ := os.Stat(dir); fi.Mode().Perm() != 0o700 {
		t.Errorf("data directory mode %v, want 0700", fi.Mode().Perm())
	}
	resp, err := http.Get(h.URL() + "/readyz")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("readyz: %v %v", resp, err)
	}
	resp.Body.Close()
	// What operators monitor is there from the start.
	resp, err = http.Get(h.URL() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, m := range []string{"sluice_store_commits_total", "sluice_store_write_transactions_total", "sluice_audit_", "sluice_telemetry_frames_total", "sluice_http_requests_total"} {
		if !strings.Contains(string(metrics), m) {
			t.Errorf("/metrics lacks %s", m)
		}
	}
	if err := h.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	h2, err := Start(ctx, cfg, slog.New(slog.DiscardHandler), opts)
	if err != nil {
		t.Fatalf("restart: %v", err)
	}
	defer h2.Shutdown(ctx)
	if h2.BootstrapPassword != "" {
		t.Error("restart created a second bootstrap administrator")
	}
}

func TestRefusesAWrongPassphraseAndTheMissingOne(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "data")
	h, err := Start(ctx, testConfig(t, dir), slog.New(slog.DiscardHandler), opts)
	if err != nil {
		t.Fatal(err)
	}
	h.Shutdown(ctx)
	_, err = Start(ctx, testConfig(t, dir, config.Override{Key: "kms.passphrase", Value: "not the one"}), slog.New(slog.DiscardHandler), opts)
	if !errors.Is(err, filekms.ErrWrongPassphrase) {
		t.Fatalf("wrong passphrase: %v", err)
	}
	// The store exists but its passphrase file is gone: never generate a
	// new one over an existing key store.
	os.Remove(filepath.Join(dir, "kms.passphrase"))
	if _, err := Start(ctx, testConfig(t, dir), slog.New(slog.DiscardHandler), opts); err == nil {
		t.Fatal("started without the key store's passphrase")
	}
}

func TestAuditVerifyRoute(t *testing.T) {
	ctx := context.Background()
	h, err := Start(ctx, testConfig(t, filepath.Join(t.TempDir(), "data")), slog.New(slog.DiscardHandler), opts)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Shutdown(ctx)
	admin := servertest.Login(t, h.URL(), "admin", h.BootstrapPassword)
	admin.Must(200, "POST", "/auth/password", map[string]string{"current_password": h.BootstrapPassword, "new_password": "a new admin password"}, nil)
	// The login and the password change were audited; the head-end's
	// sealer chains them within a few seconds, with anchors.
	var rep auditlog.Report
	for deadline := time.Now().Add(15 * time.Second); ; {
		rep = auditlog.Report{}
		admin.Must(200, "GET", "/audit/verify", nil, &rep)
		if !rep.OK {
			t.Fatalf("verify: %+v", rep)
		}
		if rep.Records >= 2 || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if rep.Records < 2 || rep.Anchored == 0 || !rep.AnchorsChecked {
		t.Fatalf("report %+v: the sealer did not chain and anchor the records", rep)
	}
}
