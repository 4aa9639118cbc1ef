package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"time"

	"sluice/auth"
	"sluice/server"
	"sluice/store"
)

// Admin manages subscribers and the dead-letter list.
type Admin struct {
	st  store.Store
	box *Box
	now func() time.Time
}

// NewAdmin returns an Admin. box seals new subscribers' secrets; nil stores
// them in clear (see Box). now nil means time.Now.
func NewAdmin(st store.Store, box *Box, now func() time.Time) *Admin {
	if now == nil {
		now = time.Now
	}
	return &Admin{st: st, box: box, now: now}
}

// SubscriberRequest creates a subscriber.
type SubscriberRequest struct {
	Name   string   `json:"name"`
	URL    string   `json:"url"`
	Events []string `json:"events"`
}

// Subscriber is a subscriber as listed (never its secret).
type Subscriber struct {
	ID        int64     `json:"id"`
	Name      string    `json:"name"`
	URL       string    `json:"url"`
	Events    []string  `json:"events"`
	Disabled  bool      `json:"disabled"`
	CreatedAt time.Time `json:"created_at"`
}

// NewSubscriberResponse carries the signing secret, shown once.
type NewSubscriberResponse struct {
	Subscriber Subscriber `json:"subscriber"`
	Secret     string     `json:"secret"`
}

func subscriberView(s store.WebhookSubscriber) Subscriber {
	return Subscriber{ID: s.ID, Name: s.Name, URL: s.URL, Events: s.Events, Disabled: s.Disabled, CreatedAt: s.CreatedAt}
}

func fieldErr(field, msg string) error {
	return server.Error(http.StatusUnprocessableEntity, "invalid_request", field, field+": "+msg)
}

func audit(ctx context.Context, tx store.Tx, at time.Time, p auth.Principal, action, object string, details any) error {
	return store.AppendAudit(ctx, tx, at, p.Actor(), action, object, details)
}

// CreateSubscriber registers an endpoint with a generated secret.
func (a *Admin) CreateSubscriber(ctx context.Context, p auth.Principal, req SubscriberRequest) (NewSubscriberResponse, error) {
	if len(req.Name) < 1 || len(req.Name) > 64 {
		return NewSubscriberResponse{}, fieldErr("name", "must be 1 to 64 characters")
	}
	if len(req.URL) > 2048 {
		return NewSubscriberResponse{}, fieldErr("url", "must be at most 2048 characters")
	}
	if err := ValidURL(req.URL); err != nil {
		return NewSubscriberResponse{}, fieldErr("url", err.Error())
	}
	if len(req.Events) == 0 {
		return NewSubscriberResponse{}, fieldErr("events", "name at least one event type")
	}
	for _, e := range req.Events {
		if !slices.Contains(EventTypes, e) {
			return NewSubscriberResponse{}, fieldErr("events", fmt.Sprintf("unknown event type %q", e))
		}
	}
	secret := NewSecret()
	stored := []byte(secret)
	if a.box != nil {
		var err error
		if stored, err = a.box.seal(req.Name, stored); err != nil {
			return NewSubscriberResponse{}, err
		}
	}
	var out store.WebhookSubscriber
	err := a.st.Tx(ctx, func(tx store.Tx) error {
		var err error
		now := a.now().UTC().Truncate(time.Microsecond)
		out, err = tx.Webhooks().CreateSubscriber(ctx, store.WebhookSubscriber{Name: req.Name, URL: req.URL, Secret: stored, Events: req.Events, CreatedAt: now})
		if errors.Is(err, store.ErrConflict) {
			return fieldErr("name", "a subscriber "+strconv.Quote(req.Name)+" exists")
		}
		if err != nil {
			return err
		}
		return audit(ctx, tx, now, p, "webhook.subscribe", "webhook/"+strconv.FormatInt(out.ID, 10), map[string]any{"name": req.Name, "url": req.URL, "events": req.Events})
	})
	return NewSubscriberResponse{Subscriber: subscriberView(out), Secret: secret}, err
}

// Message is an outbox message as listed.
type Message struct {
	ID            int64           `json:"id"`
	Subscriber    int64           `json:"subscriber_id"`
	EventID       string          `json:"event_id"`
	EventType     string          `json:"event_type"`
	State         string          `json:"state"`
	Attempts      int             `json:"attempts"`
	NextAttemptAt time.Time       `json:"next_attempt_at"`
	LastError     string          `json:"last_error,omitempty"`
	CreatedAt     time.Time       `json:"created_at"`
	Payload       json.RawMessage `json:"payload"`
}

