package sts

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"time"
)

// TIDMemory is how many token identifiers a Decoder remembers (the
// standard asks for at least 50).
const TIDMemory = 64

// DecoderConfig is a meter's STS identity when it is manufactured or
// reprovisioned.
type DecoderConfig struct {
	EA   EA
	Key  []byte // decoder key: 8 bytes for EA07, 16 for EA11
	ID   KeyID  // KT, SGC, TI, KRN of that key
	KEN  uint8  // key expiry number; 255 = the key never expires
	Base BaseDate
	// CreditSubclasses is the set of class 0 subclasses the meter accepts,
	// bit n for subclass n (a water meter: 1<<SubWater | 1<<SubWaterCurrency);
	// 0 accepts all.
	CreditSubclasses uint16
	Tables           *STATables // EA07 only: the STA tables
}

// Decoder is the meter side of STS: it holds the decoder key, its
// identifiers, the base date, the TID memory and any key change set in
// progress, and decides on each token.
//
// A Decoder is a plain value: it has no pointers into mutable memory (the
// STA tables it refers to are immutable), so assigning it copies the whole
// state. Accept changes the Decoder only when it accepts a token, so a meter
// can run it on a copy, journal the copy's MarshalBinary and then adopt it:
// a power cut at any point leaves the old state or the new one.
type Decoder struct {
	tables *STATables

	ea     EA
	key    [16]byte
	id     KeyID
	ken    uint8
	base   BaseDate
	credit uint16

	minTID uint32 // lowest TID still acceptable: one above the last one forgotten
	n      int    // TIDs held
	tids   [TIDMemory]uint32

	pending  uint8 // key change sections held, bit i for section i+1
	sections [4]uint64
}

// NewDecoder returns a Decoder with an empty TID memory.
func NewDecoder(cfg DecoderConfig) (Decoder, error) {
	var d Decoder
	if !cfg.EA.valid() {
		return d, fmt.Errorf("%w: ea %d is not 07 or 11", ErrFormat, uint8(cfg.EA))
	}
	if len(cfg.Key) != cfg.EA.KeySize() {
		return d, fmt.Errorf("%w: decoder_key is %d bytes, EA%s needs %d", ErrFormat, len(cfg.Key), cfg.EA, cfg.EA.KeySize())
	}
	if cfg.EA == EA07 && cfg.Tables == nil {
		return d, fmt.Errorf("%w: EA07 needs the STA tables", ErrFormat)
	}
	if err := cfg.ID.Validate(); err != nil {
		return d, err
	}
	if err := checkBase(cfg.Base); err != nil {
		return d, err
	}
	if cfg.CreditSubclasses>>(SubTimeCurrency+1) != 0 {
		return d, fmt.Errorf("%w: credit subclasses %#x name reserved subclasses", ErrFormat, cfg.CreditSubclasses)
	}
	d.tables = cfg.Tables
	d.ea = cfg.EA
	copy(d.key[:], cfg.Key)
	d.id = cfg.ID
	d.ken = cfg.KEN
	d.base = cfg.Base
	d.credit = cfg.CreditSubclasses
	return d, nil
}

// SetTables gives a Decoder restored by UnmarshalBinary its STA tables,
// which are configuration, not state.
func (d *Decoder) SetTables(t *STATables) { d.tables = t }

// EA returns the decoder's encryption algorithm.
func (d *Decoder) EA() EA { return d.ea }

// Key returns a copy of the decoder key in force.
func (d *Decoder) Key() []byte { return append([]byte(nil), d.key[:d.ea.KeySize()]...) }

// KeyID returns the KT, SGC, TI and KRN of the key in force.
func (d *Decoder) KeyID() KeyID { return d.id }

// KEN returns the key expiry number of the key in force.
func (d *Decoder) KEN() uint8 { return d.ken }

// Base returns the base date TIDs are counted from.
func (d *Decoder) Base() BaseDate { return d.base }

// Pending returns the key change sections held, bit i for section i+1.
func (d *Decoder) Pending() uint8 { return d.pending }

// MinTID returns the lowest TID the decoder could still accept.
func (d *Decoder) MinTID() uint32 { return d.minTID }

