// Package webhook sends the head-end's events (a purchase completed, a token
// reprinted, an alert raised, a key-change campaign finished) to subscribers'
// HTTPS endpoints, signed, retried with exponential back-off, and parked in a
// dead-letter list an administrator can see and retry.
//
// # Where events come from
//
// The transactional outbox (table webhook_outbox) holds one message per
// subscriber and event. Vending (package vend) is not changed to write it:
// every purchase and reprint already appends an audit record in its own
// transaction, and the audit sealer chains those records in commit order
// with gap-free sequence numbers. The dispatcher tails that sealed chain by
// sequence number (a cursor in the settings table) and turns records whose
// action it knows into outbox messages. This sees exactly the committed,
// audited facts, never a rolled-back one, and misses none: a record's
// sequence number is assigned only after its transaction committed, in
// order, so a cursor over it cannot skip a late commit (a cursor over
// purchases.id or audit_log.id could, on PostgreSQL). The price is latency:
// an event leaves about one sealer interval (a second) after its commit.
// Producers that can write in their own transaction call Emit instead, which
// enqueues in that transaction.
//
// A subscriber receives the events that happened after it was created; the
// outbox row is unique per (subscriber, event ID), so tailing the chain
// again, from any replica, never queues an event twice.
//
// # Delivery
//
// Each message is POSTed as JSON (the Event) with the headers Sluice-Event-Id,
// Sluice-Event-Type and Sluice-Signature (see Sign and Verify). A 2xx answer
// delivers it; anything else (an error, a timeout, a redirect, a 4xx or 5xx)
// schedules the next attempt after BaseDelay·2^(attempt−1), capped at
// MaxDelay, with jitter; after MaxAttempts it is dead. Every attempt is
// logged (webhook_deliveries). Replicas share the work: a replica claims a
// due message by moving its next attempt forward in a conditional update,
// so one replica sends it. Delivery is at least once (a receiver that
// answered 2xx after the head-end gave up waiting sees the event again),
// which is why every event carries a stable ID.
//
// Subscribers' signing secrets are generated here (256 bits), shown once,
// and kept sealed under a KMS-derived key (Box), so a copy of the database
// cannot sign.
//
// Payloads carry what the audit record holds (meter, vending point, amounts,
// litres), never token digits or vouchers: a token is money, and a webhook
// receiver is not entitled to it.
package webhook

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"sluice/store"
)

// Event types.
const (
	PurchaseCompleted = "purchase.completed"
	TokenReprinted    = "token.reprinted"
	AlertRaised       = "alert.raised"
	CampaignFinished  = "campaign.finished"
)

// EventTypes lists the event types a subscriber may choose.
var EventTypes = []string{PurchaseCompleted, TokenReprinted, AlertRaised, CampaignFinished}

// DefaultActions maps audit actions to event types.
func DefaultActions() map[string]string {
	return map[string]string{
		"vend.purchase":   PurchaseCompleted,
		"vend.reprint":    TokenReprinted,
		"alert.open":      AlertRaised, // package protect opens an alert
		"campaign.done":   CampaignFinished,
		"campaign.cancel": CampaignFinished,
	}
}

// Event is the JSON body of a delivery.
type Event struct {
	ID     string          `json:"id"`
	Type   string          `json:"type"`
	Time   time.Time       `json:"time"`
	Object string          `json:"object"`
	Actor  string          `json:"actor,omitempty"`
	Action string          `json:"action,omitempty"`
	Data   json.RawMessage `json:"data"`
}

// Emit queues ev for every subscriber of its type in tx, the producer's own
// transaction, so the event and its messages commit together. ev.ID must be
// unique and stable (for example "alert/<id>").
func Emit(ctx context.Context, tx store.Tx, ev Event) error {
	if ev.ID == "" || !slices.Contains(EventTypes, ev.Type) {
		return fmt.Errorf("webhook: event needs an ID and a known type, got %q %q", ev.ID, ev.Type)
	}
	subs, err := tx.Webhooks().Subscribers(ctx)
	if err != nil {
		return err
	}
	return enqueue(ctx, tx, subs, ev)
}

func enqueue(ctx context.Context, tx store.Tx, subs []store.WebhookSubscriber, ev Event) error {
	if len(ev.Data) == 0 {
		ev.Data = json.RawMessage("{}")
	}
	ev.Time = ev.Time.UTC()
	var body []byte
	for _, s := range subs {
		if s.Disabled || !slices.Contains(s.Events, ev.Type) || ev.Time.Before(s.CreatedAt) {
			continue
		}
		if body == nil {
			var err error
			if body, err = json.Marshal(ev); err != nil {
				return err
			}
		}
		if _, err := tx.Webhooks().Enqueue(ctx, store.OutboxMessage{SubscriberID: s.ID, EventID: ev.ID, EventType: ev.Type,
			Payload: body, NextAttemptAt: ev.Time}); err != nil {
			return err
		}
	}
	return nil
}

