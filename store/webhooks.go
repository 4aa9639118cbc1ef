package store

import (
	"context"
	"time"
)

// WebhookSubscriber is an endpoint that receives signed event
// notifications.
type WebhookSubscriber struct {
	ID        int64
	Name      string
	URL       string
	Secret    []byte
	Events    []string
	Disabled  bool
	CreatedAt time.Time
}

// Outbox states.
const (
	OutboxPending   = "pending"
	OutboxDelivered = "delivered"
	OutboxDead      = "dead"
)

// OutboxMessage is one event to deliver to one subscriber.
type OutboxMessage struct {
	ID            int64
	SubscriberID  int64
	EventID       string
	EventType     string
	Payload       []byte
	State         string
	Attempts      int
	NextAttemptAt time.Time
	LastError     string
	CreatedAt     time.Time
	FinishedAt    time.Time
}

// WebhookDelivery is one delivery attempt.
type WebhookDelivery struct {
	ID       int64
	OutboxID int64
	Attempt  int
	At       time.Time
	Status   int // HTTP status; 0 when there was no response
	Error    string
	Duration time.Duration
}

// Webhooks is the outbound-webhook aggregate.
type Webhooks interface {
	CreateSubscriber(ctx context.Context, s WebhookSubscriber) (WebhookSubscriber, error)
	Subscriber(ctx context.Context, id int64) (WebhookSubscriber, error)
	Subscribers(ctx context.Context) ([]WebhookSubscriber, error)
	SetSubscriberDisabled(ctx context.Context, id int64, disabled bool) error
	// Enqueue adds a message; it reports false when the subscriber has the
	// event already (an event is queued once per subscriber).
	Enqueue(ctx context.Context, m OutboxMessage) (bool, error)
	// Due returns up to limit pending messages due at or before now.
	Due(ctx context.Context, now time.Time, limit int) ([]OutboxMessage, error)
	// Claim moves a due message's next attempt to until, only if it is
	// still pending and due as read (next equal to seen): the one replica
	// that wins delivers it.
	Claim(ctx context.Context, id int64, seen, until time.Time) (bool, error)
	// Finish records an attempt's outcome: state, attempts, next attempt
	// and error, and appends the delivery to the log.
	Finish(ctx context.Context, m OutboxMessage, d WebhookDelivery) error
	// Message returns one message.
	Message(ctx context.Context, id int64) (OutboxMessage, error)
	// Messages lists messages in a state, newest first, before id (0: from
	// the newest).
	Messages(ctx context.Context, state string, before int64, limit int) ([]OutboxMessage, error)
	// Deliveries lists the attempts of a message, oldest first.
	Deliveries(ctx context.Context, outboxID int64) ([]WebhookDelivery, error)
	// Requeue moves a dead message back to pending, due at t.
	Requeue(ctx context.Context, id int64, at time.Time) error
}
