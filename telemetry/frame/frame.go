// Package frame is the binary wire format of Sluice meter telemetry,
// version 1: one frame per MQTT message, sealed by the meter with a
// truncated AES-CMAC under its own telemetry key.
//
// # Design
//
// A frame is a fixed 18-byte header, a body whose layout the kind fixes, and
// an 8-byte tag. Every integer is big-endian and every field has a fixed
// width, so the head-end parses a frame with bounds checks and loads only: no
// varints, no TLV, no allocation when the caller reuses a Frame. The parser
// is strict: a frame is accepted only in its one canonical form (exact
// length, reserved bits zero, counts within bounds), so two different byte
// strings never decode to the same frame and storing by (meter, counter)
// plus tag is unambiguous.
//
// # Security
//
// The tag is AES-CMAC(telemetry key, "sluice telemetry" || header || body)
// truncated to 64 bits. The 16-byte label separates these MACs from every
// other use of the telemetry key (the meter's voucher receipts MAC
// "sluice receipt" || ...), so no frame can be passed off as a receipt or the
// reverse. Open verifies the tag, in constant time, before it interprets a
// single body byte. The telemetry key is diversified per meter by the KMS, so
// a meter can only speak for itself; the frame counter, checked by package
// replay, stops replays. The payload is not encrypted: readings are not
// secret from the broker operator, only unforgeable.
package frame

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"sluice/cmac"
)

// Version is the frame format version this package reads and writes.
const Version = 1

// Sizes in bytes.
const (
	HeaderSize   = 18
	TagSize      = 8
	KeySize      = 16
	MaxIntervals = 96 // a day of 15-minute intervals
	MaxEvents    = 32
	readingFixed = 38
	eventSize    = 14
	ackSize      = 35
	// MaxSize is the longest valid frame.
	MaxSize = HeaderSize + 1 + MaxEvents*eventSize + TagSize
)

// label is prepended to every MAC input; exactly one AES block.
const label = "sluice telemetry"

// Errors callers branch on.
var (
	ErrShort   = errors.New("frame: too short")
	ErrLength  = errors.New("frame: length does not match its contents")
	ErrVersion = errors.New("frame: unsupported version")
	ErrKind    = errors.New("frame: unknown kind")
	ErrField   = errors.New("frame: field out of range")
	ErrMAC     = errors.New("frame: MAC verification failed")
	ErrKey     = errors.New("frame: telemetry key must be 16 bytes")
)

// Kind says what a frame carries.
type Kind uint8

const (
	KindReading Kind = 1 // meter registers and status
	KindEvent   Kind = 2 // one or more logged events
	KindAck     Kind = 3 // the fate of a token or voucher
)

