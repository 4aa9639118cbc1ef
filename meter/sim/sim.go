// Package sim is the fleet emulator: thousands to a million reference
// meters with simulated households behind them, stepping through
// simulated time and reporting through an Uplink.
//
// Each emulated meter runs the reference meter's own credit and supply
// logic (meter.Core) and its own voucher sequence memory (meter.Window),
// and verifies remote top-ups with the real voucher code; what it does not
// carry is the journaled EEPROM image and the STS decoder, which matter
// for one meter on a bench but would cost kilobytes per meter here. A
// meter is a plain 80-byte value with no pointers, kept in one slice, so a
// million of them take 80 MB (BenchmarkMemoryPerMeter) and the garbage
// collector has nothing to trace.
//
// Households follow a daily pattern (morning and evening peaks, little at
// night, more at weekends), some leak (a constant floor of night flow),
// and a few tamper (a magnet that makes the meter under-register, or
// reverse flow). Customers buy credit when the meter warns them, through a
// Vendor: in the emulator's own mode it signs vouchers with a local key,
// and with the head-end it is the vending API; left without water, half of
// them take emergency credit. What the meters send goes through an Uplink:
// Counter counts it, Frames seals it as telemetry frames for MQTT.
// Everything is deterministic given the seed; the package starts no
// goroutines.
package sim

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"math"
	"time"

	"sluice/meter"
	"sluice/voucher"
)

// Reading is one meter's periodic report.
type Reading struct {
	MeterID uint64
	Time    time.Time
	Unit    meter.Unit
	Forward uint64 // litres
	Reverse uint64 // litres
	Credit  int64
	Loaded  uint64
	Status  meter.Status
	Tamper  meter.Tamper
	// Interval is the litres registered since the previous reading,
	// Period ago.
	Interval uint32
	Period   time.Duration
}

// Uplink carries what meters send to the head-end. The telemetry package
// implements it over MQTT; the emulator's own mode counts and discards.
// Calls come from Fleet.Step, one at a time.
type Uplink interface {
	Reading(r *Reading) error
	Event(meterID uint64, e meter.Event) error
	Receipt(r meter.Receipt) error
}

// Vendor sells credit: it returns a signed credit voucher for a meter.
// Sequence numbers are the vendor's to allocate, per meter.
type Vendor interface {
	Vend(meterID uint64, litres uint32, now time.Time) ([]byte, error)
}

// Behaviour is how a household treats its meter.
type Behaviour uint8

const (
	Honest  Behaviour = iota
	Leaky             // a constant leak behind the meter
	Magnet            // a magnet at night: the meter registers a fifth of the flow
	Reverse           // the meter turned round now and then: reverse flow
)

// Config describes a fleet.
type Config struct {
	Meters  int
	FirstID uint64 // meter IDs are FirstID, FirstID+1, ...
	Seed    uint64
	Start   time.Time
	Step    time.Duration // simulated time per Step (at most an hour)
	Report  time.Duration // reading interval; each meter reports once per Report
	Params  meter.Params  // litre meters

	LeakShare   float64 // share of households with a leak
	TamperShare float64 // share of households tampering (half magnet, half reverse)
	TopUp       uint32  // litres a customer buys at a time

	Keyring       voucher.Keyring               // the public keys every meter trusts
	ReceiptKey    func(meterID uint64) [16]byte // per-meter telemetry key for receipts
	PerPersonDay  uint32                        // litres per person per day
	InitialCredit uint32                        // litres each meter starts with
}

// household is one emulated meter and the people behind it. Field order
// keeps the struct tight; see BenchmarkMemoryPerMeter.
type household struct {
	core      meter.Core   // 40 bytes
	seq       meter.Window // 16 bytes
	rng       uint64
	evSeq     uint32
	milli     uint32 // fraction of a litre carried between steps, in mL
	lastFwd   uint32 // forward register (low 32 bits) at the last reading
	people    uint8
	behaviour Behaviour
	leak      uint8 // litres per hour
	buying    uint8 // steps until the customer tops up; 0 = not buying
}

// Fleet is a running fleet.
type Fleet struct {
	cfg     Config
	up      Uplink
	vendor  Vendor
	now     time.Time
	steps   int64
	meters  []household
	stats   Stats
	pending error // first uplink error of the current step
}

