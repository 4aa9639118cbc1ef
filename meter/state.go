package meter

import (
	"crypto/ed25519"
	"encoding/binary"
	"fmt"
	"time"

	"sluice/voucher"
)

// Keys are the only secrets and trust anchors a meter stores. Both AES keys
// are diversified for this meter alone by the head-end's KMS; the Ed25519
// keys are public. A dump of the storage therefore yields this meter's keys
// and nothing that opens another meter or mints credit for any.
type Keys struct {
	MeterKey     [16]byte        // per-meter AES key; per-card keys are derived from it
	TelemetryKey [16]byte        // per-meter AES key; MACs telemetry frames and card receipts
	Trusted      voucher.Keyring // Ed25519 public keys for credit and management vouchers
}

// MaxTrusted bounds the keyring: one current and one incoming key per role.
const MaxTrusted = 4

// state is everything the meter keeps across power cycles: one journal
// record. Slices are owned by the state (clone copies them).
type state struct {
	ID     uint64
	Params Params
	Keys   Keys
	Core   Core
	Tokens []byte // STS decoder state, opaque to the meter

	// Ready is set once the meter holds its operational keys: at once when
	// Format installs them, or when a provisioning record does.
	Ready bool
	// Device holds the meter's own provisioning key pairs (package
	// provision), generated on the meter at the factory station; empty for
	// a meter set up by Format. ProvCounter and ProvManagement are the
	// provisioning state: the last record's counter and the key the next
	// record must be signed with.
	Device         []byte
	ProvCounter    uint32
	ProvManagement [32]byte

	Failures    uint16 // consecutive rejected keypad tokens
	LockedUntil int64  // keypad locked until this Unix time
	CardFails   uint16 // consecutive failed card authentications

	// Flow below one litre carried between ticks, in millilitres, so a
	// pulse weight that does not divide a litre loses nothing.
	FwdML, RevML uint32

	Seq Window // voucher sequence numbers accepted

	// FrameReserved is the telemetry frame counter reserved so far: the
	// meter uses counters up to it without writing, and reserves the next
	// block before going past it (Meter.FrameCounter).
	FrameReserved uint32

	EventSeq uint32  // sequence number of the newest event
	Events   []Event // oldest first, at most MaxEvents
}

func (s *state) clone() state {
	c := *s
	c.Params.Holidays = append([]Day(nil), s.Params.Holidays...)
	c.Keys.Trusted = append(voucher.Keyring(nil), s.Keys.Trusted...)
	c.Tokens = append([]byte(nil), s.Tokens...)
	c.Device = append([]byte(nil), s.Device...)
	c.Events = append(make([]Event, 0, MaxEvents+1), s.Events...)
	return c
}

func (s *state) log(now time.Time, k EventKind, r Reason, v int64) {
	s.EventSeq++
	s.Events = append(s.Events, Event{Seq: s.EventSeq, Time: now.UTC().Truncate(time.Second), Kind: k, Reason: r, Value: v})
	if len(s.Events) > MaxEvents {
		s.Events = append(s.Events[:0], s.Events[len(s.Events)-MaxEvents:]...)
	}
}

// logEffects turns what the core did into events.
func (s *state) logEffects(now time.Time, eff Effect, fwd uint32) {
	if eff&EffReverseFlow != 0 {
		s.log(now, EvTamper, ReasonNone, int64(TamperReverse))
	}
	if eff&EffFlowWhileClosed != 0 {
		s.log(now, EvFlowWhileClosed, ReasonNone, int64(fwd))
	}
	if eff&EffLowCredit != 0 {
		s.log(now, EvLowCredit, ReasonNone, s.Core.Credit)
	}
	if eff&EffValveClosed != 0 {
		s.log(now, EvValveClosed, ReasonNone, int64(s.Core.Status&(ClosedCredit|ClosedTamper|ClosedRemote)))
	}
	if eff&EffValveOpened != 0 {
		s.log(now, EvValveOpened, ReasonNone, 0)
	}
}

// Record encoding: a version byte, then each field in a fixed order,
// big-endian, variable parts length-prefixed. Decoding checks every length
// against what is left, so a corrupted or hostile image cannot crash the
// meter (FuzzBoot).
const stateVersion = 1

// epoch2000 is the origin of the 32-bit event times.
const epoch2000 = 946684800

