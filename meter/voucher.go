package meter

import (
	"bytes"
	"crypto/ed25519"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"sluice/cmac"
	"sluice/voucher"
)

// Window is the meter's memory of voucher sequence numbers: the highest
// accepted and a bit for each of the VoucherWindow below it. It is a small
// value so the fleet emulator can keep one per meter.
type Window struct {
	Max  uint32 // highest sequence number accepted (0: none yet)
	Mask uint64 // bit i set: sequence Max-1-i accepted
}

// VoucherWindow is how far below the highest accepted sequence number a
// voucher is still accepted, once. Vouchers travel by card and by
// downlink, so they may arrive out of order; one older than the window is
// refused as old and the head-end must reissue it.
const VoucherWindow = 64

// Check returns nil if sequence number q may be accepted now, or an error
// wrapping ErrUsed or ErrOld.
func (w *Window) Check(q uint32) error {
	switch {
	case q == 0:
		return fmt.Errorf("%w: voucher sequence 0", ErrFormat)
	case q > w.Max:
		return nil
	case q == w.Max:
		return fmt.Errorf("%w: voucher %d", ErrUsed, q)
	case w.Max-q > VoucherWindow:
		return fmt.Errorf("%w: voucher %d, newest %d", ErrOld, q, w.Max)
	case w.Mask&(1<<(w.Max-q-1)) != 0:
		return fmt.Errorf("%w: voucher %d", ErrUsed, q)
	}
	return nil
}

// Accept records q, which Check allowed.
func (w *Window) Accept(q uint32) {
	if q <= w.Max {
		w.Mask |= 1 << (w.Max - q - 1)
		return
	}
	shift := q - w.Max
	switch {
	case shift > VoucherWindow:
		w.Mask = 0
	case w.Max == 0:
		// Sequence numbers start at 1: there was no voucher 0 to mark.
		w.Mask = 0
	case shift == VoucherWindow:
		w.Mask = 1 << (VoucherWindow - 1)
	default:
		w.Mask = w.Mask<<shift | 1<<(shift-1)
	}
	w.Max = q
}

// ReceiptStatus is the outcome a receipt reports.
type ReceiptStatus uint8

const (
	Loaded    ReceiptStatus = 1 + iota // the voucher was applied now
	Duplicate                          // it had been applied before: retire it, do not load it again
	Rejected                           // it was refused; Reason says why
)

// Receipt is what the meter answers to a voucher, written back to the card
// or sent upstream. Its MAC under the meter's telemetry key lets the
// vending office believe it: a card holder cannot forge "not loaded".
type Receipt struct {
	MeterID uint64
	Seq     uint32
	Status  ReceiptStatus
	Reason  Reason
	Amount  int64  // credit this voucher added (0 unless Loaded)
	Credit  int64  // credit after the voucher
	Loaded  uint64 // cumulative credit loaded after the voucher
	Time    time.Time
	MAC     [8]byte
}

// Receipt encoding (big-endian), ReceiptSize bytes:
//
//	0  2  "SR"
//	2  1  version 1
//	3  1  status
//	4  1  reason
//	5  8  meter ID
//	13 4  voucher sequence number
//	17 8  amount added (signed)
//	25 8  credit after (signed)
//	33 8  cumulative credit loaded after
//	41 4  time, seconds since 2000-01-01 UTC
//	45 8  MAC: AES-CMAC(telemetry key, "sluice receipt" || bytes 0..44), first 8 bytes
const (
	receiptLabel = "sluice receipt"
	ReceiptSize  = 53
)

func (r *Receipt) body() []byte {
	b := make([]byte, 0, ReceiptSize)
	b = append(b, 'S', 'R', 1, byte(r.Status), byte(r.Reason))
	b = binary.BigEndian.AppendUint64(b, r.MeterID)
	b = binary.BigEndian.AppendUint32(b, r.Seq)
	b = binary.BigEndian.AppendUint64(b, uint64(r.Amount))
	b = binary.BigEndian.AppendUint64(b, uint64(r.Credit))
	b = binary.BigEndian.AppendUint64(b, r.Loaded)
	return binary.BigEndian.AppendUint32(b, uint32(min(max(r.Time.Unix()-epoch2000, 0), 1<<32-1)))
}

