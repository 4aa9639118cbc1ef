package meter

import (
	"time"
)

// Unit is what the meter's credit counts.
type Unit uint8

const (
	// Litres: credit is water volume; a litre of flow costs one unit.
	Litres Unit = 1
	// Minor: credit is money in minor units of the currency (cents); flow
	// costs Params.Price minor units per cubic metre. The values match
	// voucher.UnitLitres and voucher.UnitMinor.
	Minor Unit = 2
)

func (u Unit) String() string {
	switch u {
	case Litres:
		return "L"
	case Minor:
		return "cents"
	}
	return "unit?"
}

// Tamper is a set of latched tamper conditions. A condition stays set until
// an engineering token or voucher clears it, so a brief magnet cannot hide.
type Tamper uint8

const (
	TamperMagnet   Tamper = 1 << iota // magnetic field on the sensor
	TamperCover                       // enclosure opened
	TamperReverse                     // reverse flow beyond Params.ReverseLimit in one tick
	TamperCardPort                    // repeated card authentication failures
	TamperBattery                     // battery low (not tampering, but latched the same way)
)

// Status bits describe the meter's supply state.
type Status uint8

const (
	ValveClosed  Status = 1 << iota // the valve is closed
	ClosedCredit                    // closed because credit ran out
	ClosedTamper                    // closed because of a tamper condition (Params.CloseOnTamper)
	ClosedRemote                    // closed by an engineering command
	Emergency                       // emergency credit is in use
	LowCredit                       // credit below Params.LowCredit (warning shown)
)

// Effect is what one step of the core did, for the caller to log and report.
type Effect uint16

const (
	EffValveClosed     Effect = 1 << iota // the valve closed in this step
	EffValveOpened                        // the valve opened in this step
	EffLowCredit                          // credit fell below the warning threshold
	EffReverseFlow                        // reverse flow beyond the limit
	EffFlowWhileClosed                    // forward flow registered with the valve closed
	EffExhausted                          // credit reached zero (emergency and friendly credit follow, if any)
)

// Params are the meter's settings; engineering commands change them.
type Params struct {
	Unit  Unit
	Price uint32 // Minor meters: minor units per cubic metre

	LowCredit       int64  // warn below this credit
	EmergencyCredit int64  // credit the customer may borrow once it runs low; 0 = none
	FriendlyLimit   int64  // debt the meter allows during friendly periods; 0 = no friendly credit
	NightStart      uint16 // friendly night period, minutes after local midnight;
	NightEnd        uint16 // NightStart == NightEnd means no night period
	Weekend         uint8  // friendly days: bit 1<<time.Weekday
	Holidays        []Day  // friendly days listed by date (at most MaxHolidays)
	UTCOffset       int16  // local time = UTC + UTCOffset minutes

	ReverseLimit  uint32 // litres of reverse flow in one tick tolerated before tamper
	CloseOnTamper bool   // close the valve on magnet or cover tamper
	PulseML       uint32 // the flow sensor's pulse weight: millilitres per pulse

	LockoutFree uint8  // rejected tokens allowed before lockout
	LockoutBase uint32 // first lockout, seconds; doubles with each further rejection
	LockoutMax  uint32 // longest lockout, seconds
}

// MaxHolidays bounds the holiday list so the state fits its bank.
const MaxHolidays = 16

// Day is a calendar date in the meter's local time, as days since 1970-01-01.
type Day int32

// DayOf returns the Day of a civil date.
func DayOf(year int, month time.Month, day int) Day {
	return Day(time.Date(year, month, day, 0, 0, 0, 0, time.UTC).Unix() / 86400)
}

// DefaultParams are sensible settings for a household water meter billed
// in litres.
func DefaultParams() Params {
	return Params{
		Unit:            Litres,
		LowCredit:       1000, // 1 m3
		EmergencyCredit: 500,  // 0.5 m3
		FriendlyLimit:   200,  // 0.2 m3
		NightStart:      18 * 60,
		NightEnd:        7 * 60,
		Weekend:         1<<time.Saturday | 1<<time.Sunday,
		ReverseLimit:    5,
		PulseML:         1000, // a reed switch closing once a litre
		LockoutFree:     5,
		LockoutBase:     60,
		LockoutMax:      24 * 3600,
	}
}

// Friendly reports whether t falls in a friendly-credit period, when the
// meter does not close the valve for lack of credit (within FriendlyLimit).
func (p *Params) Friendly(t time.Time) bool {
	if p.FriendlyLimit <= 0 {
		return false
	}
	local := t.UTC().Add(time.Duration(p.UTCOffset) * time.Minute)
	if p.Weekend&(1<<local.Weekday()) != 0 {
		return true
	}
	day := DayOf(local.Date())
	for _, h := range p.Holidays {
		if h == day {
			return true
		}
	}
	if p.NightStart == p.NightEnd {
		return false
	}
	m := uint16(local.Hour()*60 + local.Minute())
	if p.NightStart < p.NightEnd {
		return m >= p.NightStart && m < p.NightEnd
	}
	return m >= p.NightStart || m < p.NightEnd
}

