package card

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"sluice/kdf"
)

// The card application: its AID, commands, files and their byte layouts.
// docs/card.md is the reference; the constants here are its source of truth.

// aid is the application identifier, selected with SELECT by DF name. The
// leading F marks a proprietary (unregistered) AID, ISO 7816-4 section 12.2.3.
const aid = "\xF0SLUICE\x01"

// AID returns the application identifier, F0 'SLUICE' 01.
func AID() []byte { return []byte(aid) }

// UIDSize is the length of a card's unique identifier (a 7-byte NXP-style
// UID).
const UIDSize = 7

// UID is a card's unique identifier, fixed at manufacture.
type UID [UIDSize]byte

func (u UID) String() string { return fmt.Sprintf("%X", u[:]) }

// ParseUID decodes a UID from 14 hex digits.
func ParseUID(s string) (UID, error) {
	var u UID
	if len(s) != 2*UIDSize {
		return u, fmt.Errorf("card: UID %q: want %d hex digits", s, 2*UIDSize)
	}
	b, err := hex.DecodeString(s)
	if err != nil {
		return u, fmt.Errorf("card: UID %q: %w", s, err)
	}
	copy(u[:], b)
	return u, nil
}

// Diversification system identifiers (the tail of AN10922's M): one per key
// purpose, so a transport key and a card key of the same card never
// coincide even under the same root.
const (
	systemCard      = "sluice/card"
	systemTransport = "sluice/transport"
)

// CardKey returns the AES-128 key of the card with this UID, diversified
// from its meter's card key with AN10922: M = UID || AID || "sluice/card".
// The meter and the vending office (through the KMS) can compute it; nothing
// else needs to.
func CardKey(meterCardKey []byte, uid UID) ([]byte, error) {
	return diversify(meterCardKey, uid, systemCard)
}

// TransportKey returns the key a blank card leaves the factory with,
// diversified from the manufacturer's batch key the same way. It opens only
// Personalize, once.
func TransportKey(batchKey []byte, uid UID) ([]byte, error) {
	return diversify(batchKey, uid, systemTransport)
}

func diversify(root []byte, uid UID, system string) ([]byte, error) {
	m := make([]byte, 0, 31)
	m = append(m, uid[:]...)
	m = append(m, aid...)
	m = append(m, system...)
	k, err := kdf.DiversifyAN10922(root, m)
	if err != nil {
		return nil, fmt.Errorf("card: diversify key for %v: %w", uid, err)
	}
	return k, nil
}

// Command classes and instructions.
const (
	claISO    = 0x00
	claNative = 0x90 // native EV2-style command wrapped in ISO 7816-4

	insSelect        = 0xA4
	insGetIdentity   = 0x60
	insAuthenticate  = 0x71 // AuthenticateEV2First
	insAdditional    = 0xAF // second pass of the authentication
	insReadData      = 0xBD
	insPersonalize   = 0xC0
	insLoadVoucher   = 0xC1
	insWriteReceipt  = 0xC2
	insWriteFeedback = 0xC3
	insChangeKey     = 0xC4
)

// Files readable with ReadData.
const (
	FileIdentity = 0x01
	FileBinding  = 0x02
	FileVouchers = 0x03
	FileReceipts = 0x04
	FileFeedback = 0x05
)

// Lifecycle is a card's life-cycle state.
type Lifecycle uint8

const (
	Blank        Lifecycle = 0 // from the factory: transport key, no meter
	Personalized Lifecycle = 1 // bound to one meter for life
)

func (l Lifecycle) String() string {
	switch l {
	case Blank:
		return "blank"
	case Personalized:
		return "personalized"
	}
	return fmt.Sprintf("lifecycle(%d)", uint8(l))
}

// Kind is what a card is for. A customer card carries credit vouchers; an
// engineering card carries engineering vouchers (clear tamper, set a
// parameter, change a key). Both are bound to one meter: there is no
// universal card.
type Kind uint8

const (
	KindCustomer    Kind = 1
	KindEngineering Kind = 2
)

