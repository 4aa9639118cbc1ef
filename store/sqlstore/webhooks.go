package sqlstore

import (
	"context"
	"fmt"
	"strings"
	"time"

	"sluice/store"
)

// --- outbound webhooks

type webhooks struct{ *tx }

const subscriberCols = `id, name, url, secret, events, disabled, created_at`

func scanSubscriber(scan func(...any) error) (store.WebhookSubscriber, error) {
	var s store.WebhookSubscriber
	var events string
	var created int64
	err := scan(&s.ID, &s.Name, &s.URL, &s.Secret, &events, &s.Disabled, &created)
	s.Events, s.CreatedAt = strings.Fields(events), fromMicros(created)
	return s, err
}

func (r webhooks) CreateSubscriber(ctx context.Context, s store.WebhookSubscriber) (store.WebhookSubscriber, error) {
	if s.CreatedAt.IsZero() {
		s.CreatedAt = now()
	}
	err := r.row(ctx, `INSERT INTO webhook_subscribers (name, url, secret, events, disabled, created_at) VALUES (?, ?, ?, ?, ?, ?) RETURNING id`,
		[]any{s.Name, s.URL, s.Secret, strings.Join(s.Events, " "), s.Disabled, micros(s.CreatedAt)}, &s.ID)
	if err != nil {
		return store.WebhookSubscriber{}, fmt.Errorf("webhook subscriber %s: %w", s.Name, err)
	}
	return s, nil
}

func (r webhooks) Subscriber(ctx context.Context, id int64) (store.WebhookSubscriber, error) {
	return one(r.tx, ctx, fmt.Sprintf("webhook subscriber %d", id), scanSubscriber, `SELECT `+subscriberCols+` FROM webhook_subscribers WHERE id = ?`, id)
}

func (r webhooks) Subscribers(ctx context.Context) ([]store.WebhookSubscriber, error) {
	return collect(r.tx, ctx, "webhook subscribers", scanSubscriber, `SELECT `+subscriberCols+` FROM webhook_subscribers ORDER BY id`)
}

func (r webhooks) SetSubscriberDisabled(ctx context.Context, id int64, disabled bool) error {
	res, err := r.exec(ctx, `UPDATE webhook_subscribers SET disabled = ? WHERE id = ?`, disabled, id)
	if err != nil {
		return fmt.Errorf("webhook subscriber %d: %w", id, err)
	}
	return rowsAffected(res, fmt.Sprintf("webhook subscriber %d", id))
}

const outboxCols = `id, subscriber_id, event_id, event_type, payload, state, attempts, next_attempt_at, last_error, created_at, finished_at`

func scanOutbox(scan func(...any) error) (store.OutboxMessage, error) {
	var m store.OutboxMessage
	var next, created, finished int64
	err := scan(&m.ID, &m.SubscriberID, &m.EventID, &m.EventType, &m.Payload, &m.State, &m.Attempts, &next, &m.LastError, &created, &finished)
	m.NextAttemptAt, m.CreatedAt, m.FinishedAt = fromMicros(next), fromMicros(created), fromMicros(finished)
	return m, err
}

func (r webhooks) Enqueue(ctx context.Context, m store.OutboxMessage) (bool, error) {
	if m.CreatedAt.IsZero() {
		m.CreatedAt = now()
	}
	if m.State == "" {
		m.State = store.OutboxPending
	}
	res, err := r.exec(ctx, `INSERT INTO webhook_outbox (subscriber_id, event_id, event_type, payload, state, attempts, next_attempt_at, created_at)
		VALUES (?, ?, ?, ?, ?, 0, ?, ?) ON CONFLICT (subscriber_id, event_id) DO NOTHING`,
		m.SubscriberID, m.EventID, m.EventType, m.Payload, m.State, micros(m.NextAttemptAt), micros(m.CreatedAt))
	if err != nil {
		return false, fmt.Errorf("enqueue %s: %w", m.EventID, err)
	}
	n, err := res.RowsAffected()
	return n > 0, err
}