// Delivery is one attempt in the delivery log.
type Delivery struct {
	Attempt    int       `json:"attempt"`
	At         time.Time `json:"at"`
	Status     int       `json:"status"`
	Error      string    `json:"error,omitempty"`
	DurationMS float64   `json:"duration_ms"`
}

// MessageDetail is a message with its delivery log.
type MessageDetail struct {
	Message    Message    `json:"message"`
	Deliveries []Delivery `json:"deliveries"`
}

func messageView(m store.OutboxMessage) Message {
	return Message{ID: m.ID, Subscriber: m.SubscriberID, EventID: m.EventID, EventType: m.EventType, State: m.State, Attempts: m.Attempts,
		NextAttemptAt: m.NextAttemptAt, LastError: m.LastError, CreatedAt: m.CreatedAt, Payload: m.Payload}
}

// Messages lists outbox messages in a state, newest first.
func (a *Admin) Messages(ctx context.Context, state string, before int64, limit int) ([]Message, error) {
	if !slices.Contains([]string{store.OutboxPending, store.OutboxDelivered, store.OutboxDead}, state) {
		return nil, fieldErr("state", "must be pending, delivered or dead")
	}
	out := []Message{}
	err := a.st.Read(ctx, func(tx store.Tx) error {
		ms, err := tx.Webhooks().Messages(ctx, state, before, limit)
		for _, m := range ms {
			out = append(out, messageView(m))
		}
		return err
	})
	return out, err
}

// Message returns a message and its delivery log.
func (a *Admin) Message(ctx context.Context, id int64) (MessageDetail, error) {
	var out MessageDetail
	err := a.st.Read(ctx, func(tx store.Tx) error {
		m, err := tx.Webhooks().Message(ctx, id)
		if err != nil {
			return err
		}
		ds, err := tx.Webhooks().Deliveries(ctx, id)
		out = MessageDetail{Message: messageView(m), Deliveries: []Delivery{}}
		for _, d := range ds {
			out.Deliveries = append(out.Deliveries, Delivery{Attempt: d.Attempt, At: d.At, Status: d.Status, Error: d.Error, DurationMS: float64(d.Duration.Microseconds()) / 1000})
		}
		return err
	})
	return out, err
}

// Retry puts a dead message back in the queue, due now. Its attempt count
// is kept, so a message that fails again goes straight back to the
// dead-letter list rather than through a new round of back-off.
func (a *Admin) Retry(ctx context.Context, p auth.Principal, id int64) (Message, error) {
	var out Message
	err := a.st.Tx(ctx, func(tx store.Tx) error {
		now := a.now().UTC()
		m, err := tx.Webhooks().Message(ctx, id)
		if err != nil {
			return err
		}
		if m.State != store.OutboxDead {
			return server.Error(http.StatusConflict, "not_dead", "", fmt.Sprintf("message %d is %s", id, m.State))
		}
		if err := tx.Webhooks().Requeue(ctx, id, now); err != nil {
			return err
		}
		m.State, m.NextAttemptAt = store.OutboxPending, now
		out = messageView(m)
		return audit(ctx, tx, now, p, "webhook.retry", "webhook-message/"+strconv.FormatInt(id, 10), map[string]any{"event_id": m.EventID})
	})
	return out, err
}

func pathID(r *http.Request, name string) (int64, error) {
	id, err := strconv.ParseInt(r.PathValue(name), 10, 64)
	if err != nil || id <= 0 {
		return 0, server.Error(http.StatusBadRequest, "invalid_request", name, name+" must be a positive integer")
	}
	return id, nil
}