func (k Kind) String() string {
	switch k {
	case KindCustomer:
		return "customer"
	case KindEngineering:
		return "engineering"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

func (k Kind) valid() bool { return k == KindCustomer || k == KindEngineering }

// ParseKind reads "customer" or "engineering".
func ParseKind(s string) (Kind, error) {
	switch s {
	case "customer":
		return KindCustomer, nil
	case "engineering":
		return KindEngineering, nil
	}
	return 0, fmt.Errorf("card: kind %q: want customer or engineering", s)
}

// Identity is what any reader may learn from a card without a key (GET
// IDENTITY): enough to choose the key, nothing more. Its encoding is the
// identity file (14 bytes) followed by the binding file (9 bytes):
//
//	version(1)=1 lifecycle(1) UID(7) kind(1) issued(4, Unix seconds, BE)
//	meterID(8, BE) keyVersion(1)
type Identity struct {
	Lifecycle  Lifecycle
	UID        UID
	Kind       Kind      // zero while blank
	Issued     time.Time // zero while blank
	MeterID    uint64    // the one meter this card opens; zero while blank
	KeyVersion uint8     // version of the meter card key the card key came from
}

const (
	identityVersion = 1
	identitySize    = 14
	bindingSize     = 9
)

func (id Identity) identityFile() []byte {
	b := make([]byte, 0, identitySize)
	b = append(b, identityVersion, byte(id.Lifecycle))
	b = append(b, id.UID[:]...)
	b = append(b, byte(id.Kind))
	return binary.BigEndian.AppendUint32(b, unix32(id.Issued))
}

func (id Identity) bindingFile() []byte {
	b := binary.BigEndian.AppendUint64(make([]byte, 0, bindingSize), id.MeterID)
	return append(b, id.KeyVersion)
}

func unix32(t time.Time) uint32 {
	if t.IsZero() || t.Unix() < 0 {
		return 0
	}
	return uint32(t.Unix())
}

func time32(s uint32) time.Time {
	if s == 0 {
		return time.Time{}
	}
	return time.Unix(int64(s), 0).UTC()
}

func parseIdentity(b []byte) (Identity, error) {
	if len(b) != identitySize+bindingSize {
		return Identity{}, fmt.Errorf("%w: identity of %d bytes, want %d", ErrFormat, len(b), identitySize+bindingSize)
	}
	if b[0] != identityVersion {
		return Identity{}, fmt.Errorf("%w: identity version %d", ErrFormat, b[0])
	}
	id := Identity{Lifecycle: Lifecycle(b[1]), Kind: Kind(b[9]), Issued: time32(binary.BigEndian.Uint32(b[10:14]))}
	copy(id.UID[:], b[2:9])
	id.MeterID = binary.BigEndian.Uint64(b[14:22])
	id.KeyVersion = b[22]
	return id, nil
}

// ErrFormat reports card data (a file, a record) that does not decode.
var ErrFormat = errors.New("card: bad data format")

// Personalization is what the vending office writes once into a blank card.
//
//	key(16) keyVersion(1) kind(1) meterID(8, BE) issued(4, Unix seconds, BE)
type Personalization struct {
	Key        []byte // the card key: CardKey(meter card key, UID)
	KeyVersion uint8
	Kind       Kind
	MeterID    uint64
	Issued     time.Time
}

const personalizationSize = KeySize + 1 + 1 + 8 + 4

func (p Personalization) marshal() ([]byte, error) {
	if len(p.Key) != KeySize {
		return nil, fmt.Errorf("card: personalization key of %d bytes, want %d", len(p.Key), KeySize)
	}
	if !p.Kind.valid() {
		return nil, fmt.Errorf("card: personalization kind %v", p.Kind)
	}
	if p.MeterID == 0 {
		return nil, errors.New("card: personalization meter ID is zero")
	}
	b := append(make([]byte, 0, personalizationSize), p.Key...)
	b = append(b, p.KeyVersion, byte(p.Kind))
	b = binary.BigEndian.AppendUint64(b, p.MeterID)
	return binary.BigEndian.AppendUint32(b, unix32(p.Issued)), nil
}

func parsePersonalization(b []byte) (Personalization, error) {
	if len(b) != personalizationSize {
		return Personalization{}, fmt.Errorf("%w: personalization of %d bytes, want %d", ErrFormat, len(b), personalizationSize)
	}
	p := Personalization{
		Key:        clone(b[:16]),
		KeyVersion: b[16],
		Kind:       Kind(b[17]),
		MeterID:    binary.BigEndian.Uint64(b[18:26]),
		Issued:     time32(binary.BigEndian.Uint32(b[26:30])),
	}
	if !p.Kind.valid() {
		return Personalization{}, fmt.Errorf("%w: personalization kind %d", ErrFormat, b[17])
	}
	if p.MeterID == 0 {
		return Personalization{}, fmt.Errorf("%w: personalization meter ID is zero", ErrFormat)
	}
	return p, nil
}

// Slots is the number of voucher slots on a card.
const Slots = 8

// MaxVoucherSize bounds the opaque voucher bytes a slot holds.
const MaxVoucherSize = 255

// SlotState is the state of a voucher slot. A slot only moves forward:
// Empty -> Pending (LoadVoucher) -> Consumed (WriteReceipt) -> Pending again
// when the office reuses it.
type SlotState uint8

const (
	SlotEmpty    SlotState = 0
	SlotPending  SlotState = 1 // waiting for the meter
	SlotConsumed SlotState = 2 // the meter wrote its receipt
)

func (s SlotState) String() string {
	switch s {
	case SlotEmpty:
		return "empty"
	case SlotPending:
		return "pending"
	case SlotConsumed:
		return "consumed"
	}
	return fmt.Sprintf("slot-state(%d)", uint8(s))
}

// Slot is one voucher slot. Its encoding in the vouchers file is
//
//	index(1) state(1) meterID(8) sequence(4) length(1) voucher(length)
//
// and the file is count(1) followed by count slots (empty slots omitted).
type Slot struct {
	Index    int
	State    SlotState
	MeterID  uint64 // read from the voucher when it was loaded
	Sequence uint32 // read from the voucher when it was loaded
	Voucher  []byte // opaque signed voucher (package voucher)
}

func (s Slot) marshal(b []byte) []byte {
	b = append(b, byte(s.Index), byte(s.State))
	b = binary.BigEndian.AppendUint64(b, s.MeterID)
	b = binary.BigEndian.AppendUint32(b, s.Sequence)
	b = append(b, byte(len(s.Voucher)))
	return append(b, s.Voucher...)
}

func parseSlots(b []byte) ([]Slot, error) {
	if len(b) < 1 {
		return nil, fmt.Errorf("%w: empty vouchers file", ErrFormat)
	}
	n := int(b[0])
	if n > Slots {
		return nil, fmt.Errorf("%w: %d slots, at most %d", ErrFormat, n, Slots)
	}
	b = b[1:]
	slots := make([]Slot, 0, n)
	for i := 0; i < n; i++ {
		if len(b) < 15 || len(b) < 15+int(b[14]) {
			return nil, fmt.Errorf("%w: slot record %d truncated", ErrFormat, i)
		}
		s := Slot{
			Index:    int(b[0]),
			State:    SlotState(b[1]),
			MeterID:  binary.BigEndian.Uint64(b[2:10]),
			Sequence: binary.BigEndian.Uint32(b[10:14]),
			Voucher:  clone(b[15 : 15+int(b[14])]),
		}
		if s.Index >= Slots || s.State > SlotConsumed {
			return nil, fmt.Errorf("%w: slot record %d: index %d state %d", ErrFormat, i, s.Index, s.State)
		}
		slots = append(slots, s)
		b = b[15+len(s.Voucher):]
	}
	if len(b) != 0 {
		return nil, fmt.Errorf("%w: %d bytes after the last slot", ErrFormat, len(b))
	}
	return slots, nil
}

// ReceiptStatus is the meter's verdict on a voucher.
type ReceiptStatus uint8

const (
	// Loaded: the meter verified the voucher and committed its credit (or
	// carried out its engineering action) in its journal.
	Loaded ReceiptStatus = 1
	// AlreadyLoaded: the meter's sequence memory already holds this
	// voucher, typically because the card was pulled after the meter
	// committed it but before the receipt reached the card. Nothing added.
	AlreadyLoaded ReceiptStatus = 2
	// Rejected: the voucher failed verification (signature, meter, expiry,
	// format). Nothing added; the voucher leaves the card's pending set so
	// it cannot block the slots.
	Rejected ReceiptStatus = 3
)

func (s ReceiptStatus) String() string {
	switch s {
	case Loaded:
		return "loaded"
	case AlreadyLoaded:
		return "already-loaded"
	case Rejected:
		return "rejected"
	}
	return fmt.Sprintf("receipt-status(%d)", uint8(s))
}

// Receipt is what a meter writes back for one voucher. Encoding (26 to 90
// bytes), all big-endian:
//
//	sequence(4) status(1) amount(8, signed) balance(8, signed) at(4, Unix seconds)
//	length(1) data(length <= 64)
//
// Amount and balance are in the meter's credit unit. Data is the meter's
// own receipt, opaque to the card (the reference meter puts its receipt
// MACed under its telemetry key there, so the vending office can check
// that a meter, not a card holder, wrote "loaded").
type Receipt struct {
	Sequence uint32
	Status   ReceiptStatus
	Amount   int64     // credit added by this voucher (0 unless Loaded)
	Balance  int64     // the meter's credit after it
	At       time.Time // meter clock, whole seconds
	Data     []byte    // the meter's own receipt, at most MaxReceiptData bytes
}

// MaxReceiptData bounds Receipt.Data.
const MaxReceiptData = 64

const receiptFixed = 4 + 1 + 8 + 8 + 4 + 1

// MaxReceipts is how many receipts the card keeps, newest last; older ones
// are overwritten (the meter also reports every load by telemetry).
const MaxReceipts = 8

func (r Receipt) marshal(b []byte) []byte {
	b = binary.BigEndian.AppendUint32(b, r.Sequence)
	b = append(b, byte(r.Status))
	b = binary.BigEndian.AppendUint64(b, uint64(r.Amount))
	b = binary.BigEndian.AppendUint64(b, uint64(r.Balance))
	b = binary.BigEndian.AppendUint32(b, unix32(r.At))
	b = append(b, byte(len(r.Data)))
	return append(b, r.Data...)
}

func (r Receipt) check() error {
	if r.Status < Loaded || r.Status > Rejected {
		return fmt.Errorf("receipt status %d", r.Status)
	}
	if r.Status != Loaded && r.Amount != 0 {
		return fmt.Errorf("%v receipt with amount %d", r.Status, r.Amount)
	}
	if len(r.Data) > MaxReceiptData {
		return fmt.Errorf("receipt data of %d bytes, at most %d", len(r.Data), MaxReceiptData)
	}
	return nil
}

// parseReceipt decodes one receipt from the front of b and returns the rest.
func parseReceipt(b []byte) (Receipt, []byte, error) {
	if len(b) < receiptFixed || len(b) < receiptFixed+int(b[receiptFixed-1]) {
		return Receipt{}, nil, fmt.Errorf("%w: receipt truncated", ErrFormat)
	}
	n := receiptFixed + int(b[receiptFixed-1])
	r := Receipt{
		Sequence: binary.BigEndian.Uint32(b[0:4]),
		Status:   ReceiptStatus(b[4]),
		Amount:   int64(binary.BigEndian.Uint64(b[5:13])),
		Balance:  int64(binary.BigEndian.Uint64(b[13:21])),
		At:       time32(binary.BigEndian.Uint32(b[21:25])),
		Data:     clone(b[receiptFixed:n]),
	}
	if err := r.check(); err != nil {
		return Receipt{}, nil, fmt.Errorf("%w: %w", ErrFormat, err)
	}
	return r, b[n:], nil
}

func parseReceipts(b []byte) ([]Receipt, error) {
	if len(b) < 1 || int(b[0]) > MaxReceipts {
		return nil, fmt.Errorf("%w: receipts file of %d bytes", ErrFormat, len(b))
	}
	n := int(b[0])
	rs := make([]Receipt, 0, n)
	b = b[1:]
	for i := 0; i < n; i++ {
		r, rest, err := parseReceipt(b)
		if err != nil {
			return nil, fmt.Errorf("receipt %d: %w", i, err)
		}
		rs = append(rs, r)
		b = rest
	}
	if len(b) != 0 {
		return nil, fmt.Errorf("%w: %d bytes after the last receipt", ErrFormat, len(b))
	}
	return rs, nil
}

// Feedback is what the meter leaves on the card for the vending office at
// every insertion: its consumption and tamper state. Encoding (28 bytes):
//
//	at(4) totalLitres(8) balance(8, signed) tamper(4) status(4)
//
// all big-endian. Tamper and status are the meter's own bit sets.
type Feedback struct {
	At          time.Time
	TotalLitres uint64
	Balance     int64
	Tamper      uint32
	Status      uint32
}

const feedbackSize = 4 + 8 + 8 + 4 + 4

func (f Feedback) marshal() []byte {
	b := binary.BigEndian.AppendUint32(make([]byte, 0, feedbackSize), unix32(f.At))
	b = binary.BigEndian.AppendUint64(b, f.TotalLitres)
	b = binary.BigEndian.AppendUint64(b, uint64(f.Balance))
	b = binary.BigEndian.AppendUint32(b, f.Tamper)
	return binary.BigEndian.AppendUint32(b, f.Status)
}

func parseFeedback(b []byte) (Feedback, error) {
	if len(b) != feedbackSize {
		return Feedback{}, fmt.Errorf("%w: feedback of %d bytes, want %d", ErrFormat, len(b), feedbackSize)
	}
	return Feedback{
		At:          time32(binary.BigEndian.Uint32(b[0:4])),
		TotalLitres: binary.BigEndian.Uint64(b[4:12]),
		Balance:     int64(binary.BigEndian.Uint64(b[12:20])),
		Tamper:      binary.BigEndian.Uint32(b[20:24]),
		Status:      binary.BigEndian.Uint32(b[24:28]),
	}, nil
}
