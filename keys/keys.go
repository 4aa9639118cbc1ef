// Package keys is Sluice's key hierarchy: the names and kinds of the keys
// the KMS holds, and the derivation of the keys each field device holds from
// them. docs/keys.md is the full picture; this package is its executable
// form.
//
// The rule it enforces is that no secret is shared by two field devices.
// Every symmetric key a meter holds is derived for that meter alone from the
// meter root, with NIST SP 800-108 (package kdf) computed through the KMS,
// so with the HSM backend the root never leaves the token:
//
//	Label   = "sluice/meter/" || purpose (ASCII) || key version (2 bytes, big-endian)
//	Context = meter ID (8 bytes, big-endian)
//	L       = 128 bits
//
// Cards get keys one step further down, diversified from their meter's card
// key with NXP AN10922 (package card: M = UID || AID || "sluice/card"), so a
// card opens its own meter and no other, and a meter can compute the key of
// any card presented to it without holding a root.
//
// Credit and engineering are signed, not MACed: meters hold only the public
// halves of the credit-signing and management-signing keys (TrustedKeys), so
// a dumped meter can verify but never mint.
package keys

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"encoding/binary"
	"errors"
	"fmt"

	"sluice/kms"
	"sluice/voucher"
)

// Names of the hierarchy's keys in the KMS.
const (
	MeterRoot         = "meter-root"         // AES-256: every meter's symmetric keys derive from it
	CreditSigning     = "credit-signing"     // Ed25519: signs credit vouchers
	ManagementSigning = "management-signing" // Ed25519: engineering vouchers, provisioning records; dual control
	FirmwareSigning   = "firmware-signing"   // Ed25519 or ECDSA P-256: firmware images; offline in practice
)

// Spec describes one key of the standard hierarchy.
type Spec struct {
	Name string
	Kind kms.Kind
	Use  string
}

// Standard returns the keys `sluice keys init` creates. The firmware key is
// Ed25519 unless firmware names another kind (ECDSA P-256 for meters whose
// boot ROM verifies only that).
func Standard(firmware kms.Kind) []Spec {
	if firmware == "" {
		firmware = kms.Ed25519
	}
	return []Spec{
		{MeterRoot, kms.AES256, "root of every per-meter key (card, telemetry, wM-Bus)"},
		{CreditSigning, kms.Ed25519, "signs credit vouchers; meters hold the public key"},
		{ManagementSigning, kms.Ed25519, "signs engineering vouchers and provisioning records (dual control)"},
		{FirmwareSigning, firmware, "signs firmware images; meters hold the public key"},
	}
}

// Init creates every key of the standard hierarchy that does not exist yet,
// and returns the ones it created. Existing keys are left alone, so Init can
// be run again after an interrupted ceremony; an existing key of the wrong
// kind is an error.
func Init(ctx context.Context, km kms.KeyManager, firmware kms.Kind) ([]kms.KeyInfo, error) {
	var created []kms.KeyInfo
	for _, s := range Standard(firmware) {
		if !s.Kind.Valid() || !(s.Kind == kms.AES256 || s.Kind.Signing()) {
			return created, fmt.Errorf("keys: %w: %s cannot be a %s key", kms.ErrInvalid, s.Name, s.Kind)
		}
		info, err := km.Key(ctx, kms.Ref(s.Name))
		switch {
		case err == nil && info.Kind != s.Kind:
			return created, fmt.Errorf("keys: %w: %s exists as %s, want %s", kms.ErrKind, s.Name, info.Kind, s.Kind)
		case err == nil:
			continue
		case !errors.Is(err, kms.ErrNotFound):
			return created, err
		}
		info, err = km.CreateKey(ctx, s.Name, s.Kind)
		if err != nil {
			return created, fmt.Errorf("keys: creating %s: %w", s.Name, err)
		}
		created = append(created, info)
	}
	return created, nil
}

// Purpose is what a per-meter key is for. It is part of the derivation
// label, so keys for different purposes are independent.
type Purpose string

const (
	Card      Purpose = "card"      // the meter's card key; per-card keys are diversified from it
	Telemetry Purpose = "telemetry" // MACs telemetry frames and card receipts
	WMBus     Purpose = "wmbus"     // wireless M-Bus / OMS telegram encryption
)

// Purposes lists every purpose, in derivation order.
var Purposes = []Purpose{Card, Telemetry, WMBus}

func (p Purpose) valid() bool {
	for _, q := range Purposes {
		if p == q {
			return true
		}
	}
	return false
}