// Stats are counters over the fleet's life.
type Stats struct {
	Readings     uint64 `json:"readings"`
	Events       uint64 `json:"events"`
	TopUps       uint64 `json:"top_ups"`
	TopUpsFailed uint64 `json:"top_ups_failed"`
}

// Summary is the fleet's state at one moment.
type Summary struct {
	Time        time.Time `json:"time"`
	Meters      int       `json:"meters"`
	ValveClosed int       `json:"valve_closed"`
	LowCredit   int       `json:"low_credit"`
	Emergency   int       `json:"emergency"`
	Tampered    int       `json:"tampered"`
	ForwardL    uint64    `json:"forward_litres"` // litres through all meters
	CreditL     int64     `json:"credit_litres"`  // credit held by all meters
	Stats
}

// New creates a fleet. It validates the configuration and seeds every
// household from cfg.Seed.
func New(cfg Config, up Uplink, vendor Vendor) (*Fleet, error) {
	switch {
	case cfg.Meters <= 0:
		return nil, errors.New("sim: meters: must be positive")
	case cfg.Step <= 0 || cfg.Step > time.Hour:
		return nil, fmt.Errorf("sim: step %v: must be in (0, 1h]", cfg.Step)
	case cfg.Report < cfg.Step:
		return nil, fmt.Errorf("sim: report interval %v shorter than the step %v", cfg.Report, cfg.Step)
	case cfg.Params.Unit != meter.Litres:
		return nil, errors.New("sim: params unit: the emulator runs litre meters")
	case up == nil:
		return nil, errors.New("sim: uplink: required")
	case cfg.LeakShare < 0 || cfg.TamperShare < 0 || cfg.LeakShare+cfg.TamperShare > 1:
		return nil, fmt.Errorf("sim: leak share %v and tamper share %v: each from 0, together at most 1", cfg.LeakShare, cfg.TamperShare)
	}
	if cfg.FirstID == 0 {
		cfg.FirstID = 1
	}
	if cfg.PerPersonDay == 0 {
		cfg.PerPersonDay = 120
	}
	if cfg.TopUp == 0 {
		cfg.TopUp = 6000
	}
	f := &Fleet{cfg: cfg, up: up, vendor: vendor, now: cfg.Start, meters: make([]household, cfg.Meters)}
	for i := range f.meters {
		h := &f.meters[i]
		h.rng = splitmix(cfg.Seed + uint64(i)*0x9E3779B97F4A7C15)
		h.people = uint8(1 + h.next()%6)
		u := h.unit()
		switch {
		case u < cfg.TamperShare/2:
			h.behaviour = Magnet
		case u < cfg.TamperShare:
			h.behaviour = Reverse
		case u < cfg.TamperShare+cfg.LeakShare:
			h.behaviour = Leaky
			h.leak = uint8(2 + h.next()%20)
		}
		h.core.Status = meter.ValveClosed | meter.ClosedCredit
		h.core.Load(&f.cfg.Params, cfg.Start, int64(cfg.InitialCredit))
	}
	return f, nil
}

func splitmix(x uint64) uint64 {
	x += 0x9E3779B97F4A7C15
	x = (x ^ x>>30) * 0xBF58476D1CE4E5B9
	x = (x ^ x>>27) * 0x94D049BB133111EB
	return x ^ x>>31
}

// next is xorshift64*: fast, and its 8 bytes of state live in the household.
func (h *household) next() uint64 {
	x := h.rng
	x ^= x >> 12
	x ^= x << 25
	x ^= x >> 27
	h.rng = x
	return x * 0x2545F4914F6CDD1D
}

func (h *household) unit() float64 { return float64(h.next()>>11) / (1 << 53) }

// hourly is the share of a day's water drawn in each local hour, in
// thousandths: a morning and an evening peak, almost nothing at night.
var hourly = [24]uint32{5, 3, 2, 2, 3, 15, 70, 95, 80, 55, 45, 45, 50, 45, 40, 40, 45, 60, 80, 85, 70, 45, 25, 10}

// Now is the fleet's simulated time.
func (f *Fleet) Now() time.Time { return f.now }

// Len is the number of meters.
func (f *Fleet) Len() int { return len(f.meters) }

// ID returns the meter ID of index i.
func (f *Fleet) ID(i int) uint64 { return f.cfg.FirstID + uint64(i) }

