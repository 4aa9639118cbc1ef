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
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"sluice/auditlog"
	"sluice/auth"
	"sluice/campaign"
	"sluice/campaign/campaignapi"
	"sluice/channel"
	"sluice/config"
	"sluice/console"
	"sluice/kms"
	"sluice/kms/filekms"
	"sluice/report"
	"sluice/server"
	"sluice/store/postgres"
	"sluice/store/sqlite"
	"sluice/store/sqlstore"
	"sluice/telemetry/broker"
	telemetry "sluice/telemetry/service"
	"sluice/vend"
	"sluice/vend/engineeringapi"
	"sluice/webhook"
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

	km   kms.KeyManager
	auth *auth.Service
	vend *vend.Service
	tel  *telemetry.Service
	// Background work stops in order: the workers (webhooks, telemetry)
	// first, then the key-use recorder flushes, then the audit sealer chains
	// what was flushed.
	stopWorkers, stopRecorder, stopSealer context.CancelFunc
	workers, recorder, sealer             sync.WaitGroup
}

// Options adjusts Start for tests and tools.
type Options struct {
	Version string
	// PasswordParams overrides argon2id costs (tests use cheap ones).
	PasswordParams *auth.Params
	// KMSOptions tunes the sealed key store (tests lower its cost).
	KMSOptions filekms.Options
	// Now is the clock of vending; nil means time.Now.
	Now func() time.Time
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

	km, err := OpenKMS(ctx, cfg, opt.KMSOptions)
	if err != nil {
		return nil, err
	}
	defer func() {
		if !ok {
			km.Close()
		}
	}()
	rec := &kmsRecorder{st: db, log: log}
	h.km = kms.WithAudit(km, rec)
	h.auth = auth.NewService(db, params, opt.Now)
	loc, err := cfg.Location()
	if err != nil {
		return nil, fmt.Errorf("timezone: %w", err)
	}
	h.vend = vend.New(vend.Config{Store: db, Keys: vend.KMSKeys{KM: h.km}, Now: opt.Now, Location: loc, Logger: log})
	workCtx, stopWork := context.WithCancel(context.Background())
	recCtx, stopRec := context.WithCancel(context.Background())
	sealCtx, stopSeal := context.WithCancel(context.Background())
	h.stopWorkers, h.stopRecorder, h.stopSealer = stopWork, stopRec, stopSeal
	h.recorder.Go(func() { rec.run(recCtx, 500*time.Millisecond) })
	h.sealer.Go(func() { auditlog.RunSealer(sealCtx, db, auditlog.SealerOptions{KMS: h.km, Logger: log}) })
	defer func() {
		if !ok {
			h.stopBackground()
		}
	}()

	// Reports, payment channels and webhooks join the API.
	box, err := webhook.NewBox(ctx, h.km)
	if err != nil {
		return nil, fmt.Errorf("webhook secrets: %w", err)
	}
	rep := report.New(db, loc, opt.Now)
	ch := channel.New(db, h.vend, opt.Now, "")
	camp := campaign.New(campaign.Config{Store: db, Vend: h.vend, KM: h.km, Now: opt.Now, Logger: log})
	// Telemetry: the broker (embedded or external), ingest, revenue
	// protection and remote top-up delivery.
	tel, err := telemetry.New(telemetry.Config{Mode: cfg.MQTT.Mode, Listen: cfg.MQTT.Listen, URL: cfg.MQTT.URL,
		Username: cfg.MQTT.Username, Password: cfg.MQTT.Password, ClientID: cfg.MQTT.ClientID},
		telemetry.Deps{Store: db, KMS: h.km, Logger: log, Now: opt.Now})
	if err != nil {
		return nil, fmt.Errorf("telemetry: %w", err)
	}
	extra := slices.Concat(report.Routes(rep), channel.Routes(ch), webhook.Routes(webhook.NewAdmin(db, box, opt.Now)),
		engineeringapi.Routes(h.vend), campaignapi.Routes(camp), tel.Routes(), auditRoutes(db, h.km))
	h.workers.Go(func() { webhook.New(webhook.Config{Store: db, Logger: log, Box: box}).Run(workCtx) })

	srv := server.New(server.Config{Store: db, Auth: h.auth, Vend: h.vend, Logger: log, Version: opt.Version, Extra: extra})
	srv.Registry().MustRegister(auditlog.NewCollector(db),
		// SQLite group commit: transactions over commits is the mean batch
		// each fsync carried.
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "sluice_store_write_transactions_total",
			Help: "Write transactions committed through group commit (SQLite)."}, func() float64 { t, _ := db.GroupStats(); return float64(t) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "sluice_store_commits_total",
			Help: "Database commits (fsyncs) group commit made for them (SQLite)."}, func() float64 { _, c := db.GroupStats(); return float64(c) }))
	if err := tel.Register(srv.Registry()); err != nil {
		return nil, err
	}
	if err := tel.Start(ctx); err != nil {
		return nil, fmt.Errorf("telemetry: %w", err)
	}
	h.tel = tel
	h.workers.Go(func() { <-workCtx.Done(); tel.Close() })
	mux := http.NewServeMux()
	mux.Handle("GET /api/v1/reports/{name}/export", rep.ExportHandler(h.auth))
	// The operator console at /, the API and probes beside it.
	mux.Handle("/", console.Mount(srv.Handler()))
	h.listener, err = net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	h.http = &http.Server{
		Handler:           mux,
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

func (h *Headend) stopBackground() {
	h.stopWorkers()
	h.workers.Wait()
	h.stopRecorder()
	h.recorder.Wait()
	h.stopSealer()
	h.sealer.Wait()
}

// MQTTAddr is the embedded broker's address, or "" when the head-end uses
// an external broker or none.
func (h *Headend) MQTTAddr() string {
	if e, ok := h.tel.Broker.(*broker.Embedded); ok {
		return e.Addr()
	}
	return ""
}

// Vend is the vending service.
func (h *Headend) Vend() *vend.Service { return h.vend }

// Auth is the operator service.
func (h *Headend) Auth() *auth.Service { return h.auth }

// KMS is the key manager (audited).
func (h *Headend) KMS() kms.KeyManager { return h.km }

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
	h.stopBackground()
	if kerr := h.km.Close(); err == nil {
		err = kerr
	}
	if cerr := h.store.Close(); err == nil {
		err = cerr
	}
	h.log.Info("head-end stopped")
	return err
}
