// Package provision replaces the initialisation and production cards of
// older prepaid meters with signed factory provisioning.
//
// Whoever knew an initialisation card's format owned the meter: the card
// carried the keys in the clear, and any card of the right shape was
// obeyed. Here a meter accepts keys only from a provisioning record that
//
//   - is signed with the head-end's management key (Ed25519), checked
//     against the trust anchor the meter's signed firmware carries, or the
//     management key of its previous record;
//   - names this meter: its ID, and the X25519 and Ed25519 public keys the
//     meter generated at the factory station, so a record is useless to any
//     other device;
//   - carries a provisioning counter higher than the one the meter last
//     accepted, so a record is used once and an old one cannot be replayed
//     to roll keys back;
//   - delivers the meter's keys encrypted to its own X25519 key with HPKE
//     (RFC 9180: DHKEM(X25519, HKDF-SHA256), HKDF-SHA256, AES-256-GCM), with
//     every other field of the record as associated data.
//
// The flow: at the factory station the meter makes a Device (two fresh key
// pairs that never leave it) and hands out its Request, self-signed with its
// identity key. The head-end's Service checks the request, derives the
// meter's keys through a function the KMS supplies (the roots never leave
// the KMS), seals them to the device key, and signs the Record with the
// management key. The meter opens it with Device.Open.
//
// Wire formats (docs/provisioning.md) are strict: big endian, fixed field
// order, exact lengths, no trailing bytes, each reserved value rejected.
// This package is pure apart from the randomness HPKE and key generation
// draw; no clock, no globals.
package provision

import (
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"errors"
	"fmt"
)

// Format version of requests, records and device files.
const Version = 1

// Limits of the wire formats.
const (
	MaxModelLen  = 32
	MaxKeys      = 8
	MinKeyLen    = 8 // DES-based STS decoder keys are 8 bytes
	MaxKeyLen    = 32
	x25519Len    = 32
	encLen       = 32 // HPKE enc for DHKEM(X25519)
	gcmTagLen    = 16
	p256PointLen = 65
)

// Errors callers branch on; every error of this package wraps one.
var (
	ErrMalformed   = errors.New("provision: malformed")
	ErrVersion     = errors.New("provision: unsupported format version")
	ErrSignature   = errors.New("provision: bad signature")
	ErrWrongDevice = errors.New("provision: record is for another device")
	ErrReplay      = errors.New("provision: provisioning counter not above the last accepted")
	ErrUnwrap      = errors.New("provision: sealed keys do not open")
	ErrInvalid     = errors.New("provision: invalid input") // refused by the Service
)

// KeyKind names a secret a meter receives.
type KeyKind uint8

const (
	KeyCard       KeyKind = 1 // the meter's card key (meter.Keys.MeterKey); per-card keys derive from it
	KeyTelemetry  KeyKind = 2 // per-meter AES key for telemetry MACs and receipts
	KeyWMBus      KeyKind = 3 // per-meter wireless M-Bus / OMS AES key
	KeySTSDecoder KeyKind = 4 // STS decoder key (DKGA02/04 output)
)

func (k KeyKind) String() string {
	switch k {
	case KeyCard:
		return "card"
	case KeyTelemetry:
		return "telemetry"
	case KeyWMBus:
		return "wmbus"
	case KeySTSDecoder:
		return "sts-decoder"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

func (k KeyKind) valid() bool { return k >= KeyCard && k <= KeySTSDecoder }

// Key is one secret for a meter, with its versions (so a later rotation
// campaign knows who holds what): the version of the KMS root it derives
// from, and the meter's own key version for that purpose (package keys).
type Key struct {
	Kind        KeyKind
	RootVersion uint16 // >= 1
	Version     uint16
	Secret      []byte
}

// Trust is the set of verification public keys a record installs.
type Trust struct {
	Credit     ed25519.PublicKey // credit vouchers
	Management ed25519.PublicKey // engineering vouchers and the next provisioning record
	Firmware   crypto.PublicKey  // firmware images: ed25519.PublicKey or *ecdsa.PublicKey (P-256)
}

// Firmware key types on the wire.
const (
	fwEd25519 = 1
	fwP256    = 2
)

func (t Trust) check() error {
	if len(t.Credit) != ed25519.PublicKeySize {
		return fmt.Errorf("%w: credit key: want an Ed25519 public key", ErrInvalid)
	}
	if len(t.Management) != ed25519.PublicKeySize {
		return fmt.Errorf("%w: management key: want an Ed25519 public key", ErrInvalid)
	}
	if _, _, err := firmwareKeyBytes(t.Firmware); err != nil {
		return err
	}
	return nil
}

func firmwareKeyBytes(k crypto.PublicKey) (byte, []byte, error) {
	switch k := k.(type) {
	case ed25519.PublicKey:
		if len(k) == ed25519.PublicKeySize {
			return fwEd25519, k, nil
		}
	case *ecdsa.PublicKey:
		if k.Curve == elliptic.P256() {
			b, err := k.Bytes()
			if err == nil {
				return fwP256, b, nil
			}
		}
	}
	return 0, nil, fmt.Errorf("%w: firmware key: want Ed25519 or ECDSA P-256, got %T", ErrInvalid, k)
}

// x25519Public parses a device key-agreement public key.
func x25519Public(b []byte) (*ecdh.PublicKey, error) {
	return ecdh.X25519().NewPublicKey(b)
}