// Step advances the fleet by cfg.Step: every household draws water, every
// meter charges it and moves its valve, customers with a low-credit
// warning buy credit, and the meters whose reporting slot falls in this
// step send a reading. It stops at the first uplink error.
func (f *Fleet) Step() error {
	f.now = f.now.Add(f.cfg.Step)
	f.steps++
	local := f.now.Add(time.Duration(f.cfg.Params.UTCOffset) * time.Minute)
	hour := local.Hour()
	weekend := local.Weekday() == time.Saturday || local.Weekday() == time.Sunday
	// Millilitres per person in this step at this hour.
	perPerson := uint64(f.cfg.PerPersonDay) * uint64(hourly[hour]) * uint64(f.cfg.Step) / uint64(time.Hour)
	if weekend {
		perPerson = perPerson * 6 / 5
	}
	reportEvery := int64(f.cfg.Report / f.cfg.Step)
	slot := f.steps % reportEvery
	night := hour < 5
	p := &f.cfg.Params
	for i := range f.meters {
		h := &f.meters[i]
		id := f.ID(i)
		// Demand in mL: the household's pattern with +-50% noise, plus a leak.
		ml := uint64(h.people) * perPerson
		ml = ml/2 + ml*(h.next()&1023)/1024
		ml += uint64(h.leak) * 1000 * uint64(f.cfg.Step) / uint64(time.Hour)
		if h.core.Status&meter.ValveClosed != 0 {
			ml = 0
		}
		ml += uint64(h.milli)
		fwd, rev := uint32(ml/1000), uint32(0)
		h.milli = uint32(ml % 1000)
		switch h.behaviour {
		case Magnet:
			if night {
				fwd /= 5
				if h.core.Tamper&meter.TamperMagnet == 0 {
					f.emit(h, id, h.core.SetTamper(p, f.now, meter.TamperMagnet), meter.EvTamper, int64(meter.TamperMagnet))
				}
			}
		case Reverse:
			if night && h.next()%64 == 0 {
				rev = 20 + uint32(h.next()%80)
			}
		}
		eff := h.core.Consume(p, f.now, fwd, rev)
		if eff != 0 {
			f.effects(h, id, eff, fwd)
		}
		if err := f.buy(h, id); err != nil {
			return err
		}
		if int64(i)%reportEvery == slot {
			r := Reading{MeterID: id, Time: f.now, Unit: meter.Litres, Forward: h.core.Forward, Reverse: h.core.Reverse,
				Credit: h.core.Credit, Loaded: h.core.Loaded, Status: h.core.Status, Tamper: h.core.Tamper,
				Interval: uint32(h.core.Forward) - h.lastFwd, Period: f.cfg.Report}
			h.lastFwd = uint32(h.core.Forward)
			f.stats.Readings++
			if err := f.up.Reading(&r); err != nil {
				return fmt.Errorf("sim: meter %d: reading: %w", id, err)
			}
		}
	}
	return f.flush()
}

// The first uplink error of a step's events, kept until the step ends so
// that the core loop stays branch-light.
func (f *Fleet) flush() error { err := f.pending; f.pending = nil; return err }

func (f *Fleet) emit(h *household, id uint64, eff meter.Effect, k meter.EventKind, v int64) {
	f.event(h, id, k, v)
	if eff != 0 {
		f.effects(h, id, eff, 0)
	}
}

func (f *Fleet) event(h *household, id uint64, k meter.EventKind, v int64) {
	h.evSeq++
	f.stats.Events++
	if err := f.up.Event(id, meter.Event{Seq: h.evSeq, Time: f.now, Kind: k, Value: v}); err != nil && f.pending == nil {
		f.pending = fmt.Errorf("sim: meter %d: event: %w", id, err)
	}
}

