// Package protect is Sluice's revenue protection: it reads what meters say
// about themselves and raises alerts where that disagrees with what was sold
// or with how water behaves.
//
// Forged cards, dumped meters and ghost vending all leave one trace: credit
// on a meter that nobody paid for. The strongest rule therefore reconciles,
// per meter, the credit the meter reports as loaded since manufacture (every
// reading and every voucher acknowledgement carries it, under the meter's
// MAC) against the credit vended for it (the ledger's credit:<meter> memo
// account, in litres). The other rules watch for the ways water is stolen
// without forging credit: flow with the valve closed, reverse flow, magnets
// and opened covers, token guessing, meters that go silent, and consumption
// that drops far below the meter's own history or its neighbours' (a bypass).
//
// The rules themselves (rules.go) are pure functions of a meter's previous
// state and its new frame, so they are tested without a database. Service
// keeps each meter's state in memory, runs the rules on every stored frame
// (Observe, called by the ingest after its commit) and periodically over the
// whole fleet (Periodic: silence and bypass), and turns findings into alerts.
// Alerts have a life cycle (open, acknowledged, resolved with a note), one
// live alert per meter and rule; a rule that keeps firing refreshes the live
// alert (count, last time) at most once per Thresholds.Repeat. Every opening,
// acknowledgement and resolution is in the audit log.
//
// docs/revenue-protection.md describes each rule, its thresholds and its
// false positives.
package protect

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"sluice/ledger"
	"sluice/store"
	"sluice/telemetry/frame"
)

// Config configures a Service.
type Config struct {
	Store      store.Store
	Thresholds Thresholds
	Now        func() time.Time
	Logger     *slog.Logger
	// Kinds are the meter kinds the periodic rules watch. Default: AMI.
	Kinds []string
}

// Service runs the rules and keeps the alerts.
type Service struct {
	cfg Config
	th  Thresholds
	log *slog.Logger

	mu     sync.Mutex
	meters map[int64]*State
	raised map[alertKey]time.Time
}

type alertKey struct {
	meter int64
	rule  string
}

