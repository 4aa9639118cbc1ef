// Package headend assembles the head-end process from its parts: the store
// chosen by configuration, the HTTP server, and (as they are configured) the
// key manager and the telemetry broker. `sluice serve` and `sluice demo`
// both run it; tests start it on port 0.
//
// Start does everything a first run needs on an empty data directory:
// creates it (mode 0700), creates and migrates the database, and creates the
// bootstrap administrator with a one-time password in a file only the owner
// can read.
package headend

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"sluice/auth"
	"sluice/config"
	"sluice/server"
	"sluice/store/postgres"
	"sluice/store/sqlite"
	"sluice/store/sqlstore"
)

// BootstrapFile is the name, inside the data directory, of the first-run
// administrator credential.
const BootstrapFile = "bootstrap-admin.txt"

// Headend is a running head-end.
type Headend struct {
	cfg      config.Config
	log      *slog.Logger
	store    *sqlstore.DB
	http     *http.Server
	listener net.Listener
	served   chan struct{} // closed when the HTTP server has stopped
	serveErr error

	// BootstrapPassword is the generated administrator password when this
	// start created the administrator, otherwise "".
	BootstrapPassword string
	// BootstrapPath is the file holding it.
	BootstrapPath string
}

// Options adjusts Start for tests and tools.
type Options struct {
	Version string
	// PasswordParams overrides argon2id costs (tests use cheap ones).
	PasswordParams *auth.Params
}

// OpenStore opens the database the configuration names, without migrating.
func OpenStore(ctx context.Context, cfg config.Config) (*sqlstore.DB, error) {
	switch cfg.Database.Driver {
	case "sqlite":
		if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
			return nil, fmt.Errorf("data directory: %w", err)
		}
		return sqlite.Open(ctx, cfg.Database.URL)
	case "postgres":
		return postgres.Open(ctx, cfg.Database.URL, cfg.Database.MaxConns)
	}
	return nil, fmt.Errorf("database.driver %q is not supported", cfg.Database.Driver)
}

// Start brings the head-end up and returns once it is listening.
func Start(ctx context.Context, cfg config.Config, log *slog.Logger, opt Options) (*Headend, error) {
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data directory %s: %w", cfg.DataDir, err)
	}
	db, err := OpenStore(ctx, cfg)
	if err != nil {
		return nil, err
	}
	h := &Headend{cfg: cfg, log: log, store: db, served: make(chan struct{})}
	ok := false
	defer func() {
		if !ok {
			db.Close()
		}
	}()
	n, err := db.Migrate(ctx)
	if err != nil {
		return nil, err
	}
	if n > 0 {
		log.Info("database migrated", "driver", db.Driver(), "migrations", n)
	}
	params := auth.DefaultParams
	if opt.PasswordParams != nil {
		params = *opt.PasswordParams
	}
	h.BootstrapPath = filepath.Join(cfg.DataDir, BootstrapFile)
	if h.BootstrapPassword, err = auth.Bootstrap(ctx, db, h.BootstrapPath, params); err != nil {
		return nil, err
	}

	srv := server.New(server.Config{Store: db, Logger: log, Version: opt.Version})
	h.listener, err = net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	h.http = &http.Server{
		Handler:           srv.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	go func() {
		h.serveErr = h.http.Serve(h.listener)
		close(h.served)
	}()
	ok = true
	log.Info("head-end listening", "url", h.URL(), "database", db.Driver())
	return h, nil
}

// URL is where operators reach the head-end.
func (h *Headend) URL() string {
	if h.cfg.PublicURL != "" {
		return h.cfg.PublicURL
	}
	return "http://" + h.listener.Addr().String()
}

// Addr is the address the HTTP server listens on.
func (h *Headend) Addr() net.Addr { return h.listener.Addr() }

// Store is the open database.
func (h *Headend) Store() *sqlstore.DB { return h.store }

// Done is closed when the HTTP server stops, on its own or by Shutdown;
// Err then tells why.
func (h *Headend) Done() <-chan struct{} { return h.served }

// Err is the HTTP server's error once Done is closed.
func (h *Headend) Err() error {
	<-h.served
	if errors.Is(h.serveErr, http.ErrServerClosed) {
		return nil
	}
	return h.serveErr
}

// Shutdown stops accepting requests, lets in-flight ones finish within the
// configured timeout, then closes the database.
func (h *Headend) Shutdown(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, h.cfg.ShutdownTimeout.Duration)
	defer cancel()
	err := h.http.Shutdown(ctx)
	if serr := h.Err(); err == nil {
		err = serr
	}
	if cerr := h.store.Close(); err == nil {
		err = cerr
	}
	h.log.Info("head-end stopped")
	return err
}
