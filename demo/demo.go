// Package demo is `sluice demo`: a scripted end-to-end story that runs the
// real components on a throw-away data directory and says what each step did
// and what it proved. It is both a tour for a new user and a smoke test: any
// step that does not see what it expects fails the whole run.
package demo

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"time"

	"sluice/auth"
	"sluice/config"
	"sluice/headend"
)

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
	client  *http.Client
	step    int
}

func (s *story) say(format string, args ...any) {
	fmt.Fprintf(s.out, "    "+format+"\n", args...)
}

// Run plays the story and returns the first step that failed.
func Run(ctx context.Context, opt Options) error {
	s := &story{out: opt.Out, log: opt.Log, client: &http.Client{Timeout: 10 * time.Second}}
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
	s.he, err = headend.Start(ctx, cfg, s.log, headend.Options{Version: "demo", PasswordParams: &auth.Params{Memory: 8 * 1024, Time: 1, Threads: 1}})
	if err != nil {
		return err
	}
	applied, latest, err := s.he.Store().SchemaVersion(ctx)
	if err != nil {
		return err
	}
	s.say("data directory %s, SQLite schema migrated to version %d of %d", s.dataDir, applied, latest)
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
	for _, p := range []string{"/healthz", "/readyz"} {
		var body map[string]any
		code, err := s.getJSON(ctx, p, &body)
		if err != nil {
			return err
		}
		if code != http.StatusOK {
			return fmt.Errorf("GET %s = %d %v", p, code, body)
		}
		s.say("GET %s -> %d %v", p, code, body)
	}
	return nil
}

func (s *story) stop(ctx context.Context) error {
	err := s.he.Shutdown(ctx)
	s.he = nil
	if err != nil {
		return err
	}
	s.say("server drained and database closed")
	return nil
}

func (s *story) getJSON(ctx context.Context, path string, v any) (int, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", s.he.URL()+path, nil)
	if err != nil {
		return 0, err
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		return resp.StatusCode, fmt.Errorf("GET %s: %w", path, err)
	}
	return resp.StatusCode, nil
}