// TIDs returns a copy of the TID memory, ascending.
func (d *Decoder) TIDs() []uint32 { return append([]uint32(nil), d.tids[:d.n]...) }
func (d *Decoder) sectionsNeeded() uint8 {
	if d.ea == EA11 {
		return 0b1111
	}
	return 0b0011
}

// Kind says what an accepted token asks the meter to do.
type Kind uint8

const (
	KindCredit           Kind = iota + 1 // add Result.Amount of Result.Subclass
	KindManagement                       // apply Result.Subclass with Result.Value
	KindKeyChangePartial                 // a key change section was stored; nothing to apply yet
	KindKeyChange                        // a key change set completed and the new key is in force
	KindTest                             // run the tests of Result.Control (class 1)
)

func (k Kind) String() string {
	switch k {
	case KindCredit:
		return "credit"
	case KindManagement:
		return "management"
	case KindKeyChangePartial:
		return "key-change-partial"
	case KindKeyChange:
		return "key-change"
	case KindTest:
		return "test"
	}
	return fmt.Sprintf("Kind(%d)", uint8(k))
}

// Result is an accepted token's instruction to the meter.
type Result struct {
	Kind            Kind
	Class, Subclass uint8

	// Credit and management tokens.
	RND    uint8
	TID    uint32
	Issued time.Time // start of the TID's minute
	Field  uint16    // the 16-bit amount or value field as carried
	Amount uint64    // credit: the quantity in the subclass's units (0.1 m3 for water)

	// Key change tokens.
	Sections uint8    // sections held after this token (bit 0 = section 1)
	NewID    KeyID    // KindKeyChange: identifiers of the new key
	NewKEN   uint8    // KindKeyChange
	Rollover bool     // KindKeyChange: TID memory cleared, base date moved
	NewBase  BaseDate // KindKeyChange: the base date now in force

	// Test tokens.
	Control uint64
	Mfr     uint16
}

// AcceptDigits is Accept on the 20-digit form.
func (d *Decoder) AcceptDigits(s string) (Result, error) {
	t, err := ParseToken(s)
	if err != nil {
		return Result{}, err
	}
	return d.Accept(t)
}

// Accept decides on one token. On success it returns what to apply and
// updates d (TID memory, key change set, key); on error d is unchanged and
// the error wraps ErrFormat, ErrCRC, ErrUnsupported, ErrUsed, ErrOld or
// ErrKeyExpired, which a meter reports as the rejection reason.
func (d *Decoder) Accept(t Token) (Result, error) {
	var c Coder
	if err := c.init(d.ea, d.key[:d.ea.KeySize()], d.tables); err != nil {
		return Result{}, err
	}
	p, err := c.Open(t)
	if err != nil {
		return Result{}, err
	}
	r := Result{Class: p.Class, Subclass: p.Subclass}
	switch {
	case p.Class == ClassTest:
		r.Kind = KindTest
		r.Control, r.Mfr = p.TestFields()
		return r, nil
	case p.Class == ClassManagement && isKeyChange(p.Subclass):
		return d.keyChange(p, r)
	}
	if p.Class == ClassCredit && d.credit != 0 && d.credit>>p.Subclass&1 == 0 {
		return Result{}, fmt.Errorf("%w: credit subclass %d is not for this meter", ErrUnsupported, p.Subclass)
	}
	tid := p.TID()
	if err := d.checkTID(tid); err != nil {
		return Result{}, err
	}
	d.remember(tid)
	r.RND, r.TID, r.Field = p.RND(), tid, p.Field()
	r.Issued = TIDTime(d.base, tid)
	if p.Class == ClassCredit {
		r.Kind = KindCredit
		r.Amount = DecodeAmount(r.Field)
	} else {
		r.Kind = KindManagement
	}
	return r, nil
}