// effects reports what the core did, as the reference meter logs it.
func (f *Fleet) effects(h *household, id uint64, eff meter.Effect, fwd uint32) {
	if eff&meter.EffReverseFlow != 0 {
		f.event(h, id, meter.EvTamper, int64(meter.TamperReverse))
	}
	if eff&meter.EffFlowWhileClosed != 0 {
		f.event(h, id, meter.EvFlowWhileClosed, int64(fwd))
	}
	if eff&meter.EffLowCredit != 0 {
		f.event(h, id, meter.EvLowCredit, h.core.Credit)
		// The customer will buy within a few hours (steps).
		h.buying = uint8(1 + h.next()%8)
	}
	if eff&meter.EffValveClosed != 0 {
		f.event(h, id, meter.EvValveClosed, int64(h.core.Status&(meter.ClosedCredit|meter.ClosedTamper|meter.ClosedRemote)))
		if h.buying == 0 {
			h.buying = 1
		}
		// Half the customers left without water press *2 for emergency
		// credit, which the meter grants once until the next purchase.
		if h.core.Status&meter.ClosedCredit != 0 && h.next()&1 == 0 {
			if ok, e := h.core.RequestEmergency(&f.cfg.Params, f.now); ok {
				f.event(h, id, meter.EvEmergency, f.cfg.Params.EmergencyCredit)
				f.effects(h, id, e, 0)
			}
		}
	}
	if eff&meter.EffValveOpened != 0 {
		f.event(h, id, meter.EvValveOpened, 0)
	}
}

// buy runs a customer's purchase when its delay has run out.
func (f *Fleet) buy(h *household, id uint64) error {
	if h.buying == 0 {
		return nil
	}
	h.buying--
	if h.buying != 0 || f.vendor == nil {
		return nil
	}
	b, err := f.vendor.Vend(id, f.cfg.TopUp, f.now)
	if err != nil {
		f.stats.TopUpsFailed++
		h.buying = 4 // try again later
		return nil
	}
	_, err = f.Deliver(id, b)
	if err != nil {
		f.stats.TopUpsFailed++
	}
	return nil
}

// Deliver hands a voucher to meter id, as a remote top-up downlink does:
// the meter checks it with voucher.Open against the fleet's keyring and its
// own sequence window, applies it, and sends its receipt through the
// uplink. The error wraps the meter's rejection reason.
func (f *Fleet) Deliver(id uint64, b []byte) (meter.Receipt, error) {
	i := id - f.cfg.FirstID
	if id < f.cfg.FirstID || i >= uint64(len(f.meters)) {
		return meter.Receipt{}, fmt.Errorf("sim: no meter %d in this fleet", id)
	}
	h := &f.meters[i]
	rc := meter.Receipt{MeterID: id, Status: meter.Loaded, Time: f.now.UTC().Truncate(time.Second)}
	v, err := voucher.Open(b, f.cfg.Keyring, id, f.now)
	switch {
	case err != nil:
		err = fmt.Errorf("%w: %w", meter.ErrSignature, err)
	case v.Kind != voucher.KindCredit:
		err = fmt.Errorf("%w: the emulator applies credit vouchers only", meter.ErrUnsupported)
	case meter.Unit(v.Unit) != meter.Litres:
		err = fmt.Errorf("%w: voucher unit %v", meter.ErrUnit, v.Unit)
	default:
		err = h.seq.Check(v.Sequence)
	}
	if v != nil {
		rc.Seq = v.Sequence
	}
	if err != nil {
		rc.Status, rc.Reason = meter.Rejected, meter.ReasonOf(err)
		if rc.Reason == meter.ReasonUsed {
			rc.Status = meter.Duplicate
		}
		f.event(h, id, meter.EvVoucherRejected, int64(rc.Seq))
		rc.Reason = meter.ReasonOf(err)
	} else {
		h.seq.Accept(v.Sequence)
		rc.Amount = int64(v.Quantity)
		f.effects(h, id, h.core.Load(&f.cfg.Params, f.now, int64(v.Quantity)), 0)
		f.event(h, id, meter.EvVoucherAccepted, int64(v.Sequence))
		f.stats.TopUps++
	}
	rc.Credit, rc.Loaded = h.core.Credit, h.core.Loaded
	if f.cfg.ReceiptKey != nil {
		rc.Seal(f.cfg.ReceiptKey(id))
	}
	if uerr := f.up.Receipt(rc); uerr != nil {
		return rc, fmt.Errorf("sim: meter %d: receipt: %w", id, uerr)
	}
	if perr := f.flush(); perr != nil {
		return rc, perr
	}
	return rc, err
}