// Core is the meter's credit and supply logic over a compact value: no
// pointers, no keys, no log. The full Meter wraps one and journals it; the
// fleet emulator keeps a million of them in a slice. It is pure: time comes
// in as an argument and the result comes out as an Effect.
type Core struct {
	Credit  int64  // in Params.Unit; negative while emergency or friendly credit is used
	Forward uint64 // litres registered forward (the billing register)
	Reverse uint64 // litres registered in reverse
	Loaded  uint64 // credit loaded since manufacture, in Params.Unit
	CostRem uint32 // Minor meters: fraction of a minor unit owed, in 1/1000
	Status  Status
	Tamper  Tamper
}

// emergencyFloor is how far credit may fall before the valve closes
// outside friendly periods.
func (c *Core) emergencyFloor(p *Params) int64 {
	if c.Status&Emergency != 0 {
		return -p.EmergencyCredit
	}
	return 0
}

// Consume registers fwd litres of forward flow and rev litres of reverse
// flow measured up to now, charges the forward flow, and updates the valve.
// Reverse flow never earns credit: it only raises tamper past the limit.
func (c *Core) Consume(p *Params, now time.Time, fwd, rev uint32) Effect {
	var eff Effect
	c.Forward += uint64(fwd)
	c.Reverse += uint64(rev)
	if rev > p.ReverseLimit {
		c.Tamper |= TamperReverse
		eff |= EffReverseFlow
	}
	if fwd > 0 && c.Status&ValveClosed != 0 {
		eff |= EffFlowWhileClosed
	}
	before := c.Credit
	switch p.Unit {
	case Minor:
		owed := uint64(fwd)*uint64(p.Price) + uint64(c.CostRem)
		c.Credit -= int64(owed / 1000)
		c.CostRem = uint32(owed % 1000)
	default:
		c.Credit -= int64(fwd)
	}
	if before > 0 && c.Credit <= 0 {
		eff |= EffExhausted
	}
	return eff | c.Settle(p, now)
}

// Load adds credit (or, with a negative amount, removes it) and updates the
// valve. Debt from emergency or friendly credit is repaid first, simply
// because it is negative credit.
func (c *Core) Load(p *Params, now time.Time, amount int64) Effect {
	c.Credit += amount
	if amount > 0 {
		c.Loaded += uint64(amount)
	}
	if c.Credit >= 0 {
		c.Status &^= Emergency
	}
	return c.Settle(p, now)
}

// RequestEmergency grants emergency credit when the credit is low and none
// is in use. It reports whether it granted it.
func (c *Core) RequestEmergency(p *Params, now time.Time) (bool, Effect) {
	if p.EmergencyCredit <= 0 || c.Status&Emergency != 0 || c.Credit >= p.LowCredit {
		return false, 0
	}
	c.Status |= Emergency
	return true, c.Settle(p, now)
}

// Settle re-evaluates the warning and the valve at time now, for example
// when a friendly period ends.
func (c *Core) Settle(p *Params, now time.Time) Effect {
	var eff Effect
	if c.Credit < p.LowCredit {
		if c.Status&LowCredit == 0 {
			c.Status |= LowCredit
			eff |= EffLowCredit
		}
	} else {
		c.Status &^= LowCredit
	}

	floor := c.emergencyFloor(p)
	switch {
	case c.Status&ClosedCredit == 0:
		closeAt := floor
		if p.Friendly(now) {
			closeAt -= p.FriendlyLimit
		}
		if c.Credit <= closeAt {
			c.Status |= ClosedCredit
		}
	case c.Credit > floor:
		// Hysteresis: a friendly period keeps an open valve open but
		// does not reopen one that closed for credit.
		c.Status &^= ClosedCredit
	}
	if p.CloseOnTamper && c.Tamper&(TamperMagnet|TamperCover) != 0 {
		c.Status |= ClosedTamper
	} else {
		c.Status &^= ClosedTamper
	}

	closed := c.Status&(ClosedCredit|ClosedTamper|ClosedRemote) != 0
	switch {
	case closed && c.Status&ValveClosed == 0:
		c.Status |= ValveClosed
		eff |= EffValveClosed
	case !closed && c.Status&ValveClosed != 0:
		c.Status &^= ValveClosed
		eff |= EffValveOpened
	}
	return eff
}

// SetTamper latches tamper conditions t and updates the valve.
func (c *Core) SetTamper(p *Params, now time.Time, t Tamper) Effect {
	c.Tamper |= t
	return c.Settle(p, now)
}

// ClearTamper clears tamper conditions t (an engineering command).
func (c *Core) ClearTamper(p *Params, now time.Time, t Tamper) Effect {
	c.Tamper &^= t
	return c.Settle(p, now)
}

// ForceValve closes (close=true) or releases the valve by engineering
// command. Releasing does not open a valve closed for credit or tamper.
func (c *Core) ForceValve(p *Params, now time.Time, close bool) Effect {
	if close {
		c.Status |= ClosedRemote
	} else {
		c.Status &^= ClosedRemote
	}
	return c.Settle(p, now)
}
