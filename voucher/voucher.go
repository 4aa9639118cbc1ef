// Package voucher is Sluice's native credit voucher: a compact, versioned,
// Ed25519-signed binary message that adds credit to one meter or orders one
// engineering action on it.
//
// The design answers the two weaknesses of STS keypad tokens. A token is
// checked by a 16-bit CRC under a symmetric key the meter holds, so a dumped
// meter (or a lucky guess) mints credit; a voucher is checked by a signature
// the meter verifies with a public key, so a dumped meter can verify but
// never sign. The private keys stay in the head-end's KMS: credit vouchers
// are signed by the credit-signing key, engineering vouchers by the
// management-signing key, and a meter accepts each kind only under a key it
// trusts for that role, so a stolen vending point that can mint credit still
// cannot clear a tamper flag or change a key.
//
// Each voucher names one meter and carries a sequence number that strictly
// increases per meter; the meter remembers the highest it accepted and
// refuses anything not above it (CheckSequence), so a voucher is spent once
// and copying it to another meter gains nothing. The expiry bounds how long a
// printed or card-held voucher stays spendable.
//
// The parser is strict: exact length for the kind, known version and kind
// only, no trailing bytes, every reserved value rejected, so one voucher has
// exactly one encoding. The wire format is in docs/voucher.md. This package
// is pure: no I/O, no clock (callers pass the time), no global state.
package voucher

import (
	"crypto"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"
)

// Version is the only wire version this package reads and writes.
const Version = 1

// Sentinel errors a meter branches on. Errors returned by this package wrap
// one of them with the field or reason.
var (
	ErrMalformed   = errors.New("voucher: malformed")
	ErrVersion     = errors.New("voucher: unsupported version")
	ErrSignature   = errors.New("voucher: bad signature")
	ErrUnknownKey  = errors.New("voucher: signing key not trusted")
	ErrWrongRole   = errors.New("voucher: signing key not trusted for this kind")
	ErrWrongMeter  = errors.New("voucher: issued for another meter")
	ErrExpired     = errors.New("voucher: expired")
	ErrReplay      = errors.New("voucher: sequence number already used")
	ErrInvalid     = errors.New("voucher: invalid fields") // refused by Sign
	ErrSignerType  = errors.New("voucher: signer is not Ed25519")
	errUnreachable = errors.New("voucher: internal error")
)

// Kind says what a voucher does. Credit is the only kind a credit-signing
// key may sign; the others are engineering actions for the management key.
type Kind uint8

const (
	KindCredit       Kind = 0x01 // add Quantity of Unit to the meter's credit
	KindClearTamper  Kind = 0x10 // clear the tamper flags in TamperMask
	KindSetParameter Kind = 0x11 // set meter parameter Param to Value
	KindKeyChange    Kind = 0x12 // trust NewKey for role Slot, retire key Retire
)

// Engineering reports whether k is an engineering action, signed by the
// management key rather than the credit key.
func (k Kind) Engineering() bool { return k != KindCredit }

func (k Kind) String() string {
	switch k {
	case KindCredit:
		return "credit"
	case KindClearTamper:
		return "clear-tamper"
	case KindSetParameter:
		return "set-parameter"
	case KindKeyChange:
		return "key-change"
	}
	return fmt.Sprintf("kind(0x%02x)", uint8(k))
}

// payloadLen is the exact payload length of each known kind.
func payloadLen(k Kind) (int, bool) {
	switch k {
	case KindCredit:
		return 5, true
	case KindClearTamper:
		return 4, true
	case KindSetParameter:
		return 6, true
	case KindKeyChange:
		return 41, true
	}
	return 0, false
}

// Unit is the unit of a credit quantity.
type Unit uint8

const (
	UnitLitres Unit = 0x01 // whole litres of water
	UnitMinor  Unit = 0x02 // minor units (cents) of the meter's currency
)

func (u Unit) String() string {
	switch u {
	case UnitLitres:
		return "L"
	case UnitMinor:
		return "minor units"
	}
	return fmt.Sprintf("unit(0x%02x)", uint8(u))
}

// Role is what a meter trusts a public key for.
type Role uint8

const (
	RoleCredit     Role = 0x01 // credit vouchers
	RoleManagement Role = 0x02 // engineering vouchers (and provisioning records)
)

func (r Role) String() string {
	switch r {
	case RoleCredit:
		return "credit"
	case RoleManagement:
		return "management"
	}
	return fmt.Sprintf("role(0x%02x)", uint8(r))
}

func (r Role) valid() bool { return r == RoleCredit || r == RoleManagement }

