// Package mqttlink is the meter's side of the telemetry scheme: it turns
// what a meter reports (a reading, an event, a voucher receipt) into a frame
// sealed under the meter's telemetry key, with the next frame counter, and
// publishes it on the meter's topic. Link implements the fleet emulator's
// sim.Uplink, so package meter/sim can drive the head-end over a real broker;
// Conn is one meter's MQTT connection (username = meter number, password =
// ingest.MQTTPassword of its telemetry key) that also receives its downlinks.
//
// A real meter takes its counter from its journal (meter.Meter.FrameCounter),
// which survives power cuts; the emulator's counters live in the Link and
// start where the caller says.
package mqttlink

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/paho"

	"sluice/meter"
	"sluice/meter/sim"
	"sluice/telemetry/frame"
	"sluice/telemetry/topic"
)

// Publisher sends one QoS 1 message and returns once the broker took it.
type Publisher interface {
	Publish(ctx context.Context, topic string, payload []byte) error
}

// Config configures a Link.
type Config struct {
	// Publisher returns the connection meter id publishes through (its own
	// Conn on the embedded broker; a shared one on a broker without
	// per-meter ACLs).
	Publisher func(id uint64) (Publisher, error)
	// Key returns meter id's telemetry key.
	Key func(id uint64) [16]byte
	// Report is the emulator's reporting period: a reading's one interval
	// covers it.
	Report time.Duration
	// Timeout bounds one publish; default 10s.
	Timeout time.Duration
	// LastCounter, when set, returns the last frame counter meter id used
	// before this Link (a restarted emulator must continue above it, or
	// the head-end refuses its frames as reused or too old); nil starts
	// every meter at 1.
	LastCounter func(id uint64) uint32
}

// Link seals and publishes frames for many meters.
type Link struct {
	cfg Config

	mu       sync.Mutex
	counters map[uint64]uint32
	keys     map[uint64]*frame.Key
}

var _ sim.Uplink = (*Link)(nil)

// New returns a Link.
func New(cfg Config) *Link {
	if cfg.Timeout == 0 {
		cfg.Timeout = 10 * time.Second
	}
	return &Link{cfg: cfg, counters: make(map[uint64]uint32), keys: make(map[uint64]*frame.Key)}
}

// Seal assigns f the meter's next counter and seals it.
func (l *Link) Seal(f *frame.Frame) ([]byte, error) {
	l.mu.Lock()
	k, ok := l.keys[f.Meter]
	if !ok {
		raw := l.cfg.Key(f.Meter)
		var err error
		if k, err = frame.NewKey(raw[:]); err != nil {
			l.mu.Unlock()
			return nil, err
		}
		l.keys[f.Meter] = k
		if l.cfg.LastCounter != nil {
			l.counters[f.Meter] = l.cfg.LastCounter(f.Meter)
		}
	}
	if l.counters[f.Meter] == ^uint32(0) {
		l.mu.Unlock()
		return nil, fmt.Errorf("mqttlink: meter %d: frame counter exhausted (a key change resets it)", f.Meter)
	}
	l.counters[f.Meter]++
	f.Counter = l.counters[f.Meter]
	l.mu.Unlock()
	return frame.Seal(nil, k, f)
}

// Send seals f and publishes it; it returns the bytes sent, which tests
// replay.
func (l *Link) Send(ctx context.Context, f *frame.Frame) ([]byte, error) {
	b, err := l.Seal(f)
	if err != nil {
		return nil, err
	}
	return b, l.Raw(ctx, f.Meter, f.Kind, b)
}

// Raw publishes bytes on meter id's uplink topic of the frame kind k.
func (l *Link) Raw(ctx context.Context, id uint64, k frame.Kind, b []byte) error {
	var tk topic.Kind
	switch k {
	case frame.KindReading:
		tk = topic.Reading
	case frame.KindEvent:
		tk = topic.Event
	case frame.KindAck:
		tk = topic.Ack
	default:
		return fmt.Errorf("mqttlink: frame kind %d", k)
	}
	p, err := l.cfg.Publisher(id)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, l.cfg.Timeout)
	defer cancel()
	return p.Publish(ctx, topic.ForMeter(id, tk), b)
}

// FromSim converts an emulated meter's reading to a frame.
func FromSim(r *sim.Reading, report time.Duration) frame.Frame {
	f := frame.Frame{Kind: frame.KindReading, Meter: r.MeterID, Time: r.Time.Truncate(time.Second)}
	f.Reading = frame.Reading{Forward: r.Forward, Reverse: r.Reverse, Credit: r.Credit, Loaded: r.Loaded,
		Unit: frame.Unit(r.Unit), Status: frame.Status(r.Status) | frame.Status(r.Tamper)<<6}
	if report >= time.Second && report <= 18*time.Hour {
		f.Reading.Interval = report.Truncate(time.Second)
		f.Reading.Intervals = []uint32{r.Interval}
	}
	return f
}

// Reading implements sim.Uplink.
func (l *Link) Reading(r *sim.Reading) error {
	f := FromSim(r, l.cfg.Report)
	_, err := l.Send(context.Background(), &f)
	return err
}