func (k Kind) String() string {
	switch k {
	case KindReading:
		return "reading"
	case KindEvent:
		return "event"
	case KindAck:
		return "ack"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Unit is what the credit registers count (the meter's credit unit).
type Unit uint8

const (
	UnitLitres Unit = 1 // credit is water volume
	UnitMinor  Unit = 2 // credit is money, in minor currency units
)

// Status is the meter's state in a reading. Bits 0-5 follow the meter's
// supply state and bits 6-10 its latched tamper flags, so a meter builds it
// as status | tamper<<6.
type Status uint16

const (
	ValveClosed  Status = 1 << iota // the valve is closed
	ClosedCredit                    // ... because credit ran out
	ClosedTamper                    // ... because of a tamper condition
	ClosedRemote                    // ... by an engineering command
	Emergency                       // emergency credit in use
	LowCredit                       // credit below the warning level
	TamperMagnet                    // magnetic field on the sensor
	TamperCover                     // enclosure opened
	ReverseFlow                     // reverse flow beyond the meter's limit
	TamperCard                      // repeated card authentication failures
	LowBattery                      // battery low

	statusDefined = LowBattery<<1 - 1
)

// Reading is the body of a KindReading frame.
type Reading struct {
	Forward uint64 // litres registered forward: the billing register
	Reverse uint64 // litres registered in reverse
	Credit  int64  // credit left, in Unit; negative while emergency credit is used
	Loaded  uint64 // credit loaded since manufacture, in Unit
	Unit    Unit
	Status  Status
	// Interval is the length of each entry of Intervals; Intervals are the
	// litres consumed in consecutive intervals, oldest first, the last one
	// ending at the frame's time. Interval is 0 exactly when there are none.
	Interval  time.Duration
	Intervals []uint32
}

// Event is one entry of a KindEvent frame. Kind and Reason use the codes of
// docs/telemetry.md (the meter's event log numbering); the frame carries
// them without interpreting them, so new codes need no new format.
type Event struct {
	Kind   uint8
	Reason uint8
	Time   time.Time
	Value  int64 // detail: credit added, bits set, litres...
}

// Subject is what an acknowledgement is about.
type Subject uint8

const (
	SubjectToken   Subject = 1 // an STS token typed on the keypad; Ref is its TID
	SubjectVoucher Subject = 2 // a Sluice voucher (card or downlink); Ref is its sequence number
)

// Result is what the meter did with a token or voucher.
type Result uint8

const (
	Accepted  Result = 1 // applied now
	Duplicate Result = 2 // applied before: retire it, it added nothing now
	Rejected  Result = 3 // refused; Reason says why
)

// Ack is the body of a KindAck frame.
type Ack struct {
	Subject Subject
	Result  Result
	Reason  uint8  // reason code when rejected (docs/telemetry.md), else 0
	Ref     uint64 // token TID or voucher sequence number
	Amount  int64  // credit this token or voucher added (0 unless Accepted)
	Credit  int64  // credit after
	Loaded  uint64 // cumulative credit loaded after
}

// Frame is one decoded frame. Exactly the body its Kind names is used; Open
// reuses Intervals and Events storage, so a caller that keeps one Frame per
// goroutine decodes without allocating.
type Frame struct {
	Kind    Kind
	Meter   uint64    // the meter's serial number; must match the topic
	Counter uint32    // strictly increasing per meter and key, from 1
	Time    time.Time // the meter's clock when it sealed the frame, whole seconds

	Reading Reading
	Events  []Event
	Ack     Ack
}

// Header is the part of a frame Peek returns before verification.
type Header struct {
	Kind    Kind
	Meter   uint64
	Counter uint32
	Time    time.Time
}

// epoch is the zero of frame times: 2000-01-01T00:00:00Z, as in the meter's
// receipts. A uint32 of seconds lasts until 2136.
var epoch = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC).Unix()

func putTime(b []byte, t time.Time, field string) error {
	s := t.Unix() - epoch
	if s < 0 || s > 1<<32-1 {
		return fmt.Errorf("%w: %s %v outside 2000..2136", ErrField, field, t)
	}
	binary.BigEndian.PutUint32(b, uint32(s))
	return nil
}

func getTime(b []byte) time.Time {
	return time.Unix(epoch+int64(binary.BigEndian.Uint32(b)), 0).UTC()
}

// Key is a meter's telemetry key prepared for sealing and opening. It is
// safe for concurrent use; the head-end keeps one per meter.
type Key struct {
	base cmac.MAC // keyed, with the label absorbed; copied per frame
}

// NewKey prepares a 16-byte telemetry key.
func NewKey(k []byte) (*Key, error) {
	if len(k) != KeySize {
		return nil, ErrKey
	}
	m, err := cmac.New(k)
	if err != nil {
		return nil, fmt.Errorf("frame: %w", err)
	}
	m.Write([]byte(label))
	return &Key{base: *m}, nil
}

// tag computes the truncated MAC of msg. Copying base gives an independent
// CMAC state that already holds the label, so concurrent calls never share
// mutable state.
func (k *Key) tag(msg []byte) (t [TagSize]byte) {
	m := k.base
	m.Write(msg)
	var full [cmac.Size]byte
	copy(t[:], m.Sum(full[:0]))
	return t
}

// Seal appends the encoded and MAC'd frame to dst. It checks every field
// against the format's limits and returns ErrField (naming the field) rather
// than write a frame Open would refuse.
func Seal(dst []byte, key *Key, f *Frame) ([]byte, error) {
	if f.Counter == 0 {
		return dst, fmt.Errorf("%w: counter 0 is reserved", ErrField)
	}
	start := len(dst)
	var h [HeaderSize]byte
	h[0], h[1] = Version, byte(f.Kind)
	binary.BigEndian.PutUint64(h[2:], f.Meter)
	binary.BigEndian.PutUint32(h[10:], f.Counter)
	if err := putTime(h[14:], f.Time, "time"); err != nil {
		return dst, err
	}
	dst = append(dst, h[:]...)
	var err error
	switch f.Kind {
	case KindReading:
		dst, err = appendReading(dst, &f.Reading)
	case KindEvent:
		dst, err = appendEvents(dst, f.Events)
	case KindAck:
		dst, err = appendAck(dst, &f.Ack)
	default:
		err = fmt.Errorf("%w: %d", ErrKind, f.Kind)
	}
	if err != nil {
		return dst[:start], err
	}
	t := key.tag(dst[start:])
	return append(dst, t[:]...), nil
}

func appendReading(b []byte, r *Reading) ([]byte, error) {
	if r.Unit != UnitLitres && r.Unit != UnitMinor {
		return b, fmt.Errorf("%w: reading unit %d", ErrField, r.Unit)
	}
	if r.Status&^statusDefined != 0 {
		return b, fmt.Errorf("%w: reading status %#04x has reserved bits", ErrField, r.Status)
	}
	if len(r.Intervals) > MaxIntervals {
		return b, fmt.Errorf("%w: %d intervals, at most %d", ErrField, len(r.Intervals), MaxIntervals)
	}
	secs := r.Interval / time.Second
	if r.Interval%time.Second != 0 || secs > 65535 || (secs == 0) != (len(r.Intervals) == 0) {
		return b, fmt.Errorf("%w: interval %v for %d intervals (whole seconds up to 65535, zero exactly when none)", ErrField, r.Interval, len(r.Intervals))
	}
	b = binary.BigEndian.AppendUint64(b, r.Forward)
	b = binary.BigEndian.AppendUint64(b, r.Reverse)
	b = binary.BigEndian.AppendUint64(b, uint64(r.Credit))
	b = binary.BigEndian.AppendUint64(b, r.Loaded)
	b = append(b, byte(r.Unit))
	b = binary.BigEndian.AppendUint16(b, uint16(r.Status))
	b = binary.BigEndian.AppendUint16(b, uint16(secs))
	b = append(b, byte(len(r.Intervals)))
	for _, v := range r.Intervals {
		b = binary.BigEndian.AppendUint32(b, v)
	}
	return b, nil
}

func appendEvents(b []byte, evs []Event) ([]byte, error) {
	if len(evs) == 0 || len(evs) > MaxEvents {
		return b, fmt.Errorf("%w: %d events, want 1..%d", ErrField, len(evs), MaxEvents)
	}
	b = append(b, byte(len(evs)))
	for i, e := range evs {
		if e.Kind == 0 {
			return b, fmt.Errorf("%w: event %d kind 0", ErrField, i)
		}
		var t [4]byte
		if err := putTime(t[:], e.Time, fmt.Sprintf("event %d time", i)); err != nil {
			return b, err
		}
		b = append(b, e.Kind, e.Reason)
		b = append(b, t[:]...)
		b = binary.BigEndian.AppendUint64(b, uint64(e.Value))
	}
	return b, nil
}

func appendAck(b []byte, a *Ack) ([]byte, error) {
	if a.Subject != SubjectToken && a.Subject != SubjectVoucher {
		return b, fmt.Errorf("%w: ack subject %d", ErrField, a.Subject)
	}
	if a.Result < Accepted || a.Result > Rejected {
		return b, fmt.Errorf("%w: ack result %d", ErrField, a.Result)
	}
	if (a.Result == Rejected) != (a.Reason != 0) {
		return b, fmt.Errorf("%w: ack reason %d with result %d (a reason exactly when rejected)", ErrField, a.Reason, a.Result)
	}
	if a.Result != Accepted && a.Amount != 0 {
		return b, fmt.Errorf("%w: ack amount %d on a frame that added nothing", ErrField, a.Amount)
	}
	b = append(b, byte(a.Subject), byte(a.Result), a.Reason)
	b = binary.BigEndian.AppendUint64(b, a.Ref)
	b = binary.BigEndian.AppendUint64(b, uint64(a.Amount))
	b = binary.BigEndian.AppendUint64(b, uint64(a.Credit))
	b = binary.BigEndian.AppendUint64(b, a.Loaded)
	return b, nil
}

// Peek parses the header of b without verifying anything else, so the
// head-end can find the meter's key. Nothing it returns is authentic until
// Open succeeds.
func Peek(b []byte) (Header, error) {
	if len(b) < HeaderSize+TagSize {
		return Header{}, fmt.Errorf("%w: %d bytes, a frame has at least %d", ErrShort, len(b), HeaderSize+TagSize)
	}
	if b[0] != Version {
		return Header{}, fmt.Errorf("%w: %d", ErrVersion, b[0])
	}
	return Header{
		Kind:    Kind(b[1]),
		Meter:   binary.BigEndian.Uint64(b[2:]),
		Counter: binary.BigEndian.Uint32(b[10:]),
		Time:    getTime(b[14:]),
	}, nil
}

// Open verifies b under key and decodes it into f. The tag is checked
// before a single body byte is interpreted; a frame that fails it leaves f
// untouched. On any error the error names the field, and f must not be used.
func Open(key *Key, b []byte, f *Frame) error {
	h, err := Peek(b)
	if err != nil {
		return err
	}
	body := b[HeaderSize : len(b)-TagSize]
	t := key.tag(b[:len(b)-TagSize])
	if !cmac.Equal(t[:], b[len(b)-TagSize:]) {
		return ErrMAC
	}
	if h.Counter == 0 {
		return fmt.Errorf("%w: counter 0 is reserved", ErrField)
	}
	switch h.Kind {
	case KindReading:
		err = parseReading(body, &f.Reading)
	case KindEvent:
		f.Events, err = parseEvents(body, f.Events[:0])
	case KindAck:
		err = parseAck(body, &f.Ack)
	default:
		return fmt.Errorf("%w: %d", ErrKind, h.Kind)
	}
	if err != nil {
		return err
	}
	f.Kind, f.Meter, f.Counter, f.Time = h.Kind, h.Meter, h.Counter, h.Time
	return nil
}

// Tag returns the tag of a frame Open accepted: with the counter it
// identifies the frame, for telling retransmissions from reused counters.
func Tag(b []byte) (t [TagSize]byte) {
	if len(b) >= TagSize {
		copy(t[:], b[len(b)-TagSize:])
	}
	return t
}

func parseReading(b []byte, r *Reading) error {
	if len(b) < readingFixed {
		return fmt.Errorf("%w: reading body %d bytes, at least %d", ErrShort, len(b), readingFixed)
	}
	n := int(b[37])
	if n > MaxIntervals {
		return fmt.Errorf("%w: %d intervals, at most %d", ErrField, n, MaxIntervals)
	}
	if len(b) != readingFixed+4*n {
		return fmt.Errorf("%w: reading body %d bytes for %d intervals, want %d", ErrLength, len(b), n, readingFixed+4*n)
	}
	unit := Unit(b[32])
	if unit != UnitLitres && unit != UnitMinor {
		return fmt.Errorf("%w: reading unit %d", ErrField, unit)
	}
	status := Status(binary.BigEndian.Uint16(b[33:]))
	if status&^statusDefined != 0 {
		return fmt.Errorf("%w: reading status %#04x has reserved bits", ErrField, uint16(status))
	}
	secs := binary.BigEndian.Uint16(b[35:])
	if (secs == 0) != (n == 0) {
		return fmt.Errorf("%w: interval %ds for %d intervals", ErrField, secs, n)
	}
	r.Forward = binary.BigEndian.Uint64(b[0:])
	r.Reverse = binary.BigEndian.Uint64(b[8:])
	r.Credit = int64(binary.BigEndian.Uint64(b[16:]))
	r.Loaded = binary.BigEndian.Uint64(b[24:])
	r.Unit, r.Status = unit, status
	r.Interval = time.Duration(secs) * time.Second
	r.Intervals = r.Intervals[:0]
	for i := range n {
		r.Intervals = append(r.Intervals, binary.BigEndian.Uint32(b[readingFixed+4*i:]))
	}
	return nil
}

func parseEvents(b []byte, evs []Event) ([]Event, error) {
	if len(b) < 1 {
		return evs, fmt.Errorf("%w: event count missing", ErrShort)
	}
	n := int(b[0])
	if n == 0 || n > MaxEvents {
		return evs, fmt.Errorf("%w: %d events, want 1..%d", ErrField, n, MaxEvents)
	}
	if len(b) != 1+n*eventSize {
		return evs, fmt.Errorf("%w: event body %d bytes for %d events, want %d", ErrLength, len(b), n, 1+n*eventSize)
	}
	for i := range n {
		e := b[1+i*eventSize:]
		if e[0] == 0 {
			return evs, fmt.Errorf("%w: event %d kind 0", ErrField, i)
		}
		evs = append(evs, Event{Kind: e[0], Reason: e[1], Time: getTime(e[2:]), Value: int64(binary.BigEndian.Uint64(e[6:]))})
	}
	return evs, nil
}

func parseAck(b []byte, a *Ack) error {
	if len(b) != ackSize {
		return fmt.Errorf("%w: ack body %d bytes, want %d", ErrLength, len(b), ackSize)
	}
	v := Ack{
		Subject: Subject(b[0]), Result: Result(b[1]), Reason: b[2],
		Ref:    binary.BigEndian.Uint64(b[3:]),
		Amount: int64(binary.BigEndian.Uint64(b[11:])),
		Credit: int64(binary.BigEndian.Uint64(b[19:])),
		Loaded: binary.BigEndian.Uint64(b[27:]),
	}
	if v.Subject != SubjectToken && v.Subject != SubjectVoucher {
		return fmt.Errorf("%w: ack subject %d", ErrField, v.Subject)
	}
	if v.Result < Accepted || v.Result > Rejected {
		return fmt.Errorf("%w: ack result %d", ErrField, v.Result)
	}
	if (v.Result == Rejected) != (v.Reason != 0) {
		return fmt.Errorf("%w: ack reason %d with result %d", ErrField, v.Reason, v.Result)
	}
	if v.Result != Accepted && v.Amount != 0 {
		return fmt.Errorf("%w: ack amount %d on a frame that added nothing", ErrField, v.Amount)
	}
	*a = v
	return nil
}