// Sense latches a tamper condition on meter id (the emulator's operator
// pokes a meter).
func (f *Fleet) Sense(id uint64, t meter.Tamper) error {
	i := id - f.cfg.FirstID
	if id < f.cfg.FirstID || i >= uint64(len(f.meters)) {
		return fmt.Errorf("sim: no meter %d in this fleet", id)
	}
	h := &f.meters[i]
	f.emit(h, id, h.core.SetTamper(&f.cfg.Params, f.now, t), meter.EvTamper, int64(t))
	return f.flush()
}

// Meter returns the core state of meter id.
func (f *Fleet) Meter(id uint64) (meter.Core, bool) {
	i := id - f.cfg.FirstID
	if id < f.cfg.FirstID || i >= uint64(len(f.meters)) {
		return meter.Core{}, false
	}
	return f.meters[i].core, true
}

// Summary totals the fleet now.
func (f *Fleet) Summary() Summary {
	s := Summary{Time: f.now, Meters: len(f.meters), Stats: f.stats}
	for i := range f.meters {
		c := &f.meters[i].core
		if c.Status&meter.ValveClosed != 0 {
			s.ValveClosed++
		}
		if c.Status&meter.LowCredit != 0 {
			s.LowCredit++
		}
		if c.Status&meter.Emergency != 0 {
			s.Emergency++
		}
		if c.Tamper != 0 {
			s.Tampered++
		}
		s.ForwardL += c.Forward
		s.CreditL += c.Credit
	}
	return s
}

// LocalVendor sells credit by signing vouchers with its own key, for the
// emulator running without a head-end. Its public key goes into the
// fleet's keyring; it keeps each meter's next sequence number.
type LocalVendor struct {
	key  ed25519.PrivateKey
	seqs []uint32
	base uint64
	life time.Duration
}

// NewLocalVendor returns a vendor for meters first..first+n-1.
func NewLocalVendor(key ed25519.PrivateKey, first uint64, n int) *LocalVendor {
	return &LocalVendor{key: key, seqs: make([]uint32, n), base: first, life: 30 * 24 * time.Hour}
}

// Keyring is the keyring meters need to trust this vendor.
func (v *LocalVendor) Keyring() voucher.Keyring {
	return voucher.Keyring{{Role: voucher.RoleCredit, Public: v.key.Public().(ed25519.PublicKey)}}
}

func (v *LocalVendor) Vend(id uint64, litres uint32, now time.Time) ([]byte, error) {
	i := id - v.base
	if id < v.base || i >= uint64(len(v.seqs)) || v.seqs[i] == math.MaxUint32 {
		return nil, fmt.Errorf("sim: vendor: meter %d unknown or out of sequence numbers", id)
	}
	v.seqs[i]++
	vc := voucher.Voucher{Kind: voucher.KindCredit, MeterID: id, Sequence: v.seqs[i], Issued: now, Expires: now.Add(v.life),
		Unit: voucher.UnitLitres, Quantity: litres}
	return voucher.Sign(&vc, v.key)
}

// Counter is the Uplink of the emulator's own mode: it counts what the
// meters send, by kind, and keeps nothing else.
type Counter struct {
	Readings uint64
	Events   [32]uint64 // by meter.EventKind
	Receipts [4]uint64  // by meter.ReceiptStatus
}

func (c *Counter) Reading(*Reading) error { c.Readings++; return nil }

func (c *Counter) Event(_ uint64, e meter.Event) error {
	c.Events[int(e.Kind)%len(c.Events)]++
	return nil
}

func (c *Counter) Receipt(r meter.Receipt) error {
	c.Receipts[int(r.Status)%len(c.Receipts)]++
	return nil
}

// Run steps the fleet until simulated time until, calling progress each
// time the simulated clock passes a multiple of every (a day, an hour) and
// after the last step. It returns early, with ctx's error, when ctx ends.
func (f *Fleet) Run(ctx context.Context, until time.Time, every time.Duration, progress func(Summary)) error {
	if every <= 0 {
		every = 24 * time.Hour
	}
	for f.now.Before(until) {
		if err := ctx.Err(); err != nil {
			return err
		}
		mark := f.now.Truncate(every)
		if err := f.Step(); err != nil {
			return err
		}
		if progress != nil && (!f.now.Truncate(every).Equal(mark) || !f.now.Before(until)) {
			progress(f.Summary())
		}
	}
	return nil
}
