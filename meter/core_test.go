package meter

import (
	"testing"
	"time"
)

func TestFriendly(t *testing.T) {
	p := DefaultParams()
	p.Holidays = []Day{DayOf(2026, time.December, 25)}
	cases := []struct {
		at   time.Time
		want bool
	}{
		{t0, false}, // Monday 10:00
		{time.Date(2026, 3, 2, 17, 59, 0, 0, time.UTC), false},
		{time.Date(2026, 3, 2, 18, 0, 0, 0, time.UTC), true},   // night starts
		{time.Date(2026, 3, 3, 6, 59, 0, 0, time.UTC), true},   // across midnight
		{time.Date(2026, 3, 3, 7, 0, 0, 0, time.UTC), false},   // night ends
		{time.Date(2026, 3, 7, 12, 0, 0, 0, time.UTC), true},   // Saturday
		{time.Date(2026, 3, 8, 12, 0, 0, 0, time.UTC), true},   // Sunday
		{time.Date(2026, 12, 25, 12, 0, 0, 0, time.UTC), true}, // holiday (a Friday)
		{time.Date(2026, 12, 24, 12, 0, 0, 0, time.UTC), false},
	}
	for _, c := range cases {
		if got := p.Friendly(c.at); got != c.want {
			t.Errorf("Friendly(%s) = %v, want %v", c.at.Format(time.RFC1123), got, c.want)
		}
	}
	// Local time: 17:30 UTC is 19:30 in UTC+2, inside the night period.
	p.UTCOffset = 120
	if !p.Friendly(time.Date(2026, 3, 2, 17, 30, 0, 0, time.UTC)) {
		t.Error("UTC offset not applied")
	}
	p.FriendlyLimit = 0
	if p.Friendly(time.Date(2026, 3, 7, 12, 0, 0, 0, time.UTC)) {
		t.Error("friendly period with FriendlyLimit 0")
	}
}

