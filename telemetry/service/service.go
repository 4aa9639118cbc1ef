// Package service assembles the head-end's telemetry: the broker (embedded
// or external), the ingest, revenue protection, the wM-Bus gateways and the
// remote top-up of AMI meters, started and stopped with the head-end.
//
// # Remote top-up
//
// A purchase for an AMI meter stores a signed voucher (package vend,
// store.Token.Voucher). The delivery loop publishes every undelivered voucher
// on the meter's downlink topic (sluice/v1/m/{meter}/down/voucher, QoS 1, not
// retained) and records the attempt; it publishes again with exponential
// back-off (RetryMin doubling to RetryMax) until the meter's acknowledgement
// (an ack frame, subject voucher, Ref = sequence) arrives. An ack that says
// accepted or duplicate marks the voucher delivered (store Tokens.MarkDelivered)
// and closes it; one that says rejected stops the retries and raises an
// alert. A voucher delivered twice is harmless: the meter's sequence window
// answers Duplicate. Operators see what is still pending through
// GET /api/v1/downlinks/pending.
package service

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"sluice/kms"
	"sluice/protect"
	"sluice/server"
	"sluice/store"
	"sluice/telemetry/broker"
	"sluice/telemetry/frame"
	"sluice/telemetry/ingest"
	"sluice/telemetry/topic"
)

// Config is the telemetry part of the head-end's configuration.
type Config struct {
	// Mode is embedded (default), external or off (config mqtt.mode).
	Mode string
	// Listen is the embedded broker's address (mqtt.listen).
	Listen string
	// URL, Username, Password and ClientID reach an external broker
	// (mqtt.url, mqtt.username, mqtt.password, mqtt.client_id).
	URL, Username, Password, ClientID string
	// Gateways are the wM-Bus gateways' credentials on the embedded
	// broker: gateway ID (its username) -> password.
	Gateways map[string]string
	// Prefix is prepended to every topic (tests only).
	Prefix string

	// Ingest tuning; zero values take the ingest's defaults, except
	// Workers, which defaults to 1 on SQLite and 4 on PostgreSQL.
	Workers   int
	BatchSize int
	QueueSize int

	// RetryMin and RetryMax bound the back-off between publications of an
	// unacknowledged voucher. Defaults 1 minute and 6 hours.
	RetryMin, RetryMax time.Duration
	// DeliverEvery is how often the delivery loop looks for vouchers to
	// send. Default 10 seconds.
	DeliverEvery time.Duration
	// ProtectEvery is how often the fleet-wide rules run. Default 15 minutes.
	ProtectEvery time.Duration
	// Thresholds tune revenue protection.
	Thresholds protect.Thresholds
}

// Deps are the head-end parts the service uses.
type Deps struct {
	Store store.Store
	KMS   kms.KeyManager
	// Registerer receives the metrics; nil leaves them for Register.
	Registerer prometheus.Registerer
	Logger     *slog.Logger
	Now        func() time.Time
}

// Service is the running telemetry.
type Service struct {
	cfg  Config
	deps Deps
	log  *slog.Logger

	Directory *ingest.KMSDirectory
	Ingest    *ingest.Ingest
	Protect   *protect.Service
	WMBus     *ingest.WMBus
	Broker    broker.Broker

	cancel context.CancelFunc
	wg     sync.WaitGroup
	kick   chan struct{}
}

// New assembles the service; Start connects it.
func New(cfg Config, deps Deps) (*Service, error) {
	if deps.Store == nil || deps.KMS == nil {
		return nil, errors.New("telemetry: Store and KMS are required")
	}
	if cfg.Mode == "" {
		cfg.Mode = "embedded"
	}
	switch cfg.Mode {
	case "embedded", "external", "off":
	default:
		return nil, fmt.Errorf("telemetry: mqtt.mode %q is not one of embedded, external, off", cfg.Mode)
	}
	if deps.Now == nil {
		deps.Now = time.Now
	}
	if cfg.RetryMin == 0 {
		cfg.RetryMin = time.Minute
	}
	if cfg.RetryMax == 0 {
		cfg.RetryMax = 6 * time.Hour
	}
	if cfg.DeliverEvery == 0 {
		cfg.DeliverEvery = 10 * time.Second
	}
	if cfg.ProtectEvery == 0 {
		cfg.ProtectEvery = 15 * time.Minute
	}
	if cfg.Workers == 0 {
		cfg.Workers = 1
		if deps.Store.Driver() == "postgres" {
			cfg.Workers = 4
		}
	}
	log := deps.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	s := &Service{cfg: cfg, deps: deps, log: log, kick: make(chan struct{}, 1)}
	s.Directory = ingest.NewKMSDirectory(deps.Store, deps.KMS)
	s.Protect = protect.New(protect.Config{Store: deps.Store, Thresholds: cfg.Thresholds, Now: deps.Now, Logger: log})
	s.WMBus = ingest.NewWMBus(deps.Store, deps.KMS, deps.Now)
	s.WMBus.OnDefaultKey = func(ctx context.Context, meterID int64, address, keyName string) {
		err := s.Protect.Raise(ctx, meterID, "wmbus:"+address, protect.Finding{Rule: protect.RuleDefaultKey, Severity: "critical",
			Summary: fmt.Sprintf("wM-Bus meter %s uses the published default key %s: its readings are neither secret nor authentic; change its key", address, keyName),
			Details: map[string]any{"address": address, "default_key": keyName, "suggest": "key-change"}})
		if err != nil {
			log.Error("alert", "err", err)
		}
	}
	in, err := ingest.New(ingest.Config{Store: deps.Store, Directory: s.Directory, Registerer: deps.Registerer, Logger: log, Now: deps.Now,
		Workers: cfg.Workers, BatchSize: cfg.BatchSize, QueueSize: cfg.QueueSize, WMBus: s.WMBus,
		OnStored: s.stored, OnReused: s.reused})
	if err != nil {
		return nil, err
	}
	s.Ingest = in
	return s, nil
}

