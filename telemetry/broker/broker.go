// Package broker is the head-end's side of MQTT: one small interface over
// the two ways Sluice meets its meters.
//
//   - Embedded (the default, `sluice serve` alone): the head-end runs the
//     broker itself (github.com/mochi-mqtt/server/v2). Every meter logs in
//     with its own credentials (username = meter number, password derived
//     from its telemetry key) and an ACL hook lets it publish and subscribe
//     only to its own topics (topic.MeterACL). The head-end's handler sits
//     inside the broker, so there is no loopback connection.
//   - Client (production, mqtt.mode = external): the head-end connects to an
//     operator's broker (Mosquitto, EMQX...) with github.com/eclipse/paho.golang
//     autopaho, which reconnects and resubscribes on its own; the broker's own
//     authentication and ACLs fence the meters.
//
// # Delivery guarantees
//
// Uplinks are QoS 1. On both brokers the head-end acknowledges a message
// (PUBACK) only when its Handler calls ack, which the ingest does after the
// transaction that stored the frame committed: a crash before that leaves the
// message unacknowledged and the meter (embedded) or the broker's persistent
// session (external) sends it again. A Handler that blocks pushes back: the
// embedded broker stops reading that meter's connection, the client stops
// reading from the external broker, and TCP flow control does the rest.
// Nothing is dropped for lack of room.
//
// # Topic prefix
//
// A Prefix ("test-1a2b/") is prepended to every topic on the wire and removed
// from what handlers see, so test runs sharing one broker never see each
// other's messages. Production leaves it empty.
package broker

import (
	"context"
	"errors"
	"strings"
)

// Handler receives one message (topic without the prefix). It may block to
// push back. It must call ack exactly once, when the message has been dealt
// with for good: stored, or refused for a reason redelivery cannot change.
type Handler func(topic string, payload []byte, ack func())

// Broker is the head-end's MQTT connection.
type Broker interface {
	// Subscribe delivers messages matching the filters to h. A broker has
	// one handler; Subscribe replaces it.
	Subscribe(ctx context.Context, filters []string, h Handler) error
	// Publish sends a QoS 1 message (not retained).
	Publish(ctx context.Context, topic string, payload []byte) error
	// Close disconnects (Client) or stops the broker (Embedded).
	Close() error
}

// ACL is what one authenticated device may do: topic filters (without the
// prefix) it may publish to and subscribe to.
type ACL struct {
	Publish   []string
	Subscribe []string
}

// Authenticator checks a device's credentials for the embedded broker.
type Authenticator interface {
	// Authenticate returns the device's ACL, or ErrAuth.
	Authenticate(ctx context.Context, username string, password []byte) (ACL, error)
}

// Errors callers branch on.
var (
	ErrAuth   = errors.New("broker: bad credentials")
	ErrClosed = errors.New("broker: closed")
)

// Match reports whether an MQTT topic filter (with + and # wildcards)
// matches a topic name.
func Match(filter, topic string) bool {
	for {
		f, frest, fmore := strings.Cut(filter, "/")
		if f == "#" {
			return true
		}
		t, trest, tmore := strings.Cut(topic, "/")
		if f != "+" && f != t {
			return false
		}
		if !fmore || !tmore {
			// "a/#" also matches "a" (the parent level).
			return fmore == tmore || (fmore && frest == "#")
		}
		filter, topic = frest, trest
	}
}

func matchAny(filters []string, topic string) bool {
	for _, f := range filters {
		if Match(f, topic) {
			return true
		}
	}
	return false
}