// checkTID applies the TID memory and the key expiry to a token's TID.
func (d *Decoder) checkTID(tid uint32) error {
	i := d.search(tid)
	switch {
	case i < d.n && d.tids[i] == tid:
		return fmt.Errorf("%w: tid %d", ErrUsed, tid)
	case tid < d.minTID, d.n == TIDMemory && tid < d.tids[0]:
		return fmt.Errorf("%w: tid %d is older than the memory (oldest acceptable %d)", ErrOld, tid, max(d.minTID, d.oldest()))
	case tid>>16 > uint32(d.ken):
		return fmt.Errorf("%w: tid %d is past key expiry number %d", ErrKeyExpired, tid, d.ken)
	}
	return nil
}

func (d *Decoder) oldest() uint32 {
	if d.n == TIDMemory {
		return d.tids[0]
	}
	return 0
}

// search returns the index of the first held TID >= tid.
func (d *Decoder) search(tid uint32) int {
	lo, hi := 0, d.n
	for lo < hi {
		m := (lo + hi) / 2
		if d.tids[m] < tid {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo
}

// remember inserts a checked TID, forgetting the oldest when full: from then
// on nothing at or below the forgotten one is accepted, so a token can never
// be used twice however many tokens followed it.
func (d *Decoder) remember(tid uint32) {
	if d.n == TIDMemory {
		d.minTID = d.tids[0] + 1
		copy(d.tids[:], d.tids[1:])
		d.n--
	}
	i := d.search(tid)
	copy(d.tids[i+1:d.n+1], d.tids[i:d.n])
	d.tids[i] = tid
	d.n++
}

// keyChange stores a section and commits the set when complete.
func (d *Decoder) keyChange(p Plain, r Result) (Result, error) {
	i := sectionIndex(p.Subclass)
	if d.ea == EA07 && i >= 2 {
		return Result{}, fmt.Errorf("%w: key change section %d on a 64-bit decoder key", ErrUnsupported, i+1)
	}
	n := *d
	n.sections[i] = p.Payload
	n.pending |= 1 << i
	r.Sections = n.pending
	if n.pending != n.sectionsNeeded() {
		r.Kind = KindKeyChangePartial
		*d = n
		return r, nil
	}
	kc := assembleKeyChange(&n.sections, n.ea.KeySize(), n.id.SGC)
	id := KeyID{KT: kc.KT, SGC: kc.SGC, TI: kc.TI, KRN: kc.KRN}
	if err := id.Validate(); err != nil {
		return Result{}, fmt.Errorf("%w: key change set: %v", ErrFormat, err)
	}
	if kc.RO {
		next, ok := n.base.Next()
		if !ok {
			return Result{}, fmt.Errorf("%w: rollover key change: no base date after %d", ErrUnsupported, int(n.base))
		}
		n.base = next
		n.n, n.minTID, n.tids = 0, 0, [TIDMemory]uint32{}
	}
	copy(n.key[:], kc.NewKey)
	n.id, n.ken = id, kc.KEN
	n.pending, n.sections = 0, [4]uint64{}
	*d = n
	r.Kind = KindKeyChange
	r.NewID, r.NewKEN, r.Rollover, r.NewBase = id, kc.KEN, kc.RO, n.base
	return r, nil
}

// The binary state, version 1, big-endian, 331 bytes:
//
//	off len
//	  0   4  magic "STSD"
//	  4   1  version (1)
//	  5   1  EA (7 or 11)
//	  6  16  decoder key (EA07: 8 bytes then 8 zero bytes)
//	 22   1  KT
//	 23   3  SGC
//	 26   1  TI
//	 27   1  KRN
//	 28   1  KEN
//	 29   2  base date (year)
//	 31   2  accepted credit subclasses (bit mask, 0 = all)
//	 33   4  lowest acceptable TID
//	 37   1  TIDs held (0..64)
//	 38 256  TIDs, 64 x 4 bytes, ascending; unused slots zero
//	294   1  key change sections held (bit i = section i+1)
//	295  32  key change section payloads, 4 x 8 bytes; zero when not held
//	327   4  CRC-32 (IEEE) of bytes 0..326
const (
	stateVersion = 1
	StateSize    = 331
)

var stateMagic = [4]byte{'S', 'T', 'S', 'D'}

// MarshalBinary returns the state in the fixed layout above. The STA
// tables are not part of it.
func (d Decoder) MarshalBinary() ([]byte, error) {
	b := make([]byte, 0, StateSize)
	b = append(b, stateMagic[:]...)
	b = append(b, stateVersion, byte(d.ea))
	b = append(b, d.key[:]...)
	b = append(b, byte(d.id.KT), byte(d.id.SGC>>16), byte(d.id.SGC>>8), byte(d.id.SGC), byte(d.id.TI), byte(d.id.KRN), d.ken)
	b = binary.BigEndian.AppendUint16(b, uint16(d.base))
	b = binary.BigEndian.AppendUint16(b, d.credit)
	b = binary.BigEndian.AppendUint32(b, d.minTID)
	b = append(b, byte(d.n))
	for _, t := range d.tids {
		b = binary.BigEndian.AppendUint32(b, t)
	}
	b = append(b, d.pending)
	for _, s := range d.sections {
		b = binary.BigEndian.AppendUint64(b, s)
	}
	return binary.BigEndian.AppendUint32(b, crc32.ChecksumIEEE(b)), nil
}

// UnmarshalBinary restores a state written by MarshalBinary, checking every
// field; on error d is unchanged. The STA tables already set on d are kept.
func (d *Decoder) UnmarshalBinary(b []byte) error {
	bad := func(what string) error { return fmt.Errorf("%w: decoder state: %s", ErrFormat, what) }
	if len(b) != StateSize {
		return bad(fmt.Sprintf("%d bytes, want %d", len(b), StateSize))
	}
	if [4]byte(b[0:4]) != stateMagic {
		return bad("bad magic")
	}
	if b[4] != stateVersion {
		return bad(fmt.Sprintf("version %d, want %d", b[4], stateVersion))
	}
	if crc32.ChecksumIEEE(b[:327]) != binary.BigEndian.Uint32(b[327:]) {
		return bad("checksum mismatch")
	}
	n := Decoder{tables: d.tables}
	n.ea = EA(b[5])
	if !n.ea.valid() {
		return bad(fmt.Sprintf("ea %d", b[5]))
	}
	copy(n.key[:], b[6:22])
	for _, x := range n.key[n.ea.KeySize():] {
		if x != 0 {
			return bad("64-bit key not zero-padded")
		}
	}
	n.id = KeyID{KT: int(b[22]), SGC: uint32(b[23])<<16 | uint32(b[24])<<8 | uint32(b[25]), TI: int(b[26]), KRN: int(b[27])}
	if err := n.id.Validate(); err != nil {
		return bad(err.Error())
	}
	n.ken = b[28]
	n.base = BaseDate(binary.BigEndian.Uint16(b[29:]))
	if !n.base.Valid() {
		return bad(fmt.Sprintf("base date %d", int(n.base)))
	}
	n.credit = binary.BigEndian.Uint16(b[31:])
	if n.credit>>(SubTimeCurrency+1) != 0 {
		return bad("credit subclasses name reserved subclasses")
	}
	n.minTID = binary.BigEndian.Uint32(b[33:])
	if n.minTID > MaxTID+1 {
		return bad("lowest acceptable tid out of range")
	}
	n.n = int(b[37])
	if n.n > TIDMemory {
		return bad(fmt.Sprintf("%d tids held, at most %d", n.n, TIDMemory))
	}
	for i := range n.tids {
		t := binary.BigEndian.Uint32(b[38+4*i:])
		switch {
		case i >= n.n && t != 0:
			return bad("unused tid slot not zero")
		case i < n.n && (t > MaxTID || t < n.minTID || i > 0 && t <= n.tids[i-1]):
			return bad("tids not ascending within range")
		}
		n.tids[i] = t
	}
	n.pending = b[294]
	if n.pending&^n.sectionsNeeded() != 0 || n.pending == n.sectionsNeeded() {
		return bad(fmt.Sprintf("key change sections held %#x", n.pending))
	}
	for i := range n.sections {
		s := binary.BigEndian.Uint64(b[295+8*i:])
		if s > payloadMask || n.pending>>i&1 == 0 && s != 0 {
			return bad("key change section payload")
		}
		n.sections[i] = s
	}
	*d = n
	return nil
}
