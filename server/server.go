// Package server is the head-end's HTTP face: the JSON API under /api/v1,
// the operator console, Prometheus metrics and the liveness and readiness
// probes that orchestrators poll.
//
// The server keeps no state of its own between requests: everything lives in
// the store, so any number of replicas can serve behind a load balancer.
package server

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"sluice/auth"
	"sluice/store"
	"sluice/vend"
)

// Config carries the server's dependencies.
type Config struct {
	Store  store.Store
	Auth   *auth.Service
	Vend   *vend.Service
	Logger *slog.Logger
	// Version is reported by /healthz.
	Version string
	// SecureCookies marks the session cookie Secure (HTTPS deployments).
	SecureCookies bool
	// Extra routes contributed by other parts of the head-end (telemetry,
	// reports), registered and documented like the built-in ones.
	Extra []Route
}

// Server is the head-end's HTTP handler.
type Server struct {
	cfg      Config
	log      *slog.Logger
	mux      *http.ServeMux
	registry *prometheus.Registry
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	vends    *prometheus.CounterVec
	logins   *prometheus.CounterVec
	table    []route
}

// New builds the handler and registers every route.
func New(cfg Config) *Server {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		cfg:      cfg,
		log:      cfg.Logger,
		mux:      http.NewServeMux(),
		registry: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sluice_http_requests_total", Help: "HTTP requests by route and status class.",
		}, []string{"route", "code"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "sluice_http_request_duration_seconds", Help: "HTTP request latency by route.",
			Buckets: []float64{.001, .0025, .005, .01, .02, .05, .1, .25, .5, 1, 2.5},
		}, []string{"route"}),
	}
	s.vends = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sluice_vends_total", Help: "Purchases by outcome (sold, replayed, refused).",
	}, []string{"outcome"})
	s.logins = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sluice_logins_total", Help: "Login attempts by outcome.",
	}, []string{"outcome"})
	s.registry.MustRegister(s.requests, s.latency, s.vends, s.logins,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	s.routes()
	return s
}

// Registry is where other parts of the head-end (vending, telemetry)
// register their metrics, so /metrics shows them all.
func (s *Server) Registry() *prometheus.Registry { return s.registry }

// Handler returns the root handler.
func (s *Server) Handler() http.Handler { return s.mux }

func (s *Server) routes() {
	s.handle("GET /healthz", s.healthz)
	s.handle("GET /readyz", s.readyz)
	s.mux.Handle("GET /metrics", promhttp.HandlerFor(s.registry, promhttp.HandlerOpts{}))
	if s.cfg.Auth == nil || s.cfg.Vend == nil {
		return // probes only (tests of the foundation)
	}
	s.table = append(s.apiRoutes(), internalRoutes(s.cfg.Extra)...)
	for _, rt := range s.table {
		s.handle(rt.Method+" /api/v1"+rt.Path, s.serveRoute(rt))
	}
	s.handle("GET /api/v1/openapi.json", s.openAPI)
	s.handle("/api/v1/", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, ErrorBody{Error: apiError{Code: "not_found", Message: "no such API route: " + r.Method + " " + r.URL.Path}})
	})
}

// handle registers h under pattern with request metrics and logging.
func (s *Server) handle(pattern string, h http.HandlerFunc) {
	s.mux.Handle(pattern, s.instrument(pattern, h))
}

func (s *Server) instrument(route string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w, code: http.StatusOK}
		h.ServeHTTP(sw, r)
		d := time.Since(start)
		s.requests.WithLabelValues(route, strconv.Itoa(sw.code/100)+"xx").Inc()
		s.latency.WithLabelValues(route).Observe(d.Seconds())
		if route != "GET /healthz" && route != "GET /readyz" {
			s.log.LogAttrs(r.Context(), slog.LevelInfo, "http",
				slog.String("method", r.Method), slog.String("path", r.URL.Path),
				slog.Int("status", sw.code), slog.Duration("took", d))
		}
	})
}

type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	w.code = code
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// healthz answers while the process runs: liveness, nothing more.
func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok", "version": s.cfg.Version})
}

// readyz answers 200 only when the database is reachable and migrated, so
// a load balancer sends no traffic to a replica that would fail it.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
	defer cancel()
	if err := s.cfg.Store.Ready(ctx); err != nil {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "unavailable", "reason": err.Error()})
		return
	}
	applied, _, _ := s.cfg.Store.SchemaVersion(ctx)
	writeJSON(w, http.StatusOK, map[string]any{"status": "ready", "database": s.cfg.Store.Driver(), "schema_version": applied})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}
