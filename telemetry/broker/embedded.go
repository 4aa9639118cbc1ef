package broker

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
)

// EmbeddedConfig configures the in-process broker.
type EmbeddedConfig struct {
	// Listen is the TCP address, e.g. ":1883" or "127.0.0.1:0".
	Listen string
	// Prefix is prepended to every topic (tests); normally empty.
	Prefix string
	// Auth checks device credentials; required.
	Auth Authenticator
	// AuthTimeout bounds one credential check (it may call the KMS).
	AuthTimeout time.Duration
	Logger      *slog.Logger
}

// Embedded is the in-process broker.
type Embedded struct {
	srv    *mqtt.Server
	tcp    *listeners.TCP
	prefix string

	mu      sync.RWMutex
	filters []string // prefixed
	handler Handler
}

var _ Broker = (*Embedded)(nil)

// NewEmbedded starts a broker listening on cfg.Listen.
func NewEmbedded(cfg EmbeddedConfig) (*Embedded, error) {
	if cfg.Auth == nil {
		return nil, fmt.Errorf("broker: embedded broker needs an Authenticator")
	}
	if cfg.AuthTimeout == 0 {
		cfg.AuthTimeout = 5 * time.Second
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	caps := mqtt.NewDefaultServerCapabilities()
	// Frames are at most a few hundred bytes; a gateway's batch of
	// telegrams a few kilobytes.
	caps.MaximumPacketSize = 64 << 10
	// Nothing in the scheme is retained (docs/telemetry.md).
	caps.RetainAvailable = 0
	// The scheme is QoS 1 (at least once, idempotent storage); the broker
	// downgrades QoS 2 before the hook sees it, so the hook only ever
	// answers with PUBACK.
	caps.MaximumQos = 1
	srv := mqtt.New(&mqtt.Options{InlineClient: true, Capabilities: caps, Logger: log})
	e := &Embedded{srv: srv, prefix: cfg.Prefix}
	if err := srv.AddHook(&hook{e: e, auth: cfg.Auth, timeout: cfg.AuthTimeout, log: log}, nil); err != nil {
		return nil, fmt.Errorf("broker: %w", err)
	}
	e.tcp = listeners.NewTCP(listeners.Config{ID: "mqtt", Address: cfg.Listen})
	if err := srv.AddListener(e.tcp); err != nil {
		return nil, fmt.Errorf("broker: listen on %s (mqtt.listen): %w", cfg.Listen, err)
	}
	if err := srv.Serve(); err != nil {
		srv.Close()
		return nil, fmt.Errorf("broker: %w", err)
	}
	return e, nil
}

// Addr is the address the broker listens on (the port chosen for ":0").
func (e *Embedded) Addr() string { return e.tcp.Address() }

// Subscribe installs the head-end's handler for the filters.
func (e *Embedded) Subscribe(_ context.Context, filters []string, h Handler) error {
	pf := make([]string, len(filters))
	for i, f := range filters {
		pf[i] = e.prefix + f
	}
	e.mu.Lock()
	e.filters, e.handler = pf, h
	e.mu.Unlock()
	return nil
}

// Publish sends a message to the devices subscribed to topic.
func (e *Embedded) Publish(_ context.Context, topic string, payload []byte) error {
	if err := e.srv.Publish(e.prefix+topic, payload, false, 1); err != nil {
		return fmt.Errorf("broker: publish %s: %w", topic, err)
	}
	return nil
}

// Close stops the broker and disconnects every device.
func (e *Embedded) Close() error { return e.srv.Close() }

// hook is the broker's authentication, ACL and uplink interception.
type hook struct {
	mqtt.HookBase
	e       *Embedded
	auth    Authenticator
	timeout time.Duration
	log     *slog.Logger
	acls    sync.Map // *mqtt.Client -> ACL (prefixed)
}

func (h *hook) ID() string { return "sluice" }

func (h *hook) Provides(b byte) bool {
	return bytes.Contains([]byte{mqtt.OnConnectAuthenticate, mqtt.OnACLCheck, mqtt.OnPublish, mqtt.OnDisconnect}, []byte{b})
}

func (h *hook) OnConnectAuthenticate(cl *mqtt.Client, pk packets.Packet) bool {
	ctx, cancel := context.WithTimeout(context.Background(), h.timeout)
	defer cancel()
	acl, err := h.auth.Authenticate(ctx, string(pk.Connect.Username), pk.Connect.Password)
	if err != nil {
		h.log.Info("mqtt login refused", "username", string(pk.Connect.Username), "remote", cl.Net.Remote, "err", err)
		return false
	}
	p := h.e.prefix
	for i, f := range acl.Publish {
		acl.Publish[i] = p + f
	}
	for i, f := range acl.Subscribe {
		acl.Subscribe[i] = p + f
	}
	h.acls.Store(cl, acl)
	return true
}

func (h *hook) OnDisconnect(cl *mqtt.Client, _ error, _ bool) { h.acls.Delete(cl) }

func (h *hook) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	v, ok := h.acls.Load(cl)
	if !ok {
		return false
	}
	acl := v.(ACL)
	if write {
		return matchAny(acl.Publish, topic)
	}
	// A subscription filter is allowed when it is a granted filter, or a
	// plain topic one of them matches: a "+" or "#" of the device's own
	// must not widen its view.
	wild := strings.ContainsAny(topic, "+#")
	for _, f := range acl.Subscribe {
		if f == topic || (!wild && Match(f, topic)) {
			return true
		}
	}
	return false
}

// OnPublish hands device uplinks to the head-end's handler and answers them
// itself: the PUBACK goes out when the handler calls ack (after the store
// committed), not when the broker read the packet. Returning
// ErrRejectPacket stops the broker from acknowledging or routing the
// message on its own.
func (h *hook) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if cl.Net.Inline {
		return pk, nil
	}
	h.e.mu.RLock()
	handler, filters := h.e.handler, h.e.filters
	h.e.mu.RUnlock()
	if handler == nil || !matchAny(filters, pk.TopicName) {
		return pk, nil
	}
	topic := strings.TrimPrefix(pk.TopicName, h.e.prefix)
	ack := func() {}
	if pk.FixedHeader.Qos > 0 {
		id := pk.PacketID
		var once sync.Once
		ack = func() {
			once.Do(func() {
				cl.WritePacket(packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Puback}, PacketID: id, Created: time.Now().Unix()})
			})
		}
	}
	// Copy: the broker reuses nothing, but the handler may keep the bytes.
	handler(topic, append([]byte(nil), pk.Payload...), ack)
	return pk, packets.ErrRejectPacket
}