// Event implements sim.Uplink.
func (l *Link) Event(id uint64, e meter.Event) error {
	f := frame.Frame{Kind: frame.KindEvent, Meter: id, Time: e.Time.Truncate(time.Second),
		Events: []frame.Event{{Kind: uint8(e.Kind), Reason: uint8(e.Reason), Time: e.Time.Truncate(time.Second), Value: e.Value}}}
	_, err := l.Send(context.Background(), &f)
	return err
}

// Receipt implements sim.Uplink: a voucher receipt travels as an ack frame.
func (l *Link) Receipt(r meter.Receipt) error {
	f := AckOf(r)
	_, err := l.Send(context.Background(), &f)
	return err
}

// AckOf converts a meter's voucher receipt to an ack frame.
func AckOf(r meter.Receipt) frame.Frame {
	a := frame.Ack{Subject: frame.SubjectVoucher, Result: frame.Result(r.Status), Ref: uint64(r.Seq), Credit: r.Credit, Loaded: r.Loaded}
	if r.Status == meter.Loaded {
		a.Amount = r.Amount
	}
	if r.Status == meter.Rejected {
		a.Reason = uint8(r.Reason)
		if a.Reason == 0 {
			a.Reason = uint8(meter.ReasonFormat)
		}
	}
	return frame.Frame{Kind: frame.KindAck, Meter: r.MeterID, Time: r.Time.Truncate(time.Second), Ack: a}
}

// DialConfig configures one meter's connection.
type DialConfig struct {
	URL      string // mqtt://host:port
	Username string // the meter number on the embedded broker
	Password string
	ClientID string
	Prefix   string // tests
	// Meter, when set, subscribes to the meter's downlinks.
	Meter uint64
	// OnDownlink receives the downlinks (topic without prefix).
	OnDownlink func(topic string, payload []byte)
}

// Conn is one MQTT connection of a meter (or of a test fleet).
type Conn struct {
	cm     *autopaho.ConnectionManager
	prefix string
	cancel context.CancelFunc
}

// ErrRefused reports a publish the broker refused (MQTT 5 reason >= 0x80).
var ErrRefused = errors.New("mqttlink: publish refused by the broker")

// Dial connects and, with cfg.Meter, subscribes to the meter's downlinks.
func Dial(ctx context.Context, cfg DialConfig) (*Conn, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("mqttlink: URL %q", cfg.URL)
	}
	if cfg.ClientID == "" {
		cfg.ClientID = cfg.Prefix + "meter-" + cfg.Username
	}
	c := &Conn{prefix: cfg.Prefix}
	failed := make(chan error, 1)
	cctx, cancel := context.WithCancel(context.Background())
	c.cancel = cancel
	ac := autopaho.ClientConfig{
		ServerUrls: []*url.URL{u}, KeepAlive: 60, CleanStartOnInitialConnection: true,
		ConnectUsername: cfg.Username, ConnectPassword: []byte(cfg.Password), ConnectTimeout: 10 * time.Second,
		OnConnectError: func(err error) {
			select {
			case failed <- err:
			default:
			}
		},
		ClientConfig: paho.ClientConfig{ClientID: cfg.ClientID},
	}
	if cfg.OnDownlink != nil {
		ac.OnPublishReceived = []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			t := pr.Packet.Topic
			if len(t) >= len(cfg.Prefix) {
				t = t[len(cfg.Prefix):]
			}
			cfg.OnDownlink(t, pr.Packet.Payload)
			return true, nil
		}}
	}
	cm, err := autopaho.NewConnection(cctx, ac)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("mqttlink: %w", err)
	}
	c.cm = cm
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	defer wcancel()
	up := make(chan error, 1)
	go func() { up <- cm.AwaitConnection(wctx) }()
	select {
	case err = <-up:
	case err = <-failed:
	}
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("mqttlink: connect %s as %q: %w", cfg.URL, cfg.Username, err)
	}
	if cfg.Meter != 0 {
		filter := cfg.Prefix + topic.ForMeter(cfg.Meter, topic.Voucher)
		ack, err := cm.Subscribe(wctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: filter, QoS: 1}}})
		if err == nil && ack.Reasons[0] >= 0x80 {
			err = fmt.Errorf("%w: subscribe reason 0x%02x", ErrRefused, ack.Reasons[0])
		}
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("mqttlink: subscribe %s: %w", filter, err)
		}
	}
	return c, nil
}

// Publish sends a QoS 1 message and waits for the broker's PUBACK.
func (c *Conn) Publish(ctx context.Context, t string, payload []byte) error {
	r, err := c.cm.Publish(ctx, &paho.Publish{QoS: 1, Topic: c.prefix + t, Payload: payload})
	// paho reports a refusal as an error and the PUBACK together: the
	// reason code is what says it was the broker's decision.
	if r != nil && r.ReasonCode >= 0x80 {
		return fmt.Errorf("%w: %s (reason 0x%02x)", ErrRefused, t, r.ReasonCode)
	}
	if err != nil {
		return fmt.Errorf("mqttlink: publish %s: %w", t, err)
	}
	return nil
}

// Close disconnects.
func (c *Conn) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	err := c.cm.Disconnect(ctx)
	c.cancel()
	return err
}

// Username is the embedded broker's username of meter id.
func Username(id uint64) string { return strconv.FormatUint(id, 10) }