// DeviceKeyBits is the length of every derived device key: AES-128, the
// size the cards' secure messaging and OMS telegrams use.
const DeviceKeyBits = 128

// Label returns the SP 800-108 label of a per-meter key:
// "sluice/meter/" || purpose || [version]_16.
func Label(p Purpose, version uint16) []byte {
	b := append([]byte("sluice/meter/"), p...)
	return binary.BigEndian.AppendUint16(b, version)
}

// Context returns the SP 800-108 context of a per-meter key: the meter ID,
// 8 bytes big-endian.
func Context(meterID uint64) []byte { return binary.BigEndian.AppendUint64(nil, meterID) }

// MeterKey derives one key of one meter under the meter root (root.Version 0
// is the newest root) and reports which root version it used. version is
// the meter's key version for that purpose, which the head-end records per
// meter and raises when it replaces that one key.
func MeterKey(ctx context.Context, km kms.KeyManager, root kms.KeyRef, meterID uint64, p Purpose, version uint16) ([]byte, kms.KeyInfo, error) {
	if !p.valid() {
		return nil, kms.KeyInfo{}, fmt.Errorf("keys: %w: purpose %q", kms.ErrInvalid, p)
	}
	if meterID == 0 {
		return nil, kms.KeyInfo{}, fmt.Errorf("keys: %w: meter ID 0", kms.ErrInvalid)
	}
	k, info, err := kms.Derive(ctx, km, root, Label(p, version), Context(meterID), DeviceKeyBits)
	if err != nil {
		return nil, kms.KeyInfo{}, fmt.Errorf("keys: %s key of meter %d: %w", p, meterID, err)
	}
	return k, info, nil
}

// MeterKeys are the symmetric keys one meter is provisioned with.
type MeterKeys struct {
	MeterID     uint64
	RootVersion int    // version of the meter root they derive from
	Version     uint16 // per-meter key version
	Card        [16]byte
	Telemetry   [16]byte
	WMBus       [16]byte
}

// DeriveMeter derives every key of one meter under one pinned root version.
func DeriveMeter(ctx context.Context, km kms.KeyManager, root kms.KeyRef, meterID uint64, version uint16) (MeterKeys, error) {
	info, err := km.Key(ctx, root)
	if err != nil {
		return MeterKeys{}, fmt.Errorf("keys: meter root: %w", err)
	}
	mk := MeterKeys{MeterID: meterID, RootVersion: info.Version, Version: version}
	for _, p := range Purposes {
		k, _, err := MeterKey(ctx, km, info.Ref(), meterID, p, version)
		if err != nil {
			return MeterKeys{}, err
		}
		switch p {
		case Card:
			copy(mk.Card[:], k)
		case Telemetry:
			copy(mk.Telemetry[:], k)
		case WMBus:
			copy(mk.WMBus[:], k)
		}
	}
	return mk, nil
}

// TrustedKeys returns the keyring a meter is provisioned with: the newest
// credit-signing key for credit vouchers and the newest management-signing
// key for engineering vouchers. Rotation campaigns extend it with key-change
// vouchers, so a meter trusts old and new side by side while they run.
func TrustedKeys(ctx context.Context, km kms.KeyManager) (voucher.Keyring, error) {
	var ring voucher.Keyring
	for _, r := range []struct {
		name string
		role voucher.Role
	}{{CreditSigning, voucher.RoleCredit}, {ManagementSigning, voucher.RoleManagement}} {
		pub, err := ed25519Public(ctx, km, kms.Ref(r.name))
		if err != nil {
			return nil, err
		}
		ring = append(ring, voucher.TrustedKey{Role: r.role, Public: pub})
	}
	return ring, nil
}

func ed25519Public(ctx context.Context, km kms.KeyManager, ref kms.KeyRef) (ed25519.PublicKey, error) {
	pub, err := km.PublicKey(ctx, ref)
	if err != nil {
		return nil, fmt.Errorf("keys: %s: %w", ref, err)
	}
	p, ok := pub.(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("keys: %w: %s is not an Ed25519 key", kms.ErrKind, ref)
	}
	return p, nil
}

// VoucherSigner returns the signer for vouchers of the given kind: the
// credit-signing key for credit, the management-signing key for engineering
// actions, pinned to its newest version. Callers on the management path are
// responsible for dual control (two approvals) before they ask for it.
func VoucherSigner(ctx context.Context, km kms.KeyManager, kind voucher.Kind) (crypto.Signer, error) {
	name := CreditSigning
	if kind.Engineering() {
		name = ManagementSigning
	}
	return kms.Signer(ctx, km, kms.Ref(name))
}
