package mqttload

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"

	"sluice/internal/testenv"
	"sluice/telemetry/broker"
	"sluice/telemetry/topic"
)

// meterAuth accepts meter N with password "pw-N", allowed its own topics.
type meterAuth struct{}

func (meterAuth) Authenticate(_ context.Context, user string, pw []byte) (broker.ACL, error) {
	id, err := strconv.ParseUint(user, 10, 64)
	if err != nil || string(pw) != "pw-"+user {
		return broker.ACL{}, broker.ErrAuth
	}
	pub, sub := topic.MeterACL(id)
	return broker.ACL{Publish: pub, Subscribe: sub}, nil
}

// held is a head-end handler that records messages and sends their
// acknowledgements only when released.
type held struct {
	mu       sync.Mutex
	payloads []string
	acks     []func()
	arrived  chan struct{} // one per message
}

func (h *held) handle(_ string, p []byte, ack func()) {
	h.mu.Lock()
	h.payloads = append(h.payloads, string(p))
	h.acks = append(h.acks, ack)
	h.mu.Unlock()
	h.arrived <- struct{}{}
}

func (h *held) release() {
	h.mu.Lock()
	acks := h.acks
	h.acks = nil
	h.mu.Unlock()
	for _, a := range acks {
		a()
	}
}

func embedded(t *testing.T, h broker.Handler) *broker.Embedded {
	t.Helper()
	e, err := broker.NewEmbedded(broker.EmbeddedConfig{Listen: "127.0.0.1:0", Auth: meterAuth{}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	e.Subscribe(context.Background(), []string{topic.Uplinks}, h)
	return e
}

// Every publication reaches the head-end in order, and Send returns only
// once the head-end has acknowledged all of them: the load generator keeps
// the back-pressure of a real meter.
func TestSendWaitsForAcks(t *testing.T) {
	for _, v := range []byte{V311, V5} {
		t.Run(fmt.Sprintf("v%d", v), func(t *testing.T) {
			const n = 40
			h := &held{arrived: make(chan struct{}, n)}
			e := embedded(t, h.handle)
			ctx := context.Background()
			p, err := Dial(ctx, Config{Addr: e.Addr(), ClientID: "m7", Username: "7", Password: []byte("pw-7"), Version: v, Window: n})
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			payloads := make([][]byte, n)
			for i := range payloads {
				payloads[i] = []byte("frame " + strconv.Itoa(i))
			}
			ps := p.Encode(topic.ForMeter(7, topic.Reading), payloads)
			sent := make(chan error, 1)
			go func() { sent <- p.Send(ctx, ps) }()
			for range n {
				<-h.arrived
			}
			select {
			case err := <-sent:
				t.Fatalf("Send returned (%v) before any PUBACK was sent", err)
			default:
			}
			h.release()
			if err := <-sent; err != nil {
				t.Fatal(err)
			}
			for i, got := range h.payloads {
				if got != string(payloads[i]) {
					t.Fatalf("message %d is %q, want %q", i, got, payloads[i])
				}
			}
		})
	}
}

// A window smaller than the batch still gets everything through, the
// packet identifiers wrapping past 65535 across calls.
func TestSendWindowed(t *testing.T) {
	var mu sync.Mutex
	got := 0
	e := embedded(t, func(_ string, _ []byte, ack func()) {
		mu.Lock()
		got++
		mu.Unlock()
		ack()
	})
	ctx := context.Background()
	p, err := Dial(ctx, Config{Addr: e.Addr(), ClientID: "m8", Username: "8", Password: []byte("pw-8"), Window: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	p.nextID = 65530
	for range 3 {
		ps := p.Encode(topic.ForMeter(8, topic.Reading), make([][]byte, 7))
		if err := p.Send(ctx, ps); err != nil {
			t.Fatal(err)
		}
	}
	if got != 21 {
		t.Fatalf("head-end received %d messages, want 21", got)
	}
}

func TestLoginRefused(t *testing.T) {
	e := embedded(t, func(string, []byte, func()) {})
	for _, v := range []byte{V311, V5} {
		_, err := Dial(context.Background(), Config{Addr: e.Addr(), ClientID: "m9", Username: "9", Password: []byte("wrong"), Version: v})
		if !errors.Is(err, ErrRefused) {
			t.Fatalf("v%d: wrong password: %v, want ErrRefused", v, err)
		}
	}
}

// A publication the ACL forbids ends the connection: the run has failed.
func TestSendForbidden(t *testing.T) {
	e := embedded(t, func(_ string, _ []byte, ack func()) { ack() })
	ctx := context.Background()
	p, err := Dial(ctx, Config{Addr: e.Addr(), ClientID: "m12", Username: "12", Password: []byte("pw-12")})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if err := p.Send(ctx, p.Encode(topic.ForMeter(13, topic.Reading), [][]byte{[]byte("x")})); !errors.Is(err, ErrRefused) {
		t.Fatalf("publishing on another meter's topic: %v, want ErrRefused", err)
	}
}

// A head-end that never acknowledges keeps Send waiting; cancelling the
// context ends the wait.
func TestSendCancelled(t *testing.T) {
	e := embedded(t, func(string, []byte, func()) {})
	ctx, cancel := context.WithCancel(context.Background())
	p, err := Dial(ctx, Config{Addr: e.Addr(), ClientID: "m10", Username: "10", Password: []byte("pw-10")})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	sent := make(chan error, 1)
	go func() { sent <- p.Send(ctx, p.Encode(topic.ForMeter(10, topic.Reading), [][]byte{[]byte("x")})) }()
	cancel()
	if err := <-sent; !errors.Is(err, context.Canceled) {
		t.Fatalf("Send after cancel: %v", err)
	}
}

// Mosquitto acknowledges in order too (both protocol versions).
func TestSendMosquitto(t *testing.T) {
	testenv.RequireTCP(t, "127.0.0.1:1883")
	for _, v := range []byte{V311, V5} {
		ctx := context.Background()
		p, err := Dial(ctx, Config{Addr: "127.0.0.1:1883", ClientID: fmt.Sprintf("mqttload-test-%d", v), Version: v, Window: 8})
		if err != nil {
			t.Fatal(err)
		}
		if err := p.Send(ctx, p.Encode("mqttload-test/load", make([][]byte, 100))); err != nil {
			t.Fatalf("v%d: %v", v, err)
		}
		p.Close()
	}
}