// Layout sizes, in bytes.
const (
	HeaderSize    = 26                      // version .. expiry
	SignatureSize = ed25519.SignatureSize   // 64
	MinSize       = HeaderSize + 4 + 64     // the shortest kind (clear tamper)
	MaxSize       = HeaderSize + 41 + 64    // the longest kind (key change)
	CreditSize    = HeaderSize + 5 + 64     // a credit voucher: 95 bytes
	maxUnix       = math.MaxUint32          // times are 32-bit Unix seconds
	signPrefix    = "sluice/voucher/v1\x00" // domain separation, see SignedMessage
)

// Voucher is a decoded voucher. Fields that do not belong to Kind are zero.
type Voucher struct {
	Kind     Kind
	MeterID  uint64    // the one meter this voucher is for; never 0
	Sequence uint32    // strictly increasing per meter; never 0
	KeyID    uint32    // KeyID of the signing public key; set by Sign
	Issued   time.Time // whole seconds, UTC
	Expires  time.Time // the voucher is refused from this instant on

	// KindCredit
	Unit     Unit
	Quantity uint32 // > 0

	// KindClearTamper
	TamperMask uint32 // flags to clear; != 0

	// KindSetParameter
	Param uint16
	Value uint32

	// KindKeyChange
	Slot   Role              // role the new key is trusted for
	NewKey ed25519.PublicKey // 32 bytes
	Retire uint32            // KeyID to stop trusting, 0 for none

	raw []byte // the encoding this voucher was parsed from or signed as
}

// KeyID returns the identifier vouchers carry for an Ed25519 public key: the
// first four bytes of its SHA-256, big-endian. It only selects which trusted
// key to try; the signature is what authenticates.
func KeyID(pub ed25519.PublicKey) uint32 {
	h := sha256.Sum256(pub)
	return binary.BigEndian.Uint32(h[:4])
}

// Bytes returns the voucher's encoding, signature included, for a voucher
// returned by Sign or Parse, and nil for one built by hand.
func (v *Voucher) Bytes() []byte {
	if v.raw == nil {
		return nil
	}
	return append([]byte(nil), v.raw...)
}

// check validates the fields against the format, naming the first bad one.
// The same rules serve Sign (wrapping ErrInvalid) and Parse (ErrMalformed).
func (v *Voucher) check() error {
	if _, ok := payloadLen(v.Kind); !ok {
		return fmt.Errorf("kind 0x%02x unknown", uint8(v.Kind))
	}
	if v.MeterID == 0 {
		return errors.New("meter ID is 0")
	}
	if v.Sequence == 0 {
		return errors.New("sequence number is 0")
	}
	is, ex := v.Issued.Unix(), v.Expires.Unix()
	if is < 0 || is > maxUnix || ex < 0 || ex > maxUnix {
		return errors.New("issue or expiry time outside 1970..2106")
	}
	if ex <= is {
		return errors.New("expiry not after issue time")
	}
	zero := func(ok bool, what string) error {
		if !ok {
			return fmt.Errorf("%s set on a %v voucher", what, v.Kind)
		}
		return nil
	}
	credit := v.Unit == 0 && v.Quantity == 0
	tamper := v.TamperMask == 0
	param := v.Param == 0 && v.Value == 0
	key := v.Slot == 0 && v.NewKey == nil && v.Retire == 0
	switch v.Kind {
	case KindCredit:
		if v.Unit != UnitLitres && v.Unit != UnitMinor {
			return fmt.Errorf("unit 0x%02x unknown", uint8(v.Unit))
		}
		if v.Quantity == 0 {
			return errors.New("quantity is 0")
		}
		return errors.Join(zero(tamper, "tamper mask"), zero(param, "parameter"), zero(key, "key change"))
	case KindClearTamper:
		if v.TamperMask == 0 {
			return errors.New("tamper mask is 0")
		}
		return errors.Join(zero(credit, "credit"), zero(param, "parameter"), zero(key, "key change"))
	case KindSetParameter:
		return errors.Join(zero(credit, "credit"), zero(tamper, "tamper mask"), zero(key, "key change"))
	case KindKeyChange:
		if !v.Slot.valid() {
			return fmt.Errorf("key slot 0x%02x unknown", uint8(v.Slot))
		}
		if len(v.NewKey) != ed25519.PublicKeySize {
			return fmt.Errorf("new key is %d bytes, want %d", len(v.NewKey), ed25519.PublicKeySize)
		}
		if v.Retire == KeyID(v.NewKey) {
			return errors.New("key change retires the key it installs")
		}
		return errors.Join(zero(credit, "credit"), zero(tamper, "tamper mask"), zero(param, "parameter"))
	}
	return errUnreachable
}