// TestCoreTransitions walks the supply state machine through every
// transition, one step per row, checking credit, status and effects.
func TestCoreTransitions(t *testing.T) {
	p := DefaultParams() // low 1000, emergency 500, friendly 200
	p.CloseOnTamper = true
	night := time.Date(2026, 3, 2, 20, 0, 0, 0, time.UTC)
	morning := time.Date(2026, 3, 3, 8, 0, 0, 0, time.UTC)
	type step struct {
		name       string
		do         func(c *Core) Effect
		credit     int64
		status     Status
		eff        Effect
		tamper     Tamper
		checkTampr bool
	}
	consume := func(at time.Time, fwd, rev uint32) func(c *Core) Effect {
		return func(c *Core) Effect { return c.Consume(&p, at, fwd, rev) }
	}
	load := func(at time.Time, n int64) func(c *Core) Effect {
		return func(c *Core) Effect { return c.Load(&p, at, n) }
	}
	emergency := func(at time.Time) func(c *Core) Effect {
		return func(c *Core) Effect { _, e := c.RequestEmergency(&p, at); return e }
	}
	steps := []step{
		{"provisioned empty: closed for credit", func(c *Core) Effect { return c.Settle(&p, t0) }, 0, ValveClosed | ClosedCredit | LowCredit, EffValveClosed | EffLowCredit, 0, false},
		{"load opens", load(t0, 3000), 3000, 0, EffValveOpened, 0, false},
		{"consume above threshold", consume(t0, 1500, 0), 1500, 0, 0, 0, false},
		{"cross low-credit threshold warns once", consume(t0, 600, 0), 900, LowCredit, EffLowCredit, 0, false},
		{"no second warning", consume(t0, 100, 0), 800, LowCredit, 0, 0, false},
		{"exhausted: valve closes", consume(t0, 800, 0), 0, LowCredit | ValveClosed | ClosedCredit, EffValveClosed | EffExhausted, 0, false},
		{"flow while closed is reported", consume(t0, 3, 0), -3, LowCredit | ValveClosed | ClosedCredit, EffFlowWhileClosed, 0, false},
		{"emergency credit reopens", emergency(t0), -3, LowCredit | Emergency, EffValveOpened, 0, false},
		{"emergency refused while in use", emergency(t0), -3, LowCredit | Emergency, 0, 0, false},
		{"emergency exhausted closes", consume(t0, 497, 0), -500, LowCredit | Emergency | ValveClosed | ClosedCredit, EffValveClosed, 0, false},
		{"load repays debt first and reopens", load(t0, 2500), 2000, 0, EffValveOpened, 0, false},
		{"night: friendly credit keeps valve open past zero", consume(night, 2100, 0), -100, LowCredit, EffLowCredit | EffExhausted, 0, false},
		{"night: friendly limit reached closes", consume(night, 100, 0), -200, LowCredit | ValveClosed | ClosedCredit, EffValveClosed, 0, false},
		{"load below zero keeps it closed", load(night, 150), -50, LowCredit | ValveClosed | ClosedCredit, 0, 0, false},
		{"load above zero reopens", load(night, 1150), 1100, 0, EffValveOpened, 0, false},
		{"night use into debt", consume(night, 1200, 0), -100, LowCredit, EffLowCredit | EffExhausted, 0, false},
		{"morning: friendly period over, valve closes on settle", func(c *Core) Effect { return c.Settle(&p, morning) }, -100, LowCredit | ValveClosed | ClosedCredit, EffValveClosed, 0, false},
		{"load reopens", load(morning, 5100), 5000, 0, EffValveOpened, 0, false},
		{"small reverse flow tolerated", consume(morning, 0, 5), 5000, 0, 0, 0, true},
		{"reverse flow beyond limit latches tamper, no credit earned", consume(morning, 0, 50), 5000, 0, EffReverseFlow, TamperReverse, true},
		{"magnet closes valve (CloseOnTamper)", func(c *Core) Effect { return c.SetTamper(&p, morning, TamperMagnet) }, 5000, ValveClosed | ClosedTamper, EffValveClosed, TamperReverse | TamperMagnet, true},
		{"clearing magnet reopens", func(c *Core) Effect { return c.ClearTamper(&p, morning, TamperMagnet) }, 5000, 0, EffValveOpened, TamperReverse, true},
		{"remote close holds", func(c *Core) Effect { return c.ForceValve(&p, morning, true) }, 5000, ValveClosed | ClosedRemote, EffValveClosed, TamperReverse, true},
		{"credit does not open a held valve", load(morning, 10), 5010, ValveClosed | ClosedRemote, 0, TamperReverse, true},
		{"release opens", func(c *Core) Effect { return c.ForceValve(&p, morning, false) }, 5010, 0, EffValveOpened, TamperReverse, true},
	}
	var c Core
	for _, s := range steps {
		eff := s.do(&c)
		if c.Credit != s.credit || c.Status != s.status || eff != s.eff || (s.checkTampr && c.Tamper != s.tamper) {
			t.Fatalf("%s: credit %d status %06b effect %06b tamper %05b; want %d %06b %06b %05b",
				s.name, c.Credit, c.Status, eff, c.Tamper, s.credit, s.status, s.eff, s.tamper)
		}
	}
	if c.Forward != 1500+600+100+800+3+497+2100+100+1200 || c.Reverse != 55 || c.Loaded != 3000+2500+150+1150+5100+10 {
		t.Errorf("registers: forward %d reverse %d loaded %d", c.Forward, c.Reverse, c.Loaded)
	}
}

// TestCurrencyChargingIsExact: a Minor meter charges price per m3 with the
// fraction carried, so many small ticks cost exactly what one big one does.
func TestCurrencyChargingIsExact(t *testing.T) {
	p := DefaultParams()
	p.Unit, p.Price = Minor, 1337 // 13.37 per m3
	var small, big Core
	small.Load(&p, t0, 100000)
	big.Load(&p, t0, 100000)
	for i := 0; i < 7000; i++ {
		small.Consume(&p, t0, 1, 0)
	}
	big.Consume(&p, t0, 7000, 0)
	if small.Credit != big.Credit || small.CostRem != big.CostRem {
		t.Fatalf("7000 x 1 L: credit %d rem %d; 1 x 7000 L: credit %d rem %d", small.Credit, small.CostRem, big.Credit, big.CostRem)
	}
	if want := int64(100000 - 7000*1337/1000); big.Credit != want || big.CostRem != 7000*1337%1000 {
		t.Errorf("credit %d rem %d, want %d rem %d", big.Credit, big.CostRem, want, 7000*1337%1000)
	}
}
