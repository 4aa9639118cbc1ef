// Package demo is `sluice demo`: a scripted end-to-end story that runs the
// real components on a throw-away data directory and says what each step did
// and what it proved. It is both a tour for a new user and a smoke test: any
// step that does not see what it expects fails the whole run.
//
// The story: a head-end starts on embedded defaults; the bootstrap
// administrator logs in and is made to change the one-time password; the key
// ceremony imports a (demo) STS vending key into the sealed key store; the
// registry gets a supply group, a tariff, a vending point, a customer and an
// STS meter, all through the HTTP API; a supervisor records a float deposit; a
// cashier previews and sells water and retries the sale with the same
// idempotency key; a reference meter, provisioned at the "factory" with its
// own decoder key, accepts the tokens and refuses them typed again.
package demo

import (
	"context"
	_ "embed"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"sluice/auth"
	"sluice/client"
	"sluice/config"
	"sluice/headend"
	"sluice/kms/filekms"
	"sluice/vend"
)

//go:embed domestic.json
var demoTariff []byte

// Options configure a run.
type Options struct {
	// DataDir is used and kept when set; otherwise a temporary directory is
	// created and removed.
	DataDir string
	Out     io.Writer
	Log     *slog.Logger
}

// story is shared by the steps of one run.
type story struct {
	out     io.Writer
	log     *slog.Logger
	dataDir string
	he      *headend.Headend
	step    int

	admin, supervisor, cashier *client.Client
	receipt                    vend.Receipt
}

func (s *story) say(format string, args ...any) {
	fmt.Fprintf(s.out, "    "+format+"\n", args...)
}

// Run plays the story and returns the first step that failed.
func Run(ctx context.Context, opt Options) error {
	s := &story{out: opt.Out, log: opt.Log}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.dataDir = opt.DataDir
	if s.dataDir == "" {
		dir, err := os.MkdirTemp("", "sluice-demo-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		s.dataDir = dir
	}
	steps := []struct {
		title string
		run   func(context.Context) error
	}{
		{"Create the store and start the head-end on embedded defaults", s.start},
		{"Probe liveness and readiness", s.probe},
		{"First login: the bootstrap administrator must change the one-time password", s.firstLogin},
		{"Key ceremony: import the supply group's STS vending key into the sealed key store", s.importKeys},
		{"Registry through the API: supply group, tariff, vending point, customer, meter, staff", s.registry},
		{"A supervisor records the vending point's float deposit", s.deposit},
		{"A cashier previews the tariff breakdown and sells water", s.sell},
		{"The till retries after a timeout with the same idempotency key", s.retry},
		{"The customer types the tokens into the meter", s.meter},
		{"Stop the head-end gracefully", s.stop},
	}
	defer func() {
		if s.he != nil {
			s.he.Shutdown(context.Background())
		}
	}()
	for _, st := range steps {
		s.step++
		fmt.Fprintf(s.out, "%d. %s\n", s.step, st.title)
		if err := st.run(ctx); err != nil {
			return fmt.Errorf("step %d (%s): %w", s.step, st.title, err)
		}
	}
	fmt.Fprintf(s.out, "Demo finished: %d steps passed.\n", s.step)
	return nil
}

func (s *story) start(ctx context.Context) error {
	cfg, err := config.Load("", nil, []config.Override{
		{Key: "data_dir", Value: s.dataDir, Source: "demo"},
		{Key: "listen", Value: "127.0.0.1:0", Source: "demo"},
		{Key: "mqtt.mode", Value: "off", Source: "demo"},
	})
	if err != nil {
		return err
	}
	s.he, err = headend.Start(ctx, cfg, s.log, headend.Options{
		Version:        "demo",
		PasswordParams: &auth.Params{Memory: 8 * 1024, Time: 1, Threads: 1},
		KMSOptions:     filekms.Options{Time: 1, MemoryKiB: 8 * 1024, Threads: 1},
	})
	if err != nil {
		return err
	}
	applied, latest, err := s.he.Store().SchemaVersion(ctx)
	if err != nil {
		return err
	}
	s.say("data directory %s, SQLite schema migrated to version %d of %d", s.dataDir, applied, latest)
	s.say("sealed key store %s created with a generated passphrase (mode 0600)", cfg.KMS.File)
	s.say("listening at %s", s.he.URL())
	if s.he.BootstrapPassword == "" {
		return fmt.Errorf("no bootstrap administrator was created on an empty store")
	}
	fi, err := os.Stat(s.he.BootstrapPath)
	if err != nil {
		return err
	}
	if fi.Mode().Perm() != 0o600 {
		return fmt.Errorf("bootstrap credential %s has mode %v, want 0600", s.he.BootstrapPath, fi.Mode().Perm())
	}
	s.say("bootstrap administrator %q created; its one-time password is in %s (mode %v)", auth.BootstrapUsername, s.he.BootstrapPath, fi.Mode().Perm())
	return nil
}

func (s *story) probe(ctx context.Context) error {
	c := client.New(s.he.URL())
	for _, p := range []string{"/healthz", "/readyz"} {
		body, err := c.Probe(ctx, p)
		if err != nil {
			return err
		}
		s.say("GET %s -> 200 %v", p, body)
	}
	return nil
}

func (s *story) firstLogin(ctx context.Context) error {
	raw, err := os.ReadFile(s.he.BootstrapPath)
	if err != nil {
		return err
	}
	var user, pass string
	for _, line := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, "username: "); ok {
			user = v
		}
		if v, ok := strings.CutPrefix(line, "password: "); ok {
			pass = v
		}
	}
	s.admin = client.New(s.he.URL())
	if _, err := s.admin.Login(ctx, user, pass); err != nil {
		return err
	}
	_, err = s.admin.Do(ctx, "GET", "/operators", nil, nil)
	e, err := refused(err, client.ErrPasswordChangeRequired)
	if err != nil {
		return fmt.Errorf("GET /api/v1/operators with the one-time password: %w", err)
	}
	s.say("logged in as %s; GET /api/v1/operators -> %d %s", user, e.Status, e.Code)
	if err := s.admin.ChangePassword(ctx, pass, "demo administrator password"); err != nil {
		return err
	}
	if _, err := s.admin.Do(ctx, "GET", "/operators", nil, nil); err != nil {
		return err
	}
	s.say("password changed; the administrator may now work")
	return nil
}