// New returns a Service.
func New(cfg Config) *Service {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if len(cfg.Kinds) == 0 {
		cfg.Kinds = []string{store.MeterAMI}
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return &Service{cfg: cfg, th: cfg.Thresholds.withDefaults(), log: log, meters: make(map[int64]*State), raised: make(map[alertKey]time.Time)}
}

// Observe runs the per-frame rules on a frame the ingest stored for meter
// (store ID meterID, number number). It is safe for concurrent use.
func (s *Service) Observe(ctx context.Context, meterID int64, number uint64, f *frame.Frame) error {
	num := strconv.FormatUint(number, 10)
	s.mu.Lock()
	st, ok := s.meters[meterID]
	if !ok {
		st = new(State)
		s.meters[meterID] = st
	}
	prev := *st
	var findings []Finding
	var loaded uint64
	var unit frame.Unit
	check := false
	switch f.Kind {
	case frame.KindReading:
		var next State
		next, findings = Reading(s.th, prev, num, f.Reading)
		next.Rejection = prev.Rejection
		loaded, unit = f.Reading.Loaded, f.Reading.Unit
		// Reconcile when the loaded register moved (and on first sight):
		// it only moves when credit arrives, so this costs one ledger
		// query per top-up, not per reading.
		check = !prev.Seen || loaded != prev.Loaded
		next.Loaded = loaded
		*st = next
	case frame.KindEvent:
		*st, findings = Events(s.th, prev, num, f.Events)
	case frame.KindAck:
		findings = Ack(num, f.Ack)
		if f.Ack.Loaded != prev.Loaded {
			loaded, unit, check = f.Ack.Loaded, prev.Unit, true
			if unit == 0 {
				unit = frame.UnitLitres
			}
			st.Loaded = f.Ack.Loaded
		}
	}
	s.mu.Unlock()
	if check {
		vended, err := s.Vended(ctx, num)
		if err != nil {
			return err
		}
		if fd, ok := Unsold(s.th, num, unit, loaded, vended); ok {
			findings = append(findings, fd)
		}
	}
	for _, fd := range findings {
		if err := s.Raise(ctx, meterID, "meter:"+num, fd); err != nil {
			return err
		}
	}
	return nil
}

// Vended is the litres vended for a meter: the balance of the ledger's
// credit:<meter> memo account (purchases debit it, reversals credit it).
func (s *Service) Vended(ctx context.Context, number string) (int64, error) {
	var v int64
	err := s.cfg.Store.Read(ctx, func(tx store.Tx) error {
		var err error
		v, err = tx.Ledger().Balance(ctx, "credit:"+number, ledger.UnitLitres)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("protect: credit vended for meter %s: %w", number, err)
	}
	return v, nil
}

// Raise opens an alert for a finding, or refreshes the live one (at most
// once per Thresholds.Repeat while it keeps firing). meterID may be 0 for
// subjects that are not meters.
func (s *Service) Raise(ctx context.Context, meterID int64, subject string, f Finding) error {
	now := s.cfg.Now().UTC()
	k := alertKey{meterID, f.Rule}
	if meterID == 0 {
		k.rule = subject + "/" + f.Rule
	}
	s.mu.Lock()
	last, ok := s.raised[k]
	if ok && now.Sub(last) < s.th.Repeat {
		s.mu.Unlock()
		return nil
	}
	s.raised[k] = now
	s.mu.Unlock()
	details, err := json.Marshal(f.Details)
	if err != nil || f.Details == nil {
		details = []byte("{}")
	}
	err = s.cfg.Store.Tx(ctx, func(tx store.Tx) error {
		a, isNew, err := tx.Alerts().Raise(ctx, store.Alert{Subject: subject, MeterID: meterID, Rule: f.Rule, Severity: f.Severity,
			Summary: f.Summary, Details: details, LastAt: now})
		if err != nil || !isNew {
			return err
		}
		return audit(ctx, tx, now, "system", "alert.open", a, map[string]any{"rule": a.Rule, "severity": a.Severity, "summary": a.Summary})
	})
	if err != nil {
		s.mu.Lock()
		delete(s.raised, k)
		s.mu.Unlock()
		return fmt.Errorf("protect: %w", err)
	}
	s.log.Info("revenue protection alert", "subject", subject, "rule", f.Rule, "severity", f.Severity, "summary", f.Summary)
	return nil
}

// Periodic runs the fleet-wide rules: silence and bypass.
func (s *Service) Periodic(ctx context.Context) error {
	now := s.cfg.Now().UTC()
	var act []store.MeterActivity
	var recent, history []store.Consumption
	err := s.cfg.Store.Read(ctx, func(tx store.Tx) error {
		var err error
		if act, err = tx.Telemetry().Activity(ctx, s.cfg.Kinds); err != nil {
			return err
		}
		if recent, err = tx.Telemetry().Consumption(ctx, now.Add(-s.th.BypassWindow), now); err != nil {
			return err
		}
		history, err = tx.Telemetry().Consumption(ctx, now.Add(-s.th.BypassWindow-s.th.BypassHistory), now.Add(-s.th.BypassWindow))
		return err
	})
	if err != nil {
		return fmt.Errorf("protect: periodic rules: %w", err)
	}
	numbers := make(map[int64]string, len(act))
	for _, a := range act {
		numbers[a.MeterID] = a.Number
		if f, ok := Silent(s.th, now, a); ok {
			if err := s.Raise(ctx, a.MeterID, "meter:"+a.Number, f); err != nil {
				return err
			}
		}
	}
	for id, fs := range Bypass(s.th, recent, history, numbers) {
		if _, watched := numbers[id]; !watched {
			continue
		}
		for _, f := range fs {
			if err := s.Raise(ctx, id, "meter:"+numbers[id], f); err != nil {
				return err
			}
		}
	}
	return nil
}

// Run calls Periodic every interval until ctx ends.
func (s *Service) Run(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := s.Periodic(ctx); err != nil {
				s.log.Error("revenue protection", "err", err)
			}
		}
	}
}

// Acknowledge moves an open alert to acknowledged, audited.
func (s *Service) Acknowledge(ctx context.Context, id int64, actor string) (store.Alert, error) {
	now := s.cfg.Now().UTC()
	var a store.Alert
	err := s.cfg.Store.Tx(ctx, func(tx store.Tx) error {
		var err error
		if a, err = tx.Alerts().Acknowledge(ctx, id, actor, now); err != nil {
			return err
		}
		return audit(ctx, tx, now, actor, "alert.acknowledge", a, nil)
	})
	return a, err
}

// Resolve closes an alert with a note, audited. A rule still firing opens
// a new alert (after Thresholds.Repeat at most).
func (s *Service) Resolve(ctx context.Context, id int64, actor, note string) (store.Alert, error) {
	now := s.cfg.Now().UTC()
	var a store.Alert
	err := s.cfg.Store.Tx(ctx, func(tx store.Tx) error {
		var err error
		if a, err = tx.Alerts().Resolve(ctx, id, actor, note, now); err != nil {
			return err
		}
		return audit(ctx, tx, now, actor, "alert.resolve", a, map[string]any{"note": note})
	})
	if err == nil {
		s.mu.Lock()
		delete(s.raised, alertKey{a.MeterID, a.Rule})
		delete(s.raised, alertKey{0, a.Subject + "/" + a.Rule})
		s.mu.Unlock()
	}
	return a, err
}

func audit(ctx context.Context, tx store.Tx, at time.Time, actor, action string, a store.Alert, details map[string]any) error {
	if details == nil {
		details = map[string]any{}
	}
	details["subject"], details["rule"] = a.Subject, a.Rule
	return store.AppendAudit(ctx, tx, at, actor, action, "alert:"+strconv.FormatInt(a.ID, 10), details)
}
