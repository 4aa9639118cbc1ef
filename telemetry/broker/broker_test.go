package broker

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/paho"

	"sluice/internal/testenv"
	"sluice/telemetry/topic"
)

func TestMatch(t *testing.T) {
	for _, c := range []struct {
		filter, topic string
		want          bool
	}{
		{"sluice/v1/m/+/up/+", "sluice/v1/m/7/up/reading", true},
		{"sluice/v1/m/+/up/+", "sluice/v1/m/7/down/voucher", false},
		{"sluice/v1/m/+/up/+", "sluice/v1/m/7/up", false},
		{"sluice/v1/m/+/up/+", "sluice/v1/m/7/up/reading/x", false},
		{"sluice/#", "sluice/v1/wmbus/gw1", true},
		{"sluice/#", "sluice", true},
		{"sluice/v1/wmbus/+", "sluice/v1/wmbus/gw1", true},
		{"a/b", "a/b", true},
		{"a/b", "a/c", false},
	} {
		if got := Match(c.filter, c.topic); got != c.want {
			t.Errorf("Match(%q, %q) = %v", c.filter, c.topic, got)
		}
	}
}

// meterAuth accepts meter N with password "pw-N".
type meterAuth struct{}

func (meterAuth) Authenticate(_ context.Context, user string, pw []byte) (ACL, error) {
	id, err := strconv.ParseUint(user, 10, 64)
	if err != nil || string(pw) != "pw-"+user {
		return ACL{}, ErrAuth
	}
	pub, sub := topic.MeterACL(id)
	return ACL{Publish: pub, Subscribe: sub}, nil
}

func uniquePrefix(t testing.TB) string {
	var b [6]byte
	rand.Read(b[:])
	return "test-" + hex.EncodeToString(b[:]) + "/"
}

// device is a meter's MQTT connection for tests.
type device struct {
	cm   *autopaho.ConnectionManager
	recv chan *paho.Publish
}

func dialDevice(t testing.TB, addr, user, pw, prefix string, subscribe ...string) (*device, error) {
	t.Helper()
	u, _ := url.Parse("mqtt://" + addr)
	d := &device{recv: make(chan *paho.Publish, 16)}
	up := make(chan error, 1)
	ctx, cancel := context.WithCancel(context.Background())
	cm, err := autopaho.NewConnection(ctx, autopaho.ClientConfig{
		ServerUrls: []*url.URL{u}, KeepAlive: 30, CleanStartOnInitialConnection: true,
		ConnectUsername: user, ConnectPassword: []byte(pw), ConnectTimeout: 5 * time.Second,
		OnConnectionUp: func(*autopaho.ConnectionManager, *paho.Connack) { up <- nil },
		OnConnectError: func(err error) {
			select {
			case up <- err:
			default:
			}
		},
		ClientConfig: paho.ClientConfig{
			ClientID: uniquePrefix(t) + "dev-" + user,
			OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
				d.recv <- pr.Packet
				return true, nil
			}},
		},
	})
	if err != nil {
		cancel()
		return nil, err
	}
	d.cm = cm
	t.Cleanup(func() {
		c, cc := context.WithTimeout(context.Background(), time.Second)
		defer cc()
		cm.Disconnect(c)
		cancel()
	})
	select {
	case err := <-up:
		if err != nil {
			cancel()
			return nil, err
		}
	case <-time.After(5 * time.Second):
		cancel()
		return nil, errors.New("connect timeout")
	}
	actx, ac := context.WithTimeout(context.Background(), 5*time.Second)
	defer ac()
	if err := cm.AwaitConnection(actx); err != nil {
		return nil, err
	}
	for _, s := range subscribe {
		sctx, sc := context.WithTimeout(context.Background(), 5*time.Second)
		ack, err := cm.Subscribe(sctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: prefix + s, QoS: 1}}})
		sc()
		if err != nil {
			return nil, err
		}
		if ack.Reasons[0] >= 0x80 {
			return nil, fmt.Errorf("subscribe %s: reason 0x%02x", s, ack.Reasons[0])
		}
	}
	return d, nil
}

func (d *device) publish(ctx context.Context, topic string, payload []byte) error {
	r, err := d.cm.Publish(ctx, &paho.Publish{QoS: 1, Topic: topic, Payload: payload})
	if err != nil {
		return err
	}
	if r != nil && r.ReasonCode >= 0x80 {
		return fmt.Errorf("publish refused: reason 0x%02x", r.ReasonCode)
	}
	return nil
}

type received struct {
	topic   string
	payload string
	ack     func()
}

// exercise runs the same checks on any Broker: uplinks reach the handler
// with the prefix removed, and downlinks reach the subscribed device. On
// the embedded broker the device's publish completes only once the handler
// acknowledged (the ingest acks after its commit); an external broker
// answers the device itself and holds the message for the head-end instead
// (TestClientRedelivers).
func exercise(t *testing.T, b Broker, dev *device, prefix string, meter uint64, embedded bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got := make(chan received, 4)
	if err := b.Subscribe(ctx, []string{topic.Uplinks, topic.WMBus}, func(tp string, p []byte, ack func()) {
		got <- received{tp, string(p), ack}
	}); err != nil {
		t.Fatal(err)
	}
	up := topic.ForMeter(meter, topic.Reading)
	done := make(chan error, 1)
	go func() { done <- dev.publish(ctx, prefix+up, []byte("frame-1")) }()
	var r received
	select {
	case r = <-got:
	case <-ctx.Done():
		t.Fatal("uplink never reached the handler")
	}
	if r.topic != up || r.payload != "frame-1" {
		t.Fatalf("handler got %q %q", r.topic, r.payload)
	}
	if embedded {
		select {
		case err := <-done:
			t.Fatalf("publish completed (%v) before the handler acknowledged", err)
		case <-time.After(300 * time.Millisecond):
		}
	}
	r.ack()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-ctx.Done():
		t.Fatal("publish never completed after ack")
	}

	down := topic.ForMeter(meter, topic.Voucher)
	if err := b.Publish(ctx, down, []byte("voucher")); err != nil {
		t.Fatal(err)
	}
	select {
	case p := <-dev.recv:
		if p.Topic != prefix+down || string(p.Payload) != "voucher" {
			t.Fatalf("device got %q %q", p.Topic, p.Payload)
		}
	case <-ctx.Done():
		t.Fatal("downlink never reached the device")
	}
}

