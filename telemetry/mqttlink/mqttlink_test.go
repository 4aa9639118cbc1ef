package mqttlink

import (
	"context"
	"testing"
	"time"

	"sluice/meter"
	"sluice/meter/sim"
	"sluice/telemetry/frame"
	"sluice/telemetry/topic"
)

type recorder struct {
	topics   []string
	payloads [][]byte
}

func (r *recorder) Publish(_ context.Context, t string, p []byte) error {
	r.topics = append(r.topics, t)
	r.payloads = append(r.payloads, p)
	return nil
}

// What an emulated meter reports reaches the wire as frames under its own
// key, on its own topics, with counters 1, 2, 3...: status and tamper
// packed as the format says, receipts as voucher acks.
func TestLinkFrames(t *testing.T) {
	rec := &recorder{}
	key := [16]byte{1, 2, 3}
	l := New(Config{Publisher: func(uint64) (Publisher, error) { return rec, nil }, Key: func(uint64) [16]byte { return key }, Report: time.Hour})
	at := time.Date(2026, 11, 25, 9, 0, 0, 500, time.UTC)
	if err := l.Reading(&sim.Reading{MeterID: 7, Time: at, Unit: meter.Litres, Forward: 100, Reverse: 2, Credit: -5, Loaded: 900,
		Status: meter.ValveClosed | meter.ClosedCredit, Tamper: meter.TamperMagnet, Interval: 12}); err != nil {
		t.Fatal(err)
	}
	if err := l.Event(7, meter.Event{Seq: 1, Time: at, Kind: meter.EvTokenRejected, Reason: meter.ReasonCRC, Value: 3}); err != nil {
		t.Fatal(err)
	}
	if err := l.Receipt(meter.Receipt{MeterID: 7, Seq: 4, Status: meter.Rejected, Reason: meter.ReasonUsed, Credit: 10, Loaded: 900, Time: at}); err != nil {
		t.Fatal(err)
	}
	fk, _ := frame.NewKey(key[:])
	want := []string{topic.ForMeter(7, topic.Reading), topic.ForMeter(7, topic.Event), topic.ForMeter(7, topic.Ack)}
	for i, p := range rec.payloads {
		var f frame.Frame
		if err := frame.Open(fk, p, &f); err != nil {
			t.Fatalf("frame %d: %v", i, err)
		}
		if rec.topics[i] != want[i] || f.Counter != uint32(i+1) || f.Meter != 7 {
			t.Fatalf("frame %d on %s: %+v", i, rec.topics[i], f)
		}
		switch f.Kind {
		case frame.KindReading:
			r := f.Reading
			if r.Status != frame.ValveClosed|frame.ClosedCredit|frame.TamperMagnet || r.Credit != -5 || r.Loaded != 900 || len(r.Intervals) != 1 || r.Intervals[0] != 12 || r.Interval != time.Hour {
				t.Fatalf("reading %+v", r)
			}
		case frame.KindEvent:
			if e := f.Events[0]; e.Kind != uint8(meter.EvTokenRejected) || e.Reason != uint8(meter.ReasonCRC) || e.Value != 3 {
				t.Fatalf("event %+v", e)
			}
		case frame.KindAck:
			if a := f.Ack; a.Subject != frame.SubjectVoucher || a.Result != frame.Rejected || a.Reason != uint8(meter.ReasonUsed) || a.Ref != 4 || a.Amount != 0 {
				t.Fatalf("ack %+v", a)
			}
		}
	}
}