func (s *state) marshal() []byte {
	b := make([]byte, 0, 1024)
	b = append(b, stateVersion)
	b = binary.BigEndian.AppendUint64(b, s.ID)
	p := &s.Params
	b = append(b, byte(p.Unit))
	b = binary.BigEndian.AppendUint32(b, p.Price)
	b = binary.BigEndian.AppendUint64(b, uint64(p.LowCredit))
	b = binary.BigEndian.AppendUint64(b, uint64(p.EmergencyCredit))
	b = binary.BigEndian.AppendUint64(b, uint64(p.FriendlyLimit))
	b = binary.BigEndian.AppendUint16(b, p.NightStart)
	b = binary.BigEndian.AppendUint16(b, p.NightEnd)
	b = append(b, p.Weekend)
	b = append(b, byte(len(p.Holidays)))
	for _, h := range p.Holidays {
		b = binary.BigEndian.AppendUint32(b, uint32(h))
	}
	b = binary.BigEndian.AppendUint16(b, uint16(p.UTCOffset))
	b = binary.BigEndian.AppendUint32(b, p.ReverseLimit)
	b = append(b, boolByte(p.CloseOnTamper), p.LockoutFree)
	b = binary.BigEndian.AppendUint32(b, p.LockoutBase)
	b = binary.BigEndian.AppendUint32(b, p.LockoutMax)
	b = binary.BigEndian.AppendUint32(b, p.PulseML)

	b = append(b, s.Keys.MeterKey[:]...)
	b = append(b, s.Keys.TelemetryKey[:]...)
	b = append(b, byte(len(s.Keys.Trusted)))
	for _, k := range s.Keys.Trusted {
		b = append(b, byte(k.Role))
		b = append(b, k.Public...)
	}

	c := &s.Core
	b = binary.BigEndian.AppendUint64(b, uint64(c.Credit))
	b = binary.BigEndian.AppendUint64(b, c.Forward)
	b = binary.BigEndian.AppendUint64(b, c.Reverse)
	b = binary.BigEndian.AppendUint64(b, c.Loaded)
	b = binary.BigEndian.AppendUint32(b, c.CostRem)
	b = append(b, byte(c.Status), byte(c.Tamper))

	b = appendBytes(b, s.Tokens)
	b = append(b, boolByte(s.Ready))
	b = appendBytes(b, s.Device)
	b = binary.BigEndian.AppendUint32(b, s.ProvCounter)
	b = append(b, s.ProvManagement[:]...)
	b = binary.BigEndian.AppendUint16(b, s.Failures)
	b = binary.BigEndian.AppendUint64(b, uint64(s.LockedUntil))
	b = binary.BigEndian.AppendUint16(b, s.CardFails)
	b = binary.BigEndian.AppendUint32(b, s.FwdML)
	b = binary.BigEndian.AppendUint32(b, s.RevML)
	b = binary.BigEndian.AppendUint32(b, s.Seq.Max)
	b = binary.BigEndian.AppendUint64(b, s.Seq.Mask)
	b = binary.BigEndian.AppendUint32(b, s.FrameReserved)
	b = binary.BigEndian.AppendUint32(b, s.EventSeq)
	b = append(b, byte(len(s.Events)))
	for _, e := range s.Events {
		b = binary.BigEndian.AppendUint32(b, uint32(min(max(e.Time.Unix()-epoch2000, 0), 1<<32-1)))
		b = append(b, byte(e.Kind), byte(e.Reason))
		b = binary.BigEndian.AppendUint64(b, uint64(e.Value))
	}
	return b
}

func appendBytes(b, v []byte) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(v)))
	return append(b, v...)
}

func boolByte(v bool) byte {
	if v {
		return 1
	}
	return 0
}

// reader decodes a record, remembering the first field that did not fit.
type reader struct {
	b   []byte
	err error
}

