package protect

import (
	"testing"
	"time"

	"sluice/store"
	"sluice/telemetry/frame"
)

func rules(fs []Finding) []string {
	var out []string
	for _, f := range fs {
		out = append(out, f.Rule)
	}
	return out
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestReadingRules(t *testing.T) {
	closed := frame.ValveClosed | frame.ClosedCredit
	for _, c := range []struct {
		name string
		prev State
		r    frame.Reading
		want []string
	}{
		{"first reading, all quiet", State{}, frame.Reading{Forward: 100, Unit: 1}, nil},
		{"normal use", State{Seen: true, Forward: 100}, frame.Reading{Forward: 180, Unit: 1}, nil},
		{"flow while closed", State{Seen: true, Forward: 100, Status: closed}, frame.Reading{Forward: 160, Status: closed, Unit: 1}, []string{RuleFlowWhileClosed}},
		{"flow below the threshold while closed", State{Seen: true, Forward: 100, Status: closed}, frame.Reading{Forward: 104, Status: closed, Unit: 1}, nil},
		{"valve closed during the interval", State{Seen: true, Forward: 100}, frame.Reading{Forward: 160, Status: closed, Unit: 1}, nil},
		{"reverse register grew", State{Seen: true, Reverse: 5}, frame.Reading{Reverse: 40, Unit: 1}, []string{RuleReverseFlow}},
		{"reverse flag", State{Seen: true}, frame.Reading{Status: frame.ReverseFlow, Unit: 1}, []string{RuleReverseFlow}},
		{"magnet and cover", State{Seen: true}, frame.Reading{Status: frame.TamperMagnet | frame.TamperCover, Unit: 1}, []string{RuleTamperMagnet, RuleTamperCover}},
	} {
		t.Run(c.name, func(t *testing.T) {
			next, fs := Reading(Thresholds{}, c.prev, "4710001", c.r)
			if !equal(rules(fs), c.want) {
				t.Fatalf("rules %v, want %v", rules(fs), c.want)
			}
			if !next.Seen || next.Forward != c.r.Forward || next.Status != c.r.Status {
				t.Fatalf("state not advanced: %+v", next)
			}
		})
	}
}

func TestUnsold(t *testing.T) {
	if _, ok := Unsold(Thresholds{}, "1", frame.UnitLitres, 1000, 1000); ok {
		t.Fatal("loaded = vended raised an alert")
	}
	f, ok := Unsold(Thresholds{}, "1", frame.UnitLitres, 1500, 1000)
	if !ok || f.Rule != RuleUnsoldCredit || f.Severity != store.SeverityCritical || f.Details["excess_litres"] != int64(500) || f.Details["suggest"] != "key-change" {
		t.Fatalf("unsold: %+v %v", f, ok)
	}
	if _, ok := Unsold(Thresholds{UnsoldCreditLitres: 500}, "1", frame.UnitLitres, 1500, 1000); ok {
		t.Fatal("excess within the tolerance raised an alert")
	}
	if _, ok := Unsold(Thresholds{}, "1", frame.UnitMinor, 1500, 1000); ok {
		t.Fatal("money meter compared against litres")
	}
}

func TestEventRules(t *testing.T) {
	at := time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)
	var s State
	var fs []Finding
	// Four CRC rejections and a used token: not yet guessing.
	for i := range 4 {
		s, fs = Events(Thresholds{}, s, "1", []frame.Event{{Kind: evTokenRejected, Reason: reasonCRC, Time: at.Add(time.Duration(i) * time.Minute)}})
		if len(fs) != 0 {
			t.Fatalf("rejection %d: %v", i, rules(fs))
		}
	}
	s, fs = Events(Thresholds{}, s, "1", []frame.Event{{Kind: evTokenRejected, Reason: 3, Time: at}})
	if len(fs) != 0 {
		t.Fatalf("a used token counted as guessing: %v", rules(fs))
	}
	// The fifth CRC failure within a day is.
	s, fs = Events(Thresholds{}, s, "1", []frame.Event{{Kind: evTokenRejected, Reason: reasonCRC, Time: at.Add(time.Hour)}})
	if !equal(rules(fs), []string{RuleTokenGuessing}) {
		t.Fatalf("fifth rejection: %v", rules(fs))
	}
	// A day later the old ones have aged out.
	_, fs = Events(Thresholds{}, s, "1", []frame.Event{{Kind: evTokenRejected, Reason: reasonCRC, Time: at.Add(48 * time.Hour)}})
	if len(fs) != 0 {
		t.Fatalf("aged rejections still count: %v", rules(fs))
	}
	_, fs = Events(Thresholds{}, State{}, "1", []frame.Event{{Kind: evTamper, Value: tamperMagnet | tamperReverse}, {Kind: evFlowWhileClosed, Value: 30}, {Kind: evLockout, Value: 600}})
	if !equal(rules(fs), []string{RuleTamperMagnet, RuleReverseFlow, RuleFlowWhileClosed, RuleTokenGuessing}) {
		t.Fatalf("events: %v", rules(fs))
	}
}

func TestAckAndSilence(t *testing.T) {
	if fs := Ack("1", frame.Ack{Subject: frame.SubjectVoucher, Result: frame.Rejected, Reason: 6, Ref: 3}); !equal(rules(fs), []string{RuleVoucherRejected}) {
		t.Fatalf("rejected voucher: %v", rules(fs))
	}
	if fs := Ack("1", frame.Ack{Subject: frame.SubjectVoucher, Result: frame.Accepted, Ref: 3}); len(fs) != 0 {
		t.Fatalf("accepted voucher: %v", rules(fs))
	}
	now := time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)
	if _, ok := Silent(Thresholds{}, now, store.MeterActivity{Number: "1", LastFrameAt: now.Add(-25 * time.Hour)}); ok {
		t.Fatal("25 h is within the default silence")
	}
	if _, ok := Silent(Thresholds{}, now, store.MeterActivity{Number: "1", LastFrameAt: now.Add(-27 * time.Hour)}); !ok {
		t.Fatal("27 h of silence not flagged")
	}
	if _, ok := Silent(Thresholds{}, now, store.MeterActivity{Number: "1"}); ok {
		t.Fatal("a meter that never reported is not silent, it is not installed")
	}
}

func TestBypass(t *testing.T) {
	// Five neighbours in one area using 200-400 L a day; meter 1 used
	// 300 L a day before and 20 L a day now.
	recent := []store.Consumption{{MeterID: 1, Area: "north", Litres: 7 * 20, Readings: 10}}
	history := []store.Consumption{{MeterID: 1, Area: "north", Litres: 28 * 300, Readings: 40}}
	for i := int64(2); i <= 6; i++ {
		recent = append(recent, store.Consumption{MeterID: i, Area: "north", Litres: 7 * (100 + 50*i), Readings: 10})
		history = append(history, store.Consumption{MeterID: i, Area: "north", Litres: 28 * (100 + 50*i), Readings: 40})
	}
	got := Bypass(Thresholds{}, recent, history, map[int64]string{1: "4710001"})
	if len(got) != 1 || !equal(rules(got[1]), []string{RuleBypassOwn, RuleBypassArea}) {
		t.Fatalf("bypass: %v", got)
	}
	// Too few neighbours and too little history: nothing to judge.
	got = Bypass(Thresholds{}, recent[:2], []store.Consumption{{MeterID: 1, Litres: 28 * 10, Readings: 40}}, nil)
	if len(got) != 0 {
		t.Fatalf("judged on too little: %v", got)
	}
}