func TestEmbedded(t *testing.T) {
	prefix := uniquePrefix(t)
	e, err := NewEmbedded(EmbeddedConfig{Listen: "127.0.0.1:0", Prefix: prefix, Auth: meterAuth{}})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if !strings.HasPrefix(e.Addr(), "127.0.0.1:") || strings.HasSuffix(e.Addr(), ":0") {
		t.Fatalf("address %s", e.Addr())
	}
	if _, err := dialDevice(t, e.Addr(), "4710001", "pw-4710002", prefix); err == nil {
		t.Fatal("a wrong password was accepted")
	}
	// A meter cannot subscribe to another meter's downlinks.
	if _, err := dialDevice(t, e.Addr(), "4710001", "pw-4710001", prefix, topic.ForMeter(4710002, topic.Voucher)); err == nil {
		t.Fatal("meter 4710001 subscribed to 4710002's vouchers")
	}
	dev, err := dialDevice(t, e.Addr(), "4710001", "pw-4710001", prefix, topic.ForMeter(4710001, topic.Voucher))
	if err != nil {
		t.Fatal(err)
	}
	exercise(t, e, dev, prefix, 4710001, true)

	// Nor publish as another meter: the broker refuses it (MQTT 5
	// PUBACK 0x87) and the handler never sees it.
	got := make(chan string, 1)
	e.Subscribe(context.Background(), []string{topic.Uplinks}, func(tp string, _ []byte, ack func()) { got <- tp; ack() })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := dev.publish(ctx, prefix+topic.ForMeter(4710002, topic.Reading), []byte("x")); err == nil {
		t.Fatal("meter 4710001 published as 4710002")
	}
	select {
	case tp := <-got:
		t.Fatalf("handler got a spoofed uplink on %s", tp)
	case <-time.After(100 * time.Millisecond):
	}
}

const mosquitto = "127.0.0.1:1883"

func TestClientMosquitto(t *testing.T) {
	testenv.RequireTCP(t, mosquitto)
	prefix := uniquePrefix(t)
	c, err := Dial(context.Background(), ClientConfig{URL: "mqtt://" + mosquitto, ClientID: prefix + "headend", Prefix: prefix, SessionExpiry: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	dev, err := dialDevice(t, mosquitto, "", "", prefix, topic.ForMeter(4710001, topic.Voucher))
	if err != nil {
		t.Fatal(err)
	}
	exercise(t, c, dev, prefix, 4710001, false)
}

func TestDialErrors(t *testing.T) {
	if _, err := Dial(context.Background(), ClientConfig{URL: "not a url", ClientID: "x"}); err == nil || !strings.Contains(err.Error(), "mqtt.url") {
		t.Fatalf("bad URL: %v", err)
	}
	if _, err := Dial(context.Background(), ClientConfig{URL: "mqtt://127.0.0.1:1"}); err == nil || !strings.Contains(err.Error(), "client_id") {
		t.Fatalf("no client ID: %v", err)
	}
	if _, err := NewEmbedded(EmbeddedConfig{Listen: "127.0.0.1:0"}); err == nil {
		t.Fatal("embedded broker without authentication")
	}
}

// A message the head-end never acknowledged (it crashed before its commit)
// is delivered again when it reconnects to its persistent session.
func TestClientRedelivers(t *testing.T) {
	testenv.RequireTCP(t, mosquitto)
	prefix := uniquePrefix(t)
	cfg := ClientConfig{URL: "mqtt://" + mosquitto, ClientID: prefix + "headend", Prefix: prefix, SessionExpiry: time.Minute}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got := make(chan received, 4)
	h := func(tp string, p []byte, ack func()) { got <- received{tp, string(p), ack} }
	c, err := Dial(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Subscribe(ctx, []string{topic.Uplinks}, h); err != nil {
		t.Fatal(err)
	}
	dev, err := dialDevice(t, mosquitto, "", "", prefix)
	if err != nil {
		t.Fatal(err)
	}
	up := topic.ForMeter(4710001, topic.Reading)
	if err := dev.publish(ctx, prefix+up, []byte("frame-7")); err != nil {
		t.Fatal(err)
	}
	select {
	case <-got: // received, never acknowledged
	case <-ctx.Done():
		t.Fatal("no delivery")
	}
	c.Close()

	c2, err := Dial(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	if err := c2.Subscribe(ctx, []string{topic.Uplinks}, h); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-got:
		if r.topic != up || r.payload != "frame-7" {
			t.Fatalf("redelivered %q %q", r.topic, r.payload)
		}
		r.ack()
	case <-ctx.Done():
		t.Fatal("the unacknowledged message was not delivered again")
	}
}
