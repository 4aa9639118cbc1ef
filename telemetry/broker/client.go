package broker

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/paho"
)

// ClientConfig configures the connection to an external broker (config keys
// mqtt.url, mqtt.username, mqtt.password, mqtt.client_id).
type ClientConfig struct {
	URL      string // mqtt://host:1883, tls://host:8883
	Username string
	Password string
	// ClientID names the head-end's persistent session: while it is
	// disconnected the broker queues QoS 1 uplinks for it. Replicas need
	// distinct IDs (and shared subscriptions, see docs/telemetry.md).
	ClientID string
	// Prefix is prepended to every topic (tests); normally empty.
	Prefix string
	// SessionExpiry is how long the broker keeps the session while the
	// head-end is away; 0 means one day.
	SessionExpiry time.Duration
	// ConnectTimeout bounds Dial's wait for the first connection.
	ConnectTimeout time.Duration
	Logger         *slog.Logger
}

// Client is the head-end connected to an external broker.
type Client struct {
	cm     *autopaho.ConnectionManager
	prefix string
	log    *slog.Logger

	mu      sync.Mutex
	filters []string // prefixed
	handler Handler
	// ready is closed once a handler is installed: messages the broker
	// redelivers from the persistent session as soon as we connect wait
	// for it rather than being acknowledged unhandled.
	ready     chan struct{}
	readyOnce sync.Once
	closed    chan struct{}
}

var _ Broker = (*Client)(nil)

// Dial connects to the broker and waits for the first connection; later
// losses are repaired in the background (reconnect, resubscribe).
func Dial(ctx context.Context, cfg ClientConfig) (*Client, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("broker: mqtt.url %q: not a broker URL (mqtt://host:port)", cfg.URL)
	}
	if cfg.ClientID == "" {
		return nil, fmt.Errorf("broker: mqtt.client_id is required (it names the persistent session)")
	}
	if cfg.SessionExpiry == 0 {
		cfg.SessionExpiry = 24 * time.Hour
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = 10 * time.Second
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	c := &Client{prefix: cfg.Prefix, log: log, ready: make(chan struct{}), closed: make(chan struct{})}
	ac := autopaho.ClientConfig{
		ServerUrls:                    []*url.URL{u},
		KeepAlive:                     30,
		CleanStartOnInitialConnection: false,
		SessionExpiryInterval:         uint32(cfg.SessionExpiry / time.Second),
		ConnectTimeout:                cfg.ConnectTimeout,
		ReconnectBackoff:              autopaho.NewExponentialBackoff(100*time.Millisecond, 10*time.Second, time.Second, 2),
		ConnectUsername:               cfg.Username,
		ConnectPassword:               []byte(cfg.Password),
		OnConnectionUp: func(cm *autopaho.ConnectionManager, _ *paho.Connack) {
			// Resubscribe on every connection: a broker that lost the
			// session must not leave the head-end deaf. It runs in a
			// goroutine because this callback must not block.
			go c.resubscribe(cm)
		},
		OnConnectError: func(err error) { log.Warn("mqtt connect failed", "url", cfg.URL, "err", err) },
		ClientConfig: paho.ClientConfig{
			ClientID: cfg.ClientID,
			// Acknowledge only when the handler says the message is
			// stored; paho sends the PUBACKs in arrival order, as MQTT
			// requires.
			EnableManualAcknowledgment: true,
			SendAcksInterval:           5 * time.Millisecond,
			OnPublishReceived: []func(paho.PublishReceived) (bool, error){
				func(pr paho.PublishReceived) (bool, error) { c.receive(pr); return true, nil },
			},
			OnClientError:      func(err error) { log.Warn("mqtt client error", "err", err) },
			OnServerDisconnect: func(d *paho.Disconnect) { log.Warn("mqtt broker disconnected us", "reason", d.ReasonCode) },
		},
	}
	cm, err := autopaho.NewConnection(context.Background(), ac)
	if err != nil {
		return nil, fmt.Errorf("broker: %w", err)
	}
	c.cm = cm
	wctx, cancel := context.WithTimeout(ctx, cfg.ConnectTimeout)
	defer cancel()
	if err := cm.AwaitConnection(wctx); err != nil {
		dctx, dcancel := context.WithTimeout(context.Background(), time.Second)
		defer dcancel()
		cm.Disconnect(dctx)
		return nil, fmt.Errorf("broker: connect to %s: %w", cfg.URL, err)
	}
	return c, nil
}

func (c *Client) receive(pr paho.PublishReceived) {
	select {
	case <-c.ready:
	case <-c.closed:
		return // unacknowledged: the broker keeps it for the next session
	}
	c.mu.Lock()
	h := c.handler
	c.mu.Unlock()
	p := pr.Packet
	ack := func() {}
	if p.QoS > 0 {
		var once sync.Once
		ack = func() {
			once.Do(func() {
				if err := pr.Client.Ack(p); err != nil {
					c.log.Warn("mqtt ack", "topic", p.Topic, "err", err)
				}
			})
		}
	}
	if h == nil || !strings.HasPrefix(p.Topic, c.prefix) {
		ack()
		return
	}
	h(strings.TrimPrefix(p.Topic, c.prefix), p.Payload, ack)
}

func (c *Client) resubscribe(cm *autopaho.ConnectionManager) {
	c.mu.Lock()
	filters := c.filters
	c.mu.Unlock()
	if len(filters) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.subscribe(ctx, cm, filters); err != nil {
		c.log.Error("mqtt resubscribe", "err", err)
	}
}

func (c *Client) subscribe(ctx context.Context, cm *autopaho.ConnectionManager, filters []string) error {
	s := &paho.Subscribe{}
	for _, f := range filters {
		s.Subscriptions = append(s.Subscriptions, paho.SubscribeOptions{Topic: f, QoS: 1})
	}
	ack, err := cm.Subscribe(ctx, s)
	if err != nil {
		return fmt.Errorf("broker: subscribe: %w", err)
	}
	for i, r := range ack.Reasons {
		if r >= 0x80 {
			return fmt.Errorf("broker: subscribe %s refused (reason 0x%02x)", filters[i], r)
		}
	}
	return nil
}

// Subscribe subscribes with QoS 1 and installs the handler.
func (c *Client) Subscribe(ctx context.Context, filters []string, h Handler) error {
	pf := make([]string, len(filters))
	for i, f := range filters {
		pf[i] = c.prefix + f
	}
	c.mu.Lock()
	c.filters, c.handler = pf, h
	c.mu.Unlock()
	c.readyOnce.Do(func() { close(c.ready) })
	return c.subscribe(ctx, c.cm, pf)
}

// Publish sends a QoS 1 message and waits for the broker's PUBACK.
func (c *Client) Publish(ctx context.Context, topic string, payload []byte) error {
	_, err := c.cm.Publish(ctx, &paho.Publish{QoS: 1, Topic: c.prefix + topic, Payload: payload})
	if err != nil {
		return fmt.Errorf("broker: publish %s: %w", topic, err)
	}
	return nil
}

// Close disconnects cleanly.
func (c *Client) Close() error {
	close(c.closed)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return c.cm.Disconnect(ctx)
}
