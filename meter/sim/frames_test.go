package sim

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"testing"
	"time"

	"sluice/telemetry/frame"
	"sluice/telemetry/topic"
)

func telemetryKey(id uint64) [16]byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], id)
	h := sha256.Sum256(append([]byte("sim telemetry key "), b[:]...))
	return [16]byte(h[:16])
}

// broker records what the fleet publishes.
type broker struct {
	msgs []struct {
		topic   string
		payload []byte
	}
}

func (b *broker) Publish(_ context.Context, t string, p []byte) error {
	b.msgs = append(b.msgs, struct {
		topic   string
		payload []byte
	}{t, append([]byte(nil), p...)})
	return nil
}

// TestFramesOverTheTelemetryScheme runs a fleet through the Frames uplink
// and opens every message as the head-end would: the topic parses, the
// frame verifies under its meter's key, counters strictly increase per
// meter, and the readings carry the fleet's registers.
func TestFramesOverTheTelemetryScheme(t *testing.T) {
	b := &broker{}
	up := NewFrames(context.Background(), b, 1000, 50, telemetryKey)
	f, v := testFleet(t, 50, 2, up)
	f.cfg.ReceiptKey = telemetryKey
	for i := 0; i < 4*48; i++ {
		if err := f.Step(); err != nil {
			t.Fatal(err)
		}
	}
	vb, err := v.Vend(1007, 1000, f.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Deliver(1007, vb); err != nil {
		t.Fatal(err)
	}
	last := map[uint64]uint32{}
	kinds := map[frame.Kind]int{}
	var fr frame.Frame
	for _, m := range b.msgs {
		tp, err := topic.Parse(m.topic)
		if err != nil {
			t.Fatal(err)
		}
		k := telemetryKey(tp.Meter)
		key, _ := frame.NewKey(k[:])
		if err := frame.Open(key, m.payload, &fr); err != nil {
			t.Fatalf("%s: %v", m.topic, err)
		}
		if fr.Meter != tp.Meter || fr.Counter <= last[fr.Meter] {
			t.Fatalf("%s: meter %d counter %d after %d", m.topic, fr.Meter, fr.Counter, last[fr.Meter])
		}
		last[fr.Meter] = fr.Counter
		kinds[fr.Kind]++
	}
	if kinds[frame.KindReading] != 50*48 || kinds[frame.KindEvent] == 0 || kinds[frame.KindAck] == 0 {
		t.Fatalf("frames by kind: %v", kinds)
	}
	// The newest reading of meter 1007 matches the fleet's state then.
	for i := len(b.msgs) - 1; i >= 0; i-- {
		if b.msgs[i].topic != topic.ForMeter(1007, topic.Reading) {
			continue
		}
		k := telemetryKey(1007)
		key, _ := frame.NewKey(k[:])
		if err := frame.Open(key, b.msgs[i].payload, &fr); err != nil {
			t.Fatal(err)
		}
		if fr.Reading.Unit != frame.UnitLitres || fr.Reading.Interval != time.Hour || len(fr.Reading.Intervals) != 1 {
			t.Fatalf("reading %+v", fr.Reading)
		}
		break
	}
	// A frame under another meter's key does not verify.
	k := telemetryKey(1)
	other, _ := frame.NewKey(k[:])
	if err := frame.Open(other, b.msgs[0].payload, &fr); err == nil {
		t.Fatal("a frame verified under another meter's key")
	}
}

type discard struct{ n int }

func (d *discard) Publish(context.Context, string, []byte) error { d.n++; return nil }

// BenchmarkFrames: telemetry frames sealed per second (per-meter key
// schedule and AES-CMAC each), the emulator's cost of speaking MQTT.
func BenchmarkFrames(b *testing.B) {
	d := &discard{}
	up := NewFrames(context.Background(), d, 1, 1000, telemetryKey)
	r := Reading{MeterID: 1, Time: start, Unit: 1, Forward: 1000, Interval: 10, Period: time.Hour}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		r.MeterID = uint64(1 + i%1000)
		if err := up.Reading(&r); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "frames/s")
}