func (r *reader) take(field string, n int) []byte {
	if r.err != nil {
		return make([]byte, n)
	}
	if n > len(r.b) {
		r.err = fmt.Errorf("meter: state field %s: truncated", field)
		return make([]byte, n)
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

func (r *reader) u8(f string) uint8   { return r.take(f, 1)[0] }
func (r *reader) u16(f string) uint16 { return binary.BigEndian.Uint16(r.take(f, 2)) }
func (r *reader) u32(f string) uint32 { return binary.BigEndian.Uint32(r.take(f, 4)) }
func (r *reader) u64(f string) uint64 { return binary.BigEndian.Uint64(r.take(f, 8)) }
func (r *reader) i64(f string) int64  { return int64(r.u64(f)) }
func (r *reader) bytes(f string) []byte {
	n := int(r.u16(f))
	return append([]byte(nil), r.take(f, n)...)
}
func (r *reader) fail(field, why string) {
	if r.err == nil {
		r.err = fmt.Errorf("meter: state field %s: %s", field, why)
	}
}

func (s *state) unmarshal(b []byte) error {
	r := &reader{b: b}
	if v := r.u8("version"); r.err == nil && v != stateVersion {
		return fmt.Errorf("meter: state version %d, want %d", v, stateVersion)
	}
	s.ID = r.u64("id")
	p := &s.Params
	p.Unit = Unit(r.u8("unit"))
	if p.Unit != Litres && p.Unit != Minor {
		r.fail("unit", "unknown unit")
	}
	p.Price = r.u32("price")
	p.LowCredit = r.i64("low_credit")
	p.EmergencyCredit = r.i64("emergency_credit")
	p.FriendlyLimit = r.i64("friendly_limit")
	p.NightStart = r.u16("night_start")
	p.NightEnd = r.u16("night_end")
	if p.NightStart >= 24*60 || p.NightEnd >= 24*60 {
		r.fail("night", "minute of day out of range")
	}
	p.Weekend = r.u8("weekend")
	nh := int(r.u8("holidays"))
	if nh > MaxHolidays {
		r.fail("holidays", "too many")
		nh = 0
	}
	p.Holidays = nil
	for i := 0; i < nh; i++ {
		p.Holidays = append(p.Holidays, Day(r.u32("holidays")))
	}
	p.UTCOffset = int16(r.u16("utc_offset"))
	p.ReverseLimit = r.u32("reverse_limit")
	switch r.u8("close_on_tamper") {
	case 0:
	case 1:
		p.CloseOnTamper = true
	default:
		r.fail("close_on_tamper", "not 0 or 1")
	}
	p.LockoutFree = r.u8("lockout_free")
	p.LockoutBase = r.u32("lockout_base")
	p.LockoutMax = r.u32("lockout_max")
	p.PulseML = r.u32("pulse_ml")
	if p.PulseML == 0 || p.PulseML > maxPulseML {
		r.fail("pulse_ml", "out of range")
	}

	copy(s.Keys.MeterKey[:], r.take("meter_key", 16))
	copy(s.Keys.TelemetryKey[:], r.take("telemetry_key", 16))
	nk := int(r.u8("trusted"))
	if nk > MaxTrusted {
		r.fail("trusted", "too many keys")
		nk = 0
	}
	s.Keys.Trusted = nil
	for i := 0; i < nk; i++ {
		role := voucher.Role(r.u8("trusted_role"))
		if role != voucher.RoleCredit && role != voucher.RoleManagement {
			r.fail("trusted_role", "unknown role")
		}
		pub := append(ed25519.PublicKey(nil), r.take("trusted_key", ed25519.PublicKeySize)...)
		s.Keys.Trusted = append(s.Keys.Trusted, voucher.TrustedKey{Role: role, Public: pub})
	}

	c := &s.Core
	c.Credit = r.i64("credit")
	c.Forward = r.u64("forward")
	c.Reverse = r.u64("reverse")
	c.Loaded = r.u64("loaded")
	c.CostRem = r.u32("cost_rem")
	c.Status = Status(r.u8("status"))
	c.Tamper = Tamper(r.u8("tamper"))

	s.Tokens = r.bytes("tokens")
	switch r.u8("ready") {
	case 0:
	case 1:
		s.Ready = true
	default:
		r.fail("ready", "not 0 or 1")
	}
	s.Device = r.bytes("device")
	s.ProvCounter = r.u32("prov_counter")
	copy(s.ProvManagement[:], r.take("prov_management", 32))
	s.Failures = r.u16("failures")
	s.LockedUntil = r.i64("locked_until")
	s.CardFails = r.u16("card_fails")
	s.FwdML = r.u32("fwd_ml")
	s.RevML = r.u32("rev_ml")
	if s.FwdML >= 1000 || s.RevML >= 1000 {
		r.fail("flow_ml", "remainder of a litre out of range")
	}
	s.Seq.Max = r.u32("voucher_seq")
	s.Seq.Mask = r.u64("voucher_mask")
	s.FrameReserved = r.u32("frame_reserved")
	s.EventSeq = r.u32("event_seq")
	ne := int(r.u8("events"))
	if ne > MaxEvents || uint32(ne) > s.EventSeq {
		r.fail("events", "count out of range")
		ne = 0
	}
	s.Events = make([]Event, 0, MaxEvents+1)
	for i := 0; i < ne; i++ {
		t := int64(r.u32("event_time")) + epoch2000
		e := Event{Seq: s.EventSeq - uint32(ne-1-i), Time: time.Unix(t, 0).UTC()}
		e.Kind = EventKind(r.u8("event_kind"))
		e.Reason = Reason(r.u8("event_reason"))
		e.Value = r.i64("event_value")
		s.Events = append(s.Events, e)
	}
	if r.err == nil && len(r.b) != 0 {
		r.fail("end", fmt.Sprintf("%d trailing bytes", len(r.b)))
	}
	return r.err
}
