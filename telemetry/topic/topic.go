// Package topic is the MQTT topic tree of Sluice telemetry, version 1:
//
//	sluice/v1/m/{meter}/up/reading    meter -> head-end  frame.KindReading
//	sluice/v1/m/{meter}/up/event      meter -> head-end  frame.KindEvent
//	sluice/v1/m/{meter}/up/ack        meter -> head-end  frame.KindAck
//	sluice/v1/m/{meter}/down/voucher  head-end -> meter  a signed voucher (package voucher)
//	sluice/v1/wmbus/{gateway}         gateway -> head-end  raw wireless M-Bus telegrams, hex
//
// {meter} is the meter's serial number in canonical decimal (no sign, no
// leading zero), so exactly one topic names each meter and a broker ACL
// written for "sluice/v1/m/4710001/..." cannot be dodged with "04710001".
// The version is in the path: a v2 scheme can run beside v1 on one broker.
package topic

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Root is the prefix of every version 1 topic.
const Root = "sluice/v1"

// Subscriptions of the head-end.
const (
	Uplinks = Root + "/m/+/up/+" // every meter's readings, events and acks
	WMBus   = Root + "/wmbus/+"  // every gateway's telegrams
)

// Kind says which kind of topic.
type Kind uint8

const (
	Reading Kind = 1 + iota
	Event
	Ack
	Voucher
	Gateway
)

var suffix = [...]string{Reading: "up/reading", Event: "up/event", Ack: "up/ack", Voucher: "down/voucher"}

func (k Kind) String() string {
	switch k {
	case Reading, Event, Ack, Voucher:
		return suffix[k]
	case Gateway:
		return "wmbus"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Uplink reports whether messages on the topic come from a device.
func (k Kind) Uplink() bool { return k != Voucher }

// ErrTopic reports a topic outside the scheme.
var ErrTopic = errors.New("topic: not a sluice/v1 topic")

// Topic is a parsed topic.
type Topic struct {
	Kind    Kind
	Meter   uint64 // meter topics
	Gateway string // Gateway topics
}

// String returns the topic's name.
func (t Topic) String() string {
	if t.Kind == Gateway {
		return Root + "/wmbus/" + t.Gateway
	}
	return ForMeter(t.Meter, t.Kind)
}

// ForMeter returns the topic of kind k for a meter. k must be Reading,
// Event, Ack or Voucher.
func ForMeter(meter uint64, k Kind) string {
	if k < Reading || k > Voucher {
		panic("topic: ForMeter with kind " + k.String())
	}
	return Root + "/m/" + strconv.FormatUint(meter, 10) + "/" + suffix[k]
}

// ForGateway returns the topic a wM-Bus gateway publishes on.
func ForGateway(id string) (string, error) {
	if !validGateway(id) {
		return "", fmt.Errorf("%w: gateway id %q (1-64 of A-Z a-z 0-9 - _)", ErrTopic, id)
	}
	return Root + "/wmbus/" + id, nil
}

// Parse parses a topic name (not a filter: wildcards are refused).
func Parse(s string) (Topic, error) {
	rest, ok := strings.CutPrefix(s, Root+"/")
	if !ok {
		return Topic{}, fmt.Errorf("%w: %q", ErrTopic, s)
	}
	if gw, ok := strings.CutPrefix(rest, "wmbus/"); ok {
		if !validGateway(gw) {
			return Topic{}, fmt.Errorf("%w: gateway id in %q", ErrTopic, s)
		}
		return Topic{Kind: Gateway, Gateway: gw}, nil
	}
	rest, ok = strings.CutPrefix(rest, "m/")
	if !ok {
		return Topic{}, fmt.Errorf("%w: %q", ErrTopic, s)
	}
	id, tail, ok := strings.Cut(rest, "/")
	if !ok {
		return Topic{}, fmt.Errorf("%w: %q has no message kind", ErrTopic, s)
	}
	meter, err := strconv.ParseUint(id, 10, 64)
	if err != nil || strconv.FormatUint(meter, 10) != id {
		return Topic{}, fmt.Errorf("%w: meter id %q is not canonical decimal", ErrTopic, id)
	}
	for k := Reading; k <= Voucher; k++ {
		if tail == suffix[k] {
			return Topic{Kind: k, Meter: meter}, nil
		}
	}
	return Topic{}, fmt.Errorf("%w: message kind %q", ErrTopic, tail)
}

// MeterACL returns the topic filters a meter's broker credentials may
// publish to and subscribe to: its own uplinks and downlinks, nothing else.
func MeterACL(meter uint64) (publish, subscribe []string) {
	base := Root + "/m/" + strconv.FormatUint(meter, 10)
	return []string{base + "/up/+"}, []string{base + "/down/+"}
}

// GatewayACL returns the filters a gateway's credentials may publish to.
func GatewayACL(id string) (publish []string, err error) {
	t, err := ForGateway(id)
	if err != nil {
		return nil, err
	}
	return []string{t}, nil
}

func validGateway(id string) bool {
	if len(id) == 0 || len(id) > 64 {
		return false
	}
	for i := range len(id) {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}
