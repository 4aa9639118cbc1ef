package service

import (
	"fmt"
	"testing"
	"time"

	"sluice/campaign"
	"sluice/meter"
	"sluice/telemetry/frame"
)

func TestKeyEvidence(t *testing.T) {
	at := time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)
	cases := []struct {
		name string
		f    frame.Frame
		want string
	}{
		{"sts key change", frame.Frame{Kind: frame.KindEvent, Counter: 7, Events: []frame.Event{
			{Kind: uint8(meter.EvKeyChanged), Time: at}, {Kind: uint8(meter.EvTokenAccepted), Time: at}}},
			"[{telemetry frame 7 2026-11-25 09:00:00 +0000 UTC 0 0 0 true [] 0 0}]"},
		{"voucher key trusted", frame.Frame{Kind: frame.KindEvent, Counter: 8, Events: []frame.Event{{Kind: uint8(meter.EvKeyChanged), Time: at, Value: 0xA1B2C3D4}}},
			"[{telemetry frame 8 2026-11-25 09:00:00 +0000 UTC 0 0 0 false [2712847316] 0 0}]"},
		{"voucher taken", frame.Frame{Kind: frame.KindAck, Counter: 9, Time: at, Ack: frame.Ack{Subject: frame.SubjectVoucher, Result: frame.Duplicate, Ref: 41}},
			"[{telemetry frame 9 2026-11-25 09:00:00 +0000 UTC 0 0 0 false [] 41 0}]"},
		{"voucher refused", frame.Frame{Kind: frame.KindAck, Counter: 10, Time: at, Ack: frame.Ack{Subject: frame.SubjectVoucher, Result: frame.Rejected, Reason: 3, Ref: 42}}, "[]"},
		{"reading", frame.Frame{Kind: frame.KindReading, Counter: 11, Time: at}, "[]"},
	}
	for _, c := range cases {
		got := keyEvidence(&c.f)
		if s := fmtEvidence(got); s != c.want {
			t.Errorf("%s: %s, want %s", c.name, s, c.want)
		}
	}
}

func fmtEvidence(evs []campaign.Evidence) string {
	if len(evs) == 0 {
		return "[]"
	}
	return fmt.Sprint(evs)
}