func receiptMAC(key [16]byte, body []byte) [8]byte {
	var tag [8]byte
	// A 16-byte key cannot make cmac.Sum fail.
	full, _ := cmac.Sum(key[:], append([]byte(receiptLabel), body...))
	copy(tag[:], full)
	return tag
}

// Seal sets the receipt's MAC under the meter's telemetry key.
func (r *Receipt) Seal(telemetryKey [16]byte) { r.MAC = receiptMAC(telemetryKey, r.body()) }

// MarshalBinary encodes the receipt with its MAC.
func (r Receipt) MarshalBinary() ([]byte, error) {
	return append(r.body(), r.MAC[:]...), nil
}

// ErrReceipt is returned for a receipt that does not parse or verify.
var ErrReceipt = errors.New("meter: invalid receipt")

// OpenReceipt parses an encoded receipt and checks its MAC under the
// meter's telemetry key (which the head-end derives from its KMS).
func OpenReceipt(b []byte, telemetryKey [16]byte) (Receipt, error) {
	if len(b) != ReceiptSize || b[0] != 'S' || b[1] != 'R' || b[2] != 1 {
		return Receipt{}, fmt.Errorf("%w: header or length", ErrReceipt)
	}
	r := Receipt{
		Status:  ReceiptStatus(b[3]),
		Reason:  Reason(b[4]),
		MeterID: binary.BigEndian.Uint64(b[5:]),
		Seq:     binary.BigEndian.Uint32(b[13:]),
		Amount:  int64(binary.BigEndian.Uint64(b[17:])),
		Credit:  int64(binary.BigEndian.Uint64(b[25:])),
		Loaded:  binary.BigEndian.Uint64(b[33:]),
		Time:    time.Unix(int64(binary.BigEndian.Uint32(b[41:]))+epoch2000, 0).UTC(),
	}
	copy(r.MAC[:], b[45:])
	want := receiptMAC(telemetryKey, b[:45])
	if !cmac.Equal(want[:], r.MAC[:]) {
		return Receipt{}, fmt.Errorf("%w: MAC", ErrReceipt)
	}
	return r, nil
}

// LoadVoucher offers a signed voucher (package voucher), read from a card
// or received as a remote top-up. It returns a receipt whenever the voucher
// parsed: a Duplicate receipt (with an error wrapping ErrUsed) tells a card
// that the voucher is spent, which is how a transfer interrupted after the
// meter's commit but before the card's update completes without loading
// twice.
//
// The signature, the signer's role, the meter ID and the expiry are
// checked by voucher.Open against the keyring in the meter's storage. The
// sequence number is checked here against a window of the last 64: a
// voucher is accepted once, in any order within the window, so a card
// voucher issued before a remote top-up can still be loaded after it.
func (m *Meter) LoadVoucher(now time.Time, b []byte, src Source) (Receipt, error) {
	if m.halt != nil {
		return Receipt{}, m.halt
	}
	if !m.s.Ready {
		return Receipt{}, ErrNotProvisioned
	}
	var rc Receipt
	var rej error
	err := m.update(func(s *state) error {
		v, err := voucher.Open(b, s.Keys.Trusted, s.ID, now)
		if err != nil {
			err = voucherErr(err)
		}
		if err == nil {
			err = s.Seq.Check(v.Sequence)
		}
		if err == nil {
			// Log the acceptance before its consequences; a refusal by
			// the meter itself undoes both.
			before := s.clone()
			s.log(now, EvVoucherAccepted, ReasonNone, int64(v.Sequence))
			if err = s.applyVoucher(now, v); err != nil {
				*s = before
			}
		}
		rc = Receipt{MeterID: s.ID, Status: Loaded, Time: now.UTC().Truncate(time.Second)}
		if v != nil {
			rc.Seq = v.Sequence
		}
		if err != nil {
			rej = err
			rc.Status, rc.Reason = Rejected, ReasonOf(err)
			if rc.Reason == ReasonUsed {
				rc.Status = Duplicate
			}
			if n := len(s.Events); src == FromRemote && n > 0 && s.Events[n-1].Kind == EvVoucherRejected && s.Events[n-1].Reason == rc.Reason {
				// The same refusal again from the network: the log
				// already says so, and writing nothing means a flood
				// of bad downlinks cannot wear the EEPROM out.
				rc.Credit, rc.Loaded = s.Core.Credit, s.Core.Loaded
				rc.Seal(s.Keys.TelemetryKey)
				return errNoChange
			}
			s.log(now, EvVoucherRejected, rc.Reason, int64(rc.Seq))
			if src == FromCard && rc.Reason == ReasonSignature {
				// A forged voucher on a card is card-port abuse as much
				// as a failed authentication is.
				s.cardFailed(now)
			}
		} else {
			if v.Kind == voucher.KindCredit {
				rc.Amount = int64(v.Quantity)
			}
			s.Seq.Accept(v.Sequence)
			if src == FromCard {
				s.CardFails = 0
			}
		}
		rc.Credit, rc.Loaded = s.Core.Credit, s.Core.Loaded
		rc.Seal(s.Keys.TelemetryKey)
		return nil
	})
	if err != nil {
		return Receipt{}, err
	}
	return rc, rej
}