// body encodes everything but the signature. check must have passed.
func (v *Voucher) body() []byte {
	n, _ := payloadLen(v.Kind)
	b := make([]byte, 0, HeaderSize+n+SignatureSize)
	b = append(b, Version, byte(v.Kind))
	b = binary.BigEndian.AppendUint64(b, v.MeterID)
	b = binary.BigEndian.AppendUint32(b, v.Sequence)
	b = binary.BigEndian.AppendUint32(b, v.KeyID)
	b = binary.BigEndian.AppendUint32(b, uint32(v.Issued.Unix()))
	b = binary.BigEndian.AppendUint32(b, uint32(v.Expires.Unix()))
	switch v.Kind {
	case KindCredit:
		b = append(b, byte(v.Unit))
		b = binary.BigEndian.AppendUint32(b, v.Quantity)
	case KindClearTamper:
		b = binary.BigEndian.AppendUint32(b, v.TamperMask)
	case KindSetParameter:
		b = binary.BigEndian.AppendUint16(b, v.Param)
		b = binary.BigEndian.AppendUint32(b, v.Value)
	case KindKeyChange:
		b = append(b, byte(v.Slot))
		b = binary.BigEndian.AppendUint32(b, KeyID(v.NewKey))
		b = append(b, v.NewKey...)
		b = binary.BigEndian.AppendUint32(b, v.Retire)
	}
	return b
}

// SignedMessage returns what the Ed25519 signature covers: a fixed
// domain-separation prefix followed by the encoded voucher up to the
// signature. The prefix keeps a signature over a voucher from being valid
// for any other message the same key signs (the management key also signs
// provisioning records).
func SignedMessage(body []byte) []byte {
	return append([]byte(signPrefix), body...)
}

