package broker

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
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

// route is where device uplinks go: the topic filters (prefixed) and the
// head-end's handler.
type route struct {
	filters []string
	handler Handler
}

// Embedded is the in-process broker.
type Embedded struct {
	srv    *mqtt.Server
	tcp    *listeners.TCP
	prefix string

	route atomic.Pointer[route] // read for every publish: no lock

	stopFlush func()
	closeOnce sync.Once
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
	h := &hook{e: e, auth: cfg.Auth, timeout: cfg.AuthTimeout, log: log, flush: make(chan *flushJob, 1024), done: make(chan struct{})}
	if err := srv.AddHook(h, nil); err != nil {
		return nil, fmt.Errorf("broker: %w", err)
	}
	e.stopFlush = func() { close(h.done) }
	for range 4 {
		go h.flusher()
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
	e.route.Store(&route{filters: pf, handler: h})
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
func (e *Embedded) Close() error {
	err := e.srv.Close()
	e.closeOnce.Do(e.stopFlush)
	return err
}

// hook is the broker's authentication, ACL and uplink interception.
type hook struct {
	mqtt.HookBase
	e       *Embedded
	auth    Authenticator
	timeout time.Duration
	log     *slog.Logger
	acls    sync.Map // *mqtt.Client -> ACL (prefixed)
	pending sync.Map // *mqtt.Client -> *acks
	flush   chan *flushJob
	done    chan struct{} // closed by Close: flushers stop, acks are dropped
}

// acks are a connection's PUBACKs waiting to be written. The ingest
// acknowledges a whole batch at once; writing them one system call each
// cost a quarter of the head-end's CPU, so they are coalesced: the first
// ack of a burst schedules a flush, and the flusher writes every ack that
// arrived meanwhile in one write, in arrival order.
type acks struct {
	wmu       sync.Mutex // held while writing: one flush at a time, in order
	mu        sync.Mutex
	ids       []uint16
	scheduled bool
}

type flushJob struct {
	cl *mqtt.Client
	a  *acks
}

func (h *hook) puback(cl *mqtt.Client, id uint16) {
	v, ok := h.pending.Load(cl)
	if !ok {
		v, _ = h.pending.LoadOrStore(cl, new(acks))
	}
	a := v.(*acks)
	a.mu.Lock()
	a.ids = append(a.ids, id)
	schedule := !a.scheduled
	a.scheduled = true
	a.mu.Unlock()
	if schedule {
		select {
		case h.flush <- &flushJob{cl, a}:
		case <-h.done: // the broker is closed: the connection is gone anyway
		}
	}
}

func (h *hook) flusher() {
	var buf []byte
	for {
		var j *flushJob
		select {
		case j = <-h.flush:
		case <-h.done:
			return
		}
		j.a.wmu.Lock()
		j.a.mu.Lock()
		ids := j.a.ids
		j.a.ids, j.a.scheduled = nil, false
		j.a.mu.Unlock()
		buf = buf[:0]
		for _, id := range ids {
			// PUBACK with remaining length 2: valid in MQTT 3.1.1, and in
			// MQTT 5 it means reason code 0 (success), no properties.
			buf = append(buf, packets.Puback<<4, 2, byte(id>>8), byte(id))
		}
		// The broker writes every packet of a connection under the
		// client's lock, whole; taking it keeps these whole too.
		j.cl.Lock()
		if !j.cl.Closed() && j.cl.Net.Conn != nil {
			j.cl.Net.Conn.Write(buf)
		}
		j.cl.Unlock()
		j.a.wmu.Unlock()
	}
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

func (h *hook) OnDisconnect(cl *mqtt.Client, _ error, _ bool) {
	h.acls.Delete(cl)
	h.pending.Delete(cl)
}

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
	r := h.e.route.Load()
	if r == nil || !matchAny(r.filters, pk.TopicName) {
		return pk, nil
	}
	handler := r.handler
	topic := strings.TrimPrefix(pk.TopicName, h.e.prefix)
	ack := func() {}
	if pk.FixedHeader.Qos > 0 {
		id := pk.PacketID
		var once sync.Once
		ack = func() { once.Do(func() { h.puback(cl, id) }) }
	}
	// No copy: the broker decodes every packet from a buffer of its own
	// (mochi's Client.ReadPacket), so the handler may keep the payload.
	handler(topic, pk.Payload, ack)
	return pk, packets.ErrRejectPacket
}
