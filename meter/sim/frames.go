package sim

import (
	"context"
	"fmt"

	"sluice/meter"
	"sluice/telemetry/frame"
	"sluice/telemetry/topic"
)

// Publisher sends one MQTT message; Publish must not keep payload after
// it returns. Its method is that of telemetry/broker's Broker, so the
// external-broker client and the embedded broker both are Publishers.
type Publisher interface {
	Publish(ctx context.Context, topic string, payload []byte) error
}

// Frames is the Uplink that speaks the head-end's telemetry scheme
// (docs/telemetry.md): each reading, event and receipt becomes a frame
// sealed under its meter's own telemetry key with that meter's next frame
// counter, published on the meter's topic. It keeps one 4-byte counter
// per meter, the only per-meter state it adds to the fleet.
type Frames struct {
	ctx      context.Context // for Publish: the Uplink methods carry none
	pub      Publisher
	key      func(meterID uint64) [16]byte
	first    uint64
	counters []uint32
	buf      []byte
	f        frame.Frame
}

// NewFrames returns the uplink for meters first..first+n-1, whose
// telemetry keys key returns (the KMS's per-meter derivation). ctx bounds
// every Publish.
func NewFrames(ctx context.Context, pub Publisher, first uint64, n int, key func(meterID uint64) [16]byte) *Frames {
	return &Frames{ctx: ctx, pub: pub, key: key, first: first, counters: make([]uint32, n), f: frame.Frame{Events: make([]frame.Event, 1)}}
}

// send seals u.f for meter id and publishes it on the topic of kind k.
func (u *Frames) send(id uint64, k topic.Kind) error {
	i := id - u.first
	if id < u.first || i >= uint64(len(u.counters)) {
		return fmt.Errorf("sim: frames: meter %d outside the fleet", id)
	}
	u.counters[i]++
	kb := u.key(id)
	key, err := frame.NewKey(kb[:])
	if err != nil {
		return err
	}
	u.f.Meter, u.f.Counter = id, u.counters[i]
	if u.buf, err = frame.Seal(u.buf[:0], key, &u.f); err != nil {
		return fmt.Errorf("sim: meter %d: %w", id, err)
	}
	return u.pub.Publish(u.ctx, topic.ForMeter(id, k), u.buf)
}

// Reading sends a reading frame with the interval volume.
func (u *Frames) Reading(r *Reading) error {
	u.f.Kind, u.f.Time = frame.KindReading, r.Time
	u.f.Reading = frame.Reading{Forward: r.Forward, Reverse: r.Reverse, Credit: r.Credit, Loaded: r.Loaded,
		Unit: frame.Unit(r.Unit), Status: frame.Status(r.Status) | frame.Status(r.Tamper)<<6}
	if r.Period > 0 {
		u.f.Reading.Interval = r.Period
		u.f.Reading.Intervals = append(u.f.Reading.Intervals[:0], r.Interval)
	}
	return u.send(r.MeterID, topic.Reading)
}

// Event sends one event in an event frame.
func (u *Frames) Event(meterID uint64, e meter.Event) error {
	u.f.Kind, u.f.Time = frame.KindEvent, e.Time
	u.f.Events = append(u.f.Events[:0], frame.Event{Kind: uint8(e.Kind), Reason: uint8(e.Reason), Time: e.Time, Value: e.Value})
	return u.send(meterID, topic.Event)
}

// Receipt sends the acknowledgement of a voucher.
func (u *Frames) Receipt(r meter.Receipt) error {
	a := frame.Ack{Subject: frame.SubjectVoucher, Ref: uint64(r.Seq), Credit: r.Credit, Loaded: r.Loaded}
	switch r.Status {
	case meter.Loaded:
		a.Result, a.Amount = frame.Accepted, r.Amount
	case meter.Duplicate:
		a.Result = frame.Duplicate
	default:
		a.Result, a.Reason = frame.Rejected, uint8(r.Reason)
	}
	u.f.Kind, u.f.Time, u.f.Ack = frame.KindAck, r.Time, a
	return u.send(r.MeterID, topic.Ack)
}