// voucherErr adds the meter's sentinel to an error of package voucher.
func voucherErr(err error) error {
	var s error
	switch {
	case errors.Is(err, voucher.ErrWrongMeter):
		s = ErrWrongMeter
	case errors.Is(err, voucher.ErrExpired):
		s = ErrExpired
	case errors.Is(err, voucher.ErrReplay):
		s = ErrUsed
	case errors.Is(err, voucher.ErrSignature), errors.Is(err, voucher.ErrUnknownKey), errors.Is(err, voucher.ErrWrongRole):
		s = ErrSignature
	default:
		s = ErrFormat
	}
	return fmt.Errorf("%w: %w", s, err)
}

// Parameters an engineering voucher (voucher.KindSetParameter) sets. The
// voucher carries a 32-bit Value; its meaning per parameter is below.
const (
	ParamLowCredit       uint16 = 1 + iota // Value: threshold in the meter's unit
	ParamEmergencyCredit                   // Value: amount
	ParamFriendlyLimit                     // Value: amount (0 disables friendly credit)
	ParamPrice                             // Value: minor units per m3 (Minor meters)
	ParamNight                             // Value: start<<16 | end, minutes after local midnight
	ParamWeekend                           // Value: friendly weekdays, bit 1<<time.Weekday
	ParamAddHoliday                        // Value: Day (days since 1970-01-01); the oldest goes when full
	ParamClearHolidays                     // Value ignored
	ParamValve                             // Value: 1 closes and holds the valve, 0 releases it
	ParamClearCredit                       // Value ignored: credit (and debt) to zero
	ParamResetLockout                      // Value ignored: clear the keypad lockout
	ParamReverseLimit                      // Value: litres of reverse flow per tick tolerated
	ParamCloseOnTamper                     // Value: 1 closes the valve on magnet or cover tamper
	ParamUTCOffset                         // Value: int32 minutes east of UTC, two's complement
	ParamPulseWeight                       // Value: millilitres per flow-sensor pulse, 1..1,000,000
)

func (s *state) applyVoucher(now time.Time, v *voucher.Voucher) error {
	switch v.Kind {
	case voucher.KindCredit:
		if Unit(v.Unit) != s.Params.Unit {
			return fmt.Errorf("%w: voucher credits %s, meter counts %s", ErrUnit, Unit(v.Unit), s.Params.Unit)
		}
		return addCredit(s, now, int64(v.Quantity))
	case voucher.KindClearTamper:
		t := Tamper(v.TamperMask)
		s.log(now, EvTamperCleared, ReasonNone, int64(s.Core.Tamper&t))
		if t&TamperCardPort != 0 {
			s.CardFails = 0
		}
		s.logEffects(now, s.Core.ClearTamper(&s.Params, now, t), 0)
		return nil
	case voucher.KindSetParameter:
		return s.setParam(now, v.Param, v.Value)
	case voucher.KindKeyChange:
		return s.changeKey(now, v.Slot, v.NewKey, v.Retire)
	}
	return fmt.Errorf("%w: voucher kind %v", ErrUnsupported, v.Kind)
}