// Sign encodes v, signs it with s (an Ed25519 key, in memory or in the KMS)
// and returns the voucher's bytes. It sets v.KeyID from the signer's public
// key. Times are truncated to whole seconds.
func Sign(v *Voucher, s crypto.Signer) ([]byte, error) {
	pub, ok := s.Public().(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("%w: %T", ErrSignerType, s.Public())
	}
	v.KeyID = KeyID(pub)
	v.Issued = v.Issued.Truncate(time.Second).UTC()
	v.Expires = v.Expires.Truncate(time.Second).UTC()
	if err := v.check(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	body := v.body()
	sig, err := s.Sign(nil, SignedMessage(body), crypto.Hash(0))
	if err != nil {
		return nil, fmt.Errorf("voucher: signing: %w", err)
	}
	if len(sig) != SignatureSize {
		return nil, fmt.Errorf("voucher: signer returned %d bytes, want %d", len(sig), SignatureSize)
	}
	// Never hand out a voucher the meters would refuse (a faulty HSM or a
	// signer with the wrong key would otherwise go unnoticed until a
	// customer stands at a meter).
	if !ed25519.Verify(pub, SignedMessage(body), sig) {
		return nil, fmt.Errorf("%w: signer produced an invalid signature", ErrSignature)
	}
	v.raw = append(body, sig...)
	return v.Bytes(), nil
}

// Parse decodes a voucher without checking its signature: call Verify, or
// use Open, before acting on it. It accepts exactly the encodings Sign
// produces.
func Parse(b []byte) (*Voucher, error) {
	if len(b) < 2 {
		return nil, fmt.Errorf("%w: %d bytes, shorter than any voucher", ErrMalformed, len(b))
	}
	if b[0] != Version {
		return nil, fmt.Errorf("%w: version %d", ErrVersion, b[0])
	}
	k := Kind(b[1])
	n, ok := payloadLen(k)
	if !ok {
		return nil, fmt.Errorf("%w: kind 0x%02x unknown", ErrMalformed, b[1])
	}
	if want := HeaderSize + n + SignatureSize; len(b) != want {
		return nil, fmt.Errorf("%w: %v voucher is %d bytes, want %d", ErrMalformed, k, len(b), want)
	}
	v := &Voucher{
		Kind:     k,
		MeterID:  binary.BigEndian.Uint64(b[2:]),
		Sequence: binary.BigEndian.Uint32(b[10:]),
		KeyID:    binary.BigEndian.Uint32(b[14:]),
		Issued:   time.Unix(int64(binary.BigEndian.Uint32(b[18:])), 0).UTC(),
		Expires:  time.Unix(int64(binary.BigEndian.Uint32(b[22:])), 0).UTC(),
	}
	p := b[HeaderSize : HeaderSize+n]
	switch k {
	case KindCredit:
		v.Unit = Unit(p[0])
		v.Quantity = binary.BigEndian.Uint32(p[1:])
	case KindClearTamper:
		v.TamperMask = binary.BigEndian.Uint32(p)
	case KindSetParameter:
		v.Param = binary.BigEndian.Uint16(p)
		v.Value = binary.BigEndian.Uint32(p[2:])
	case KindKeyChange:
		v.Slot = Role(p[0])
		v.NewKey = ed25519.PublicKey(append([]byte(nil), p[5:37]...))
		v.Retire = binary.BigEndian.Uint32(p[37:])
		if id := binary.BigEndian.Uint32(p[1:]); id != KeyID(v.NewKey) {
			return nil, fmt.Errorf("%w: new key ID %08x does not match the key (%08x)", ErrMalformed, id, KeyID(v.NewKey))
		}
	}
	if err := v.check(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	v.raw = append([]byte(nil), b...)
	return v, nil
}

// Verify checks the signature of a parsed voucher against pub, which must
// be the key the voucher names. It does not check the meter, the expiry,
// the sequence or the signer's role: Open does all of that.
func (v *Voucher) Verify(pub ed25519.PublicKey) error {
	if v.raw == nil {
		return fmt.Errorf("%w: voucher was not parsed or signed", ErrSignature)
	}
	if len(pub) != ed25519.PublicKeySize {
		return fmt.Errorf("%w: public key is %d bytes", ErrSignature, len(pub))
	}
	if id := KeyID(pub); id != v.KeyID {
		return fmt.Errorf("%w: voucher names key %08x, given key %08x", ErrSignature, v.KeyID, id)
	}
	body, sig := v.raw[:len(v.raw)-SignatureSize], v.raw[len(v.raw)-SignatureSize:]
	if !ed25519.Verify(pub, SignedMessage(body), sig) {
		return ErrSignature
	}
	return nil
}

// CheckSequence returns ErrReplay unless the voucher's sequence number is
// above last, the highest the meter has accepted. The meter persists last.
func (v *Voucher) CheckSequence(last uint32) error {
	if v.Sequence <= last {
		return fmt.Errorf("%w: sequence %d, meter is at %d", ErrReplay, v.Sequence, last)
	}
	return nil
}

// TrustedKey is a public key a meter trusts for one role.
type TrustedKey struct {
	Role   Role
	Public ed25519.PublicKey
}

// Keyring is the set of public keys a meter trusts. During a rotation it
// holds the old and the new key of a role side by side.
type Keyring []TrustedKey

// lookup returns the keys with the given ID (a 32-bit ID can collide, so
// every match is tried).
func (r Keyring) lookup(id uint32) []TrustedKey {
	var ks []TrustedKey
	for _, k := range r {
		if KeyID(k.Public) == id {
			ks = append(ks, k)
		}
	}
	return ks
}

// verify checks v's signature under a key of the ring with v's key ID
// trusted for role want.
func (r Keyring) verify(v *Voucher, want Role) error {
	keys := r.lookup(v.KeyID)
	if len(keys) == 0 {
		return fmt.Errorf("%w: key %08x", ErrUnknownKey, v.KeyID)
	}
	roleSeen := false
	for _, k := range keys {
		if k.Role != want {
			continue
		}
		roleSeen = true
		if v.Verify(k.Public) == nil {
			return nil
		}
	}
	if !roleSeen {
		return fmt.Errorf("%w: %v voucher signed by a key trusted for another role", ErrWrongRole, v.Kind)
	}
	return ErrSignature
}

// Open is what a meter does with a voucher: parse it strictly, find the
// signing key in its keyring, check the key is trusted for the voucher's
// kind, verify the signature, then check the meter ID and that now is
// before the expiry. It does not check the sequence number, which needs the
// meter's memory: call CheckSequence next, then commit the new sequence with
// the credit in one journaled step.
func Open(b []byte, ring Keyring, meterID uint64, now time.Time) (*Voucher, error) {
	v, err := Parse(b)
	if err != nil {
		return nil, err
	}
	want := RoleCredit
	if v.Kind.Engineering() {
		want = RoleManagement
	}
	if err := ring.verify(v, want); err != nil {
		return nil, err
	}
	if v.MeterID != meterID {
		return nil, fmt.Errorf("%w: voucher for meter %d, this is meter %d", ErrWrongMeter, v.MeterID, meterID)
	}
	if !now.Before(v.Expires) {
		return nil, fmt.Errorf("%w: at %s", ErrExpired, v.Expires.Format(time.RFC3339))
	}
	return v, nil
}