// Register adds the telemetry metrics to r, for a registry that exists only
// after New (the HTTP server's, which needs Routes first).
func (s *Service) Register(r prometheus.Registerer) error { return s.Ingest.Register(r) }

// Start creates the coming months' reading partitions, starts the broker
// (or connects to it), the ingest and the background loops.
func (s *Service) Start(ctx context.Context) error {
	if err := s.ensurePartitions(ctx); err != nil {
		return err
	}
	bg, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.cancel = cancel
	s.Ingest.Start(bg)
	switch s.cfg.Mode {
	case "embedded":
		e, err := broker.NewEmbedded(broker.EmbeddedConfig{Listen: s.cfg.Listen, Prefix: s.cfg.Prefix, Auth: authenticator{s}, Logger: s.log})
		if err != nil {
			s.stop()
			return err
		}
		s.Broker = e
		s.log.Info("embedded MQTT broker listening", "addr", e.Addr())
	case "external":
		c, err := broker.Dial(ctx, broker.ClientConfig{URL: s.cfg.URL, Username: s.cfg.Username, Password: s.cfg.Password,
			ClientID: s.cfg.ClientID, Prefix: s.cfg.Prefix, Logger: s.log})
		if err != nil {
			s.stop()
			return err
		}
		s.Broker = c
	case "off":
		s.log.Info("telemetry off (mqtt.mode = off)")
		return nil
	}
	if err := s.Broker.Subscribe(ctx, []string{topic.Uplinks, topic.WMBus}, s.Ingest.Handle); err != nil {
		s.stop()
		return err
	}
	s.loop(bg, s.cfg.DeliverEvery, func(ctx context.Context) {
		if err := s.Deliver(ctx); err != nil {
			s.log.Error("voucher delivery", "err", err)
		}
	})
	s.loop(bg, s.cfg.ProtectEvery, func(ctx context.Context) {
		if err := s.Protect.Periodic(ctx); err != nil {
			s.log.Error("revenue protection", "err", err)
		}
	})
	s.loop(bg, 24*time.Hour, func(ctx context.Context) {
		if err := s.ensurePartitions(ctx); err != nil {
			s.log.Error("readings partitions", "err", err)
		}
	})
	return nil
}

func (s *Service) loop(ctx context.Context, every time.Duration, fn func(context.Context)) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			fn(ctx)
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			case <-s.kick:
			}
		}
	}()
}

func (s *Service) ensurePartitions(ctx context.Context) error {
	now := s.deps.Now().UTC()
	return s.deps.Store.Tx(ctx, func(tx store.Tx) error {
		return tx.Telemetry().EnsureReadingPartitions(ctx, now.AddDate(0, -1, 0), 4)
	})
}

func (s *Service) stop() {
	if s.cancel != nil {
		s.cancel()
	}
	s.Ingest.Close()
	s.wg.Wait()
}

// Close stops the broker first (no new messages), then the ingest (queued
// frames stay unacknowledged and are delivered again) and the loops.
func (s *Service) Close() error {
	var err error
	if s.Broker != nil {
		err = s.Broker.Close()
	}
	s.stop()
	return err
}

// Kick makes the delivery loop run now (after a purchase).
func (s *Service) Kick() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// Routes are the telemetry API routes: alerts and pending downlinks.
func (s *Service) Routes() []server.Route {
	return append(protect.Routes(s.Protect), downlinkRoutes(s)...)
}