// changeKey installs a trusted public key for a role and retires one, in
// one commit, so the meter never trusts neither or an unbounded set.
func (s *state) changeKey(now time.Time, role voucher.Role, pub ed25519.PublicKey, retire uint32) error {
	var ring voucher.Keyring
	retired := false
	for _, k := range s.Keys.Trusted {
		if retire != 0 && voucher.KeyID(k.Public) == retire {
			retired = true
			continue
		}
		if k.Role == role && bytes.Equal(k.Public, pub) {
			return fmt.Errorf("%w: key %08x already trusted", ErrKey, voucher.KeyID(pub))
		}
		ring = append(ring, k)
	}
	if retire != 0 && !retired {
		return fmt.Errorf("%w: key %08x to retire is not trusted", ErrKey, retire)
	}
	ring = append(ring, voucher.TrustedKey{Role: role, Public: append(ed25519.PublicKey(nil), pub...)})
	if len(ring) > MaxTrusted {
		return fmt.Errorf("%w: keyring full (%d keys); retire one", ErrKey, MaxTrusted)
	}
	s.Keys.Trusted = ring
	s.log(now, EvKeyChanged, ReasonNone, int64(voucher.KeyID(pub)))
	return nil
}

// setParam carries out an engineering setting.
func (s *state) setParam(now time.Time, param uint16, value uint32) error {
	p := &s.Params
	next := *p
	next.Holidays = append([]Day(nil), p.Holidays...)
	switch param {
	case ParamValve:
		if value > 1 {
			return fmt.Errorf("%w: valve value %d, want 0 or 1", ErrFormat, value)
		}
		s.log(now, EvSettingChanged, ReasonNone, int64(param))
		s.logEffects(now, s.Core.ForceValve(p, now, value == 1), 0)
		return nil
	case ParamClearCredit:
		s.log(now, EvCreditCleared, ReasonNone, s.Core.Credit)
		s.Core.Status &^= Emergency
		s.logEffects(now, s.Core.Load(p, now, -s.Core.Credit), 0)
		return nil
	case ParamResetLockout:
		s.Failures, s.LockedUntil = 0, 0
	case ParamLowCredit:
		next.LowCredit = int64(value)
	case ParamEmergencyCredit:
		next.EmergencyCredit = int64(value)
	case ParamFriendlyLimit:
		next.FriendlyLimit = int64(value)
	case ParamPrice:
		next.Price = value
	case ParamNight:
		next.NightStart, next.NightEnd = uint16(value>>16), uint16(value)
	case ParamWeekend:
		next.Weekend = uint8(value)
		if value > 0x7F {
			return fmt.Errorf("%w: weekend mask %#x has bits above Saturday", ErrFormat, value)
		}
	case ParamAddHoliday:
		if len(next.Holidays) >= MaxHolidays {
			next.Holidays = next.Holidays[1:]
		}
		next.Holidays = append(next.Holidays, Day(int32(value)))
	case ParamClearHolidays:
		next.Holidays = nil
	case ParamReverseLimit:
		next.ReverseLimit = value
	case ParamCloseOnTamper:
		next.CloseOnTamper = value != 0
	case ParamPulseWeight:
		if value == 0 || value > maxPulseML {
			return fmt.Errorf("%w: pulse weight %d mL out of range", ErrFormat, value)
		}
		next.PulseML = value
	case ParamUTCOffset:
		off := int32(value)
		if off < -14*60 || off > 14*60 {
			return fmt.Errorf("%w: UTC offset %d minutes out of range", ErrFormat, off)
		}
		next.UTCOffset = int16(off)
	default:
		return fmt.Errorf("%w: parameter %d", ErrUnsupported, param)
	}
	if err := next.validate(); err != nil {
		return fmt.Errorf("%w: %w", ErrFormat, err)
	}
	s.Params = next
	s.log(now, EvSettingChanged, ReasonNone, int64(param))
	s.logEffects(now, s.Core.Settle(&s.Params, now), 0)
	return nil
}