// Routes are the webhook administration routes for server.Config.Extra.
func Routes(a *Admin) []server.Route {
	admins := []string{auth.Admin}
	readers := []string{auth.Admin, auth.Auditor}
	limit := func(r *http.Request) int {
		n, err := strconv.Atoi(r.URL.Query().Get("limit"))
		if err != nil || n <= 0 || n > 500 {
			return 100
		}
		return n
	}
	return []server.Route{
		{Method: "GET", Path: "/webhooks/subscribers", Roles: readers, Tag: "webhooks", Summary: "List webhook subscribers (never their secrets)",
			Response: []Subscriber{}, Handler: func(ctx context.Context, r *http.Request, p auth.Principal) (any, error) {
				out := []Subscriber{}
				err := a.st.Read(ctx, func(tx store.Tx) error {
					ss, err := tx.Webhooks().Subscribers(ctx)
					for _, s := range ss {
						out = append(out, subscriberView(s))
					}
					return err
				})
				return out, err
			}},
		{Method: "POST", Path: "/webhooks/subscribers", Roles: admins, Tag: "webhooks", Status: http.StatusCreated,
			Summary: `Subscribe an endpoint to events; answers the signing secret once. Example: {"name":"billing","url":"https://billing.example/hooks/sluice","events":["purchase.completed","campaign.finished"]}`,
			Request: SubscriberRequest{}, Response: NewSubscriberResponse{}, Handler: func(ctx context.Context, r *http.Request, p auth.Principal) (any, error) {
				var req SubscriberRequest
				if err := server.DecodeJSON(r, &req); err != nil {
					return nil, err
				}
				return a.CreateSubscriber(ctx, p, req)
			}},
		{Method: "POST", Path: "/webhooks/subscribers/{id}/disable", Roles: admins, Tag: "webhooks", Summary: "Stop sending to a subscriber (its queued messages go to the dead-letter list)",
			Response: Subscriber{}, Handler: func(ctx context.Context, r *http.Request, p auth.Principal) (any, error) {
				return a.setDisabled(ctx, r, p, true)
			}},
		{Method: "POST", Path: "/webhooks/subscribers/{id}/enable", Roles: admins, Tag: "webhooks", Summary: "Resume sending to a subscriber",
			Response: Subscriber{}, Handler: func(ctx context.Context, r *http.Request, p auth.Principal) (any, error) {
				return a.setDisabled(ctx, r, p, false)
			}},
		{Method: "GET", Path: "/webhooks/dead-letters", Roles: admins, Tag: "webhooks", Summary: "Dead-letter list: messages that failed every attempt, newest first (?from= id to continue before, limit=)",
			Response: []Message{}, Handler: func(ctx context.Context, r *http.Request, p auth.Principal) (any, error) {
				before, _ := strconv.ParseInt(r.URL.Query().Get("from"), 10, 64)
				return a.Messages(ctx, store.OutboxDead, before, limit(r))
			}},
		{Method: "POST", Path: "/webhooks/dead-letters/{id}/retry", Roles: admins, Tag: "webhooks", Summary: "Send a dead message again",
			Response: Message{}, Handler: func(ctx context.Context, r *http.Request, p auth.Principal) (any, error) {
				id, err := pathID(r, "id")
				if err != nil {
					return nil, err
				}
				return a.Retry(ctx, p, id)
			}},
		{Method: "GET", Path: "/webhooks/messages", Roles: readers, Tag: "webhooks", Summary: "Outbox messages by state (?q= pending, delivered or dead; from=, limit=)",
			Response: []Message{}, Handler: func(ctx context.Context, r *http.Request, p auth.Principal) (any, error) {
				before, _ := strconv.ParseInt(r.URL.Query().Get("from"), 10, 64)
				return a.Messages(ctx, r.URL.Query().Get("q"), before, limit(r))
			}},
		{Method: "GET", Path: "/webhooks/messages/{id}", Roles: readers, Tag: "webhooks", Summary: "A message with its delivery log (every attempt: time, HTTP status, error, duration)",
			Response: MessageDetail{}, Handler: func(ctx context.Context, r *http.Request, p auth.Principal) (any, error) {
				id, err := pathID(r, "id")
				if err != nil {
					return nil, err
				}
				return a.Message(ctx, id)
			}},
	}
}

func (a *Admin) setDisabled(ctx context.Context, r *http.Request, p auth.Principal, disabled bool) (Subscriber, error) {
	id, err := pathID(r, "id")
	if err != nil {
		return Subscriber{}, err
	}
	var out store.WebhookSubscriber
	err = a.st.Tx(ctx, func(tx store.Tx) error {
		if err := tx.Webhooks().SetSubscriberDisabled(ctx, id, disabled); err != nil {
			return err
		}
		var err error
		if out, err = tx.Webhooks().Subscriber(ctx, id); err != nil {
			return err
		}
		return audit(ctx, tx, a.now().UTC(), p, "webhook.disable", "webhook/"+strconv.FormatInt(id, 10), map[string]any{"disabled": disabled})
	})
	return subscriberView(out), err
}