func (r webhooks) Due(ctx context.Context, at time.Time, limit int) ([]store.OutboxMessage, error) {
	return collect(r.tx, ctx, "due webhooks", scanOutbox,
		`SELECT `+outboxCols+` FROM webhook_outbox WHERE state = 'pending' AND next_attempt_at <= ? ORDER BY next_attempt_at, id LIMIT ?`, micros(at), limit)
}

func (r webhooks) Claim(ctx context.Context, id int64, seen, until time.Time) (bool, error) {
	res, err := r.exec(ctx, `UPDATE webhook_outbox SET next_attempt_at = ? WHERE id = ? AND state = 'pending' AND next_attempt_at = ?`,
		micros(until), id, micros(seen))
	if err != nil {
		return false, fmt.Errorf("claim webhook %d: %w", id, err)
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

func (r webhooks) Finish(ctx context.Context, m store.OutboxMessage, d store.WebhookDelivery) error {
	res, err := r.exec(ctx, `UPDATE webhook_outbox SET state = ?, attempts = ?, next_attempt_at = ?, last_error = ?, finished_at = ? WHERE id = ?`,
		m.State, m.Attempts, micros(m.NextAttemptAt), m.LastError, micros(m.FinishedAt), m.ID)
	if err != nil {
		return fmt.Errorf("webhook %d: %w", m.ID, err)
	}
	if err := rowsAffected(res, fmt.Sprintf("webhook %d", m.ID)); err != nil {
		return err
	}
	_, err = r.exec(ctx, `INSERT INTO webhook_deliveries (outbox_id, attempt, at, status, error, duration_us) VALUES (?, ?, ?, ?, ?, ?)`,
		m.ID, d.Attempt, micros(d.At), d.Status, d.Error, d.Duration.Microseconds())
	if err != nil {
		return fmt.Errorf("webhook %d delivery log: %w", m.ID, err)
	}
	return nil
}

func (r webhooks) Message(ctx context.Context, id int64) (store.OutboxMessage, error) {
	return one(r.tx, ctx, fmt.Sprintf("webhook message %d", id), scanOutbox, `SELECT `+outboxCols+` FROM webhook_outbox WHERE id = ?`, id)
}

func (r webhooks) Messages(ctx context.Context, state string, before int64, limit int) ([]store.OutboxMessage, error) {
	if before <= 0 {
		before = 1<<63 - 1
	}
	return collect(r.tx, ctx, "webhook messages", scanOutbox,
		`SELECT `+outboxCols+` FROM webhook_outbox WHERE state = ? AND id < ? ORDER BY id DESC LIMIT ?`, state, before, limit)
}

func (r webhooks) Deliveries(ctx context.Context, outboxID int64) ([]store.WebhookDelivery, error) {
	return collect(r.tx, ctx, "webhook deliveries", func(scan func(...any) error) (store.WebhookDelivery, error) {
		var d store.WebhookDelivery
		var at, us int64
		err := scan(&d.ID, &d.OutboxID, &d.Attempt, &at, &d.Status, &d.Error, &us)
		d.At, d.Duration = fromMicros(at), time.Duration(us)*time.Microsecond
		return d, err
	}, `SELECT id, outbox_id, attempt, at, status, error, duration_us FROM webhook_deliveries WHERE outbox_id = ? ORDER BY id`, outboxID)
}

func (r webhooks) Requeue(ctx context.Context, id int64, at time.Time) error {
	res, err := r.exec(ctx, `UPDATE webhook_outbox SET state = 'pending', next_attempt_at = ?, finished_at = 0 WHERE id = ? AND state = 'dead'`, micros(at), id)
	if err != nil {
		return fmt.Errorf("requeue webhook %d: %w", id, err)
	}
	return rowsAffected(res, fmt.Sprintf("dead webhook %d", id))
}