// stored runs after each committed batch: revenue protection on every
// frame, key reports confirm key-change campaigns, and voucher
// acknowledgements close their deliveries.
func (s *Service) stored(ctx context.Context, frames []ingest.StoredFrame) {
	for _, sf := range frames {
		if err := s.Protect.Observe(ctx, sf.Meter.ID, sf.Meter.Number, sf.Frame); err != nil {
			s.log.Error("revenue protection", "meter", sf.Meter.Number, "err", err)
		}
		s.confirmKeys(ctx, sf.Meter.ID, sf.Meter.Number, sf.Frame)
		if sf.Frame.Kind == frame.KindAck && sf.Frame.Ack.Subject == frame.SubjectVoucher {
			if err := s.acknowledged(ctx, sf.Meter, sf.Frame.Ack); err != nil {
				s.log.Error("voucher acknowledgement", "meter", sf.Meter.Number, "seq", sf.Frame.Ack.Ref, "err", err)
			}
		}
	}
}

func (s *Service) reused(ctx context.Context, m ingest.Meter, counter uint32) {
	err := s.Protect.Raise(ctx, m.ID, "meter:"+strconv.FormatUint(m.Number, 10), protect.Finding{Rule: protect.RuleCounterReuse, Severity: store.SeverityCritical,
		Summary: fmt.Sprintf("meter %d sent two different authentic frames under counter %d: a cloned meter (its telemetry key is out) or a rolled-back counter", m.Number, counter),
		Details: map[string]any{"counter": counter, "suggest": "key-change"}})
	if err != nil {
		s.log.Error("alert", "err", err)
	}
}

// acknowledged closes (or, when rejected, abandons) a voucher's delivery.
func (s *Service) acknowledged(ctx context.Context, m ingest.Meter, a frame.Ack) error {
	now := s.deps.Now().UTC()
	seq := int64(a.Ref)
	return s.deps.Store.Tx(ctx, func(tx store.Tx) error {
		if a.Result == frame.Rejected {
			err := tx.Telemetry().VoucherRejected(ctx, m.ID, seq, fmt.Sprintf("rejected by the meter, reason %d", a.Reason), now)
			if errors.Is(err, store.ErrNotFound) {
				return nil // a voucher not issued by this head-end (a card's): nothing to close
			}
			return err
		}
		first, err := tx.Tokens().MarkDelivered(ctx, m.ID, seq, now)
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		if err != nil || !first {
			return err
		}
		return tx.Audit().Append(ctx, store.AuditRecord{At: now, Actor: "system", Action: "voucher.delivered",
			Object: fmt.Sprintf("meter:%d", m.Number), Details: fmt.Appendf(nil, `{"voucher_seq":%d,"result":%d}`, seq, a.Result)})
	})
}

// Deliver publishes every voucher that is due (never sent, or its back-off
// over) and records the attempts. It is the delivery loop's body.
func (s *Service) Deliver(ctx context.Context) error {
	if s.Broker == nil {
		return nil
	}
	now := s.deps.Now().UTC()
	var due []store.PendingVoucher
	err := s.deps.Store.Read(ctx, func(tx store.Tx) error {
		var err error
		due, err = tx.Telemetry().PendingVouchers(ctx, now, 500)
		return err
	})
	if err != nil {
		return err
	}
	for _, p := range due {
		n, err := strconv.ParseUint(p.Number, 10, 64)
		if err != nil {
			continue // not a numeric AMI meter: it cannot have a topic
		}
		errText := ""
		pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		if err := s.Broker.Publish(pctx, topic.ForMeter(n, topic.Voucher), p.Voucher); err != nil {
			errText = err.Error()
		}
		cancel()
		next := now.Add(s.backoff(p.Attempts))
		err = s.deps.Store.Tx(ctx, func(tx store.Tx) error {
			return tx.Telemetry().VoucherAttempt(ctx, p.TokenID, now, next, errText)
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// backoff is RetryMin doubled per previous attempt, capped at RetryMax.
func (s *Service) backoff(attempts int) time.Duration {
	d := s.cfg.RetryMin
	for range attempts {
		d *= 2
		if d >= s.cfg.RetryMax {
			return s.cfg.RetryMax
		}
	}
	return d
}

// authenticator admits meters (ingest.KMSDirectory) and the configured
// wM-Bus gateways to the embedded broker.
type authenticator struct{ s *Service }

func (a authenticator) Authenticate(ctx context.Context, user string, pw []byte) (broker.ACL, error) {
	if want, ok := a.s.cfg.Gateways[user]; ok {
		if want == "" || subtle.ConstantTimeCompare([]byte(want), pw) != 1 {
			return broker.ACL{}, broker.ErrAuth
		}
		pub, err := topic.GatewayACL(user)
		if err != nil {
			return broker.ACL{}, fmt.Errorf("%w: %v", broker.ErrAuth, err)
		}
		return broker.ACL{Publish: pub}, nil
	}
	return a.s.Directory.Authenticate(ctx, user, pw)
}