// Config configures a Dispatcher.
type Config struct {
	Store store.Store
	// Client sends deliveries; nil means a client with Timeout that follows
	// no redirects.
	Client  *http.Client
	Timeout time.Duration // per attempt; 0 means 10 s
	Now     func() time.Time
	Logger  *slog.Logger
	// Actions maps audit actions to event types; nil means DefaultActions.
	Actions     map[string]string
	Poll        time.Duration // 0 means 1 s
	MaxAttempts int           // 0 means 10
	BaseDelay   time.Duration // 0 means 10 s
	MaxDelay    time.Duration // 0 means 1 h
	Batch       int           // 0 means 100
	Workers     int           // concurrent deliveries; 0 means 4
	// Lease is how long a claimed message is left alone by other replicas;
	// 0 means twice the timeout.
	Lease time.Duration
	// Box opens sealed subscriber secrets; nil when they are stored in
	// clear.
	Box *Box
}

// Dispatcher moves events from the audit chain to the outbox and from the
// outbox to subscribers.
type Dispatcher struct {
	cfg Config
	log *slog.Logger
}

// CursorKey is the settings key holding the last audit sequence number
// taken into the outbox.
const CursorKey = "webhook.audit_cursor"

// New returns a Dispatcher with defaults filled in.
func New(cfg Config) *Dispatcher {
	if cfg.Timeout == 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{Timeout: cfg.Timeout,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Actions == nil {
		cfg.Actions = DefaultActions()
	}
	if cfg.Poll == 0 {
		cfg.Poll = time.Second
	}
	if cfg.MaxAttempts == 0 {
		cfg.MaxAttempts = 10
	}
	if cfg.BaseDelay == 0 {
		cfg.BaseDelay = 10 * time.Second
	}
	if cfg.MaxDelay == 0 {
		cfg.MaxDelay = time.Hour
	}
	if cfg.Batch == 0 {
		cfg.Batch = 100
	}
	if cfg.Workers == 0 {
		cfg.Workers = 4
	}
	if cfg.Lease == 0 {
		cfg.Lease = 2 * cfg.Timeout
	}
	d := &Dispatcher{cfg: cfg, log: cfg.Logger}
	if d.log == nil {
		d.log = slog.New(slog.DiscardHandler)
	}
	return d
}

// Run pumps and delivers every Poll until ctx ends; a failed round is
// logged and tried again at the next tick (messages stay in the outbox).
func (d *Dispatcher) Run(ctx context.Context) {
	t := time.NewTicker(d.cfg.Poll)
	defer t.Stop()
	for {
		for {
			n, err := d.Pump(ctx)
			if err != nil && ctx.Err() == nil {
				d.log.Warn("webhook pump", "err", err)
			}
			if n < d.cfg.Batch || err != nil {
				break
			}
		}
		if _, err := d.Deliver(ctx); err != nil && ctx.Err() == nil {
			d.log.Warn("webhook delivery", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

var errBatchFull = errors.New("batch full")

// Pump takes up to Batch sealed audit records after the cursor into the
// outbox and advances the cursor, in one transaction. It returns how many
// records it read.
func (d *Dispatcher) Pump(ctx context.Context) (int, error) {
	n := 0
	err := d.cfg.Store.Tx(ctx, func(tx store.Tx) error {
		n = 0
		cursor := int64(0)
		if v, err := tx.Settings().Get(ctx, CursorKey); err == nil {
			if cursor, err = strconv.ParseInt(v, 10, 64); err != nil {
				return fmt.Errorf("webhook cursor %q: %w", v, err)
			}
		} else if !errors.Is(err, store.ErrNotFound) {
			return err
		}
		// Read the batch first: a database connection serves one result set
		// at a time, and enqueueing is a statement of its own.
		var recs []store.AuditRecord
		err := tx.Audit().Each(ctx, cursor+1, func(r store.AuditRecord) error {
			if len(recs) == d.cfg.Batch {
				return errBatchFull
			}
			recs = append(recs, r)
			return nil
		})
		if err != nil && !errors.Is(err, errBatchFull) {
			return err
		}
		if len(recs) == 0 {
			return nil
		}
		subs, err := tx.Webhooks().Subscribers(ctx)
		if err != nil {
			return err
		}
		for _, r := range recs {
			typ, ok := d.cfg.Actions[r.Action]
			if !ok {
				continue
			}
			data := json.RawMessage(r.Details)
			if !json.Valid(data) {
				data = nil
			}
			ev := Event{ID: "audit-" + strconv.FormatInt(r.Seq, 10), Type: typ, Time: r.At, Object: r.Object, Actor: r.Actor, Action: r.Action, Data: data}
			if err := enqueue(ctx, tx, subs, ev); err != nil {
				return err
			}
		}
		n = len(recs)
		return tx.Settings().Put(ctx, CursorKey, strconv.FormatInt(recs[len(recs)-1].Seq, 10))
	})
	return n, err
}

// Deliver attempts every due message (up to Batch) once and returns how
// many it attempted.
func (d *Dispatcher) Deliver(ctx context.Context) (int, error) {
	now := d.cfg.Now().UTC()
	var due []store.OutboxMessage
	subs := map[int64]store.WebhookSubscriber{}
	err := d.cfg.Store.Read(ctx, func(tx store.Tx) error {
		var err error
		if due, err = tx.Webhooks().Due(ctx, now, d.cfg.Batch); err != nil {
			return err
		}
		all, err := tx.Webhooks().Subscribers(ctx)
		for _, s := range all {
			subs[s.ID] = s
		}
		return err
	})
	if err != nil {
		return 0, err
	}
	var wg sync.WaitGroup
	sem := make(chan struct{}, d.cfg.Workers)
	var mu sync.Mutex
	var firstErr error
	n := 0
	for _, m := range due {
		var won bool
		err := d.cfg.Store.Tx(ctx, func(tx store.Tx) error {
			var err error
			won, err = tx.Webhooks().Claim(ctx, m.ID, m.NextAttemptAt, now.Add(d.cfg.Lease))
			return err
		})
		if err != nil {
			return n, err
		}
		if !won {
			continue // another replica has it
		}
		n++
		sem <- struct{}{}
		wg.Add(1)
		go func(m store.OutboxMessage) {
			defer func() { <-sem; wg.Done() }()
			if err := d.attempt(ctx, m, subs[m.SubscriberID]); err != nil {
				mu.Lock()
				if firstErr == nil {
					firstErr = err
				}
				mu.Unlock()
			}
		}(m)
	}
	wg.Wait()
	return n, firstErr
}

// attempt sends one message and records the outcome.
func (d *Dispatcher) attempt(ctx context.Context, m store.OutboxMessage, s store.WebhookSubscriber) error {
	start := d.cfg.Now().UTC()
	status, errText := 0, ""
	switch {
	case s.ID == 0:
		errText = "subscriber deleted"
	case s.Disabled:
		errText = "subscriber disabled"
	default:
		status, errText = d.send(ctx, m, s, start)
	}
	end := d.cfg.Now().UTC()
	m.Attempts++
	m.LastError = errText
	switch {
	case status >= 200 && status < 300:
		m.State, m.FinishedAt, m.LastError = store.OutboxDelivered, end, ""
	case m.Attempts >= d.cfg.MaxAttempts || s.ID == 0 || s.Disabled:
		m.State, m.FinishedAt = store.OutboxDead, end
		d.log.Warn("webhook dead", "subscriber", s.Name, "event", m.EventID, "attempts", m.Attempts, "err", errText)
	default:
		m.NextAttemptAt = end.Add(d.Backoff(m.Attempts))
	}
	del := store.WebhookDelivery{OutboxID: m.ID, Attempt: m.Attempts, At: start, Status: status, Error: errText, Duration: end.Sub(start)}
	// Recorded on a fresh context: the attempt happened even if the
	// head-end is shutting down, and its lease would otherwise resend it.
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	return d.cfg.Store.Tx(fctx, func(tx store.Tx) error { return tx.Webhooks().Finish(fctx, m, del) })
}

func (d *Dispatcher) send(ctx context.Context, m store.OutboxMessage, s store.WebhookSubscriber, at time.Time) (int, string) {
	ctx, cancel := context.WithTimeout(ctx, d.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.URL, strings.NewReader(string(m.Payload)))
	if err != nil {
		return 0, err.Error()
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "sluice-webhook/1")
	req.Header.Set("Sluice-Event-Id", m.EventID)
	req.Header.Set("Sluice-Event-Type", m.EventType)
	secret, err := openSecret(d.cfg.Box, s.Name, s.Secret)
	if err != nil {
		return 0, err.Error()
	}
	req.Header.Set(SignatureHeader, Sign(secret, at, m.Payload))
	resp, err := d.cfg.Client.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return resp.StatusCode, ""
	}
	return resp.StatusCode, strings.TrimSpace(resp.Status + " " + string(b))
}

// Backoff is the wait after the n-th failed attempt: BaseDelay·2^(n−1)
// capped at MaxDelay, the second half drawn at random so receivers that
// came back are not hit by every sender at once.
func (d *Dispatcher) Backoff(n int) time.Duration {
	delay := d.cfg.MaxDelay
	if n < 32 {
		if x := d.cfg.BaseDelay << (n - 1); x > 0 && x < delay {
			delay = x
		}
	}
	return delay/2 + rand.N(delay/2+1)
}

// NewSecret returns a fresh signing secret: "whsec_" and 64 hex digits (256
// bits). The whole string, as ASCII, is the HMAC key.
func NewSecret() string {
	var b [32]byte
	if _, err := crand.Read(b[:]); err != nil {
		panic(err)
	}
	return "whsec_" + hex.EncodeToString(b[:])
}

// ValidURL accepts https URLs, and http only to a loopback host (a local
// relay), so payloads never cross a network in clear.
func ValidURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || u.User != nil {
		return errors.New("must be an absolute URL without credentials")
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		host := u.Hostname()
		if ip := net.ParseIP(host); host == "localhost" || ip != nil && ip.IsLoopback() {
			return nil
		}
		return errors.New("must be https (http only to a loopback relay)")
	}
	return errors.New("must be https")
}
