// Package kms is Sluice's key manager: one small interface over the places
// root keys live, and the operations the rest of Sluice performs with them
// without ever holding them.
//
// A KeyManager holds named keys, each with numbered versions. Creating a key
// makes version 1; rotating it makes version n+1 of the same kind. Old
// versions stay usable, because meters provisioned under them keep their
// derived keys and trusted public keys until a rotation campaign reaches
// them; a KeyRef with Version 0 means the newest version.
//
// The operations are the ones a key's kind allows:
//
//	kind        Sign  PublicKey  PRF                          Wrap/Unwrap
//	aes128      -     -          AES-CMAC (16 bytes)          AES-GCM
//	aes256      -     -          AES-CMAC (16 bytes)          AES-GCM
//	ed25519     yes   yes        -                            -
//	ecdsa-p256  yes   yes        -                            -
//	sts-dkga04  -     -          HMAC-SHA-256 (32 bytes)      -
//	sts-dkga02  -     -          DES(K,d) ^ d ^ K (8 bytes)   -
//
// PRF is the primitive: Derive runs the SP 800-108 KDF of package kdf over
// it, so a backend that keeps keys in an HSM computes each PRF block inside
// the HSM and the root never leaves it. The STS kinds are vending keys the
// utility supplies (ImportKey); their PRF is exactly what the STS decoder key
// generation algorithms need (DKGA04 is one HMAC-SHA-256; DKGA02 is the
// whole of its DES step), so package sts never sees a vending key.
//
// Backends live in their own packages (kms/filekms, kms/pkcs11kms) and are
// chosen by configuration in kms/kmsconfig; nothing registers itself
// globally. WithAudit wraps any KeyManager so that every use of a key is
// recorded, and fails closed when the record cannot be written.
package kms

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Kind is the type of a key, which fixes the operations it allows.
type Kind string

const (
	AES128    Kind = "aes128"     // root key: PRF (AES-CMAC), Wrap
	AES256    Kind = "aes256"     // root key: PRF (AES-CMAC), Wrap
	Ed25519   Kind = "ed25519"    // signing key: vouchers, provisioning, firmware
	ECDSAP256 Kind = "ecdsa-p256" // signing key: firmware for meters without Ed25519
	STSDKGA04 Kind = "sts-dkga04" // STS vending key, 160 bits, imported
	STSDKGA02 Kind = "sts-dkga02" // STS vending key, 64-bit DES, imported (legacy)
)

// Kinds lists every kind, in the order the documentation gives them.
var Kinds = []Kind{AES128, AES256, Ed25519, ECDSAP256, STSDKGA04, STSDKGA02}

// Valid reports whether k is a known kind.
func (k Kind) Valid() bool {
	for _, x := range Kinds {
		if k == x {
			return true
		}
	}
	return false
}

// Signing reports whether keys of kind k sign and have a public key.
func (k Kind) Signing() bool { return k == Ed25519 || k == ECDSAP256 }

// Imported reports whether keys of kind k come from outside (ImportKey)
// rather than being generated inside the key manager (CreateKey).
func (k Kind) Imported() bool { return k == STSDKGA04 || k == STSDKGA02 }

// SecretSize returns the length of the raw secret of a symmetric kind, and 0
// for signing kinds.
func (k Kind) SecretSize() int {
	switch k {
	case AES128:
		return 16
	case AES256:
		return 32
	case STSDKGA04:
		return 20
	case STSDKGA02:
		return 8
	}
	return 0
}

// KeyRef names one version of a key; Version 0 is the newest.
type KeyRef struct {
	Name    string
	Version int
}

func (r KeyRef) String() string {
	if r.Version == 0 {
		return r.Name
	}
	return fmt.Sprintf("%s@%d", r.Name, r.Version)
}

// Ref returns a KeyRef to the newest version of the named key.
func Ref(name string) KeyRef { return KeyRef{Name: name} }

// KeyInfo describes one version of a key. Public is set for signing kinds.
type KeyInfo struct {
	Name    string
	Version int
	Kind    Kind
	Created time.Time // zero when the backend does not record it
	Public  crypto.PublicKey
}

// Ref returns the exact reference of this version.
func (i KeyInfo) Ref() KeyRef { return KeyRef{Name: i.Name, Version: i.Version} }

// Sentinel errors callers branch on; backends wrap them with detail.
var (
	ErrNotFound    = errors.New("kms: key not found")
	ErrExists      = errors.New("kms: key already exists")
	ErrKind        = errors.New("kms: operation not allowed for this key kind")
	ErrInvalid     = errors.New("kms: invalid argument")
	ErrUnwrap      = errors.New("kms: wrapped data not authentic")
	ErrUnsupported = errors.New("kms: not supported by this backend")
	ErrClosed      = errors.New("kms: key manager closed")
)

// KeyManager is a store of named, versioned keys and the operations on them.
// Implementations are safe for concurrent use.
type KeyManager interface {
	// CreateKey generates version 1 of a new key inside the key manager.
	// Imported kinds are refused (ErrKind); use ImportKey.
	CreateKey(ctx context.Context, name string, kind Kind) (KeyInfo, error)
	// ImportKey stores secret material supplied from outside (STS vending
	// keys) as the next version of name, creating it if needed.
	ImportKey(ctx context.Context, name string, kind Kind, material []byte) (KeyInfo, error)
	// Rotate generates the next version of an existing key, of the same kind.
	Rotate(ctx context.Context, name string) (KeyInfo, error)
	// Keys lists every version of every key, sorted by name then version.
	Keys(ctx context.Context) ([]KeyInfo, error)
	// Key describes one version of a key (the newest for Version 0); it is
	// how callers pin a version before a sequence of operations.
	Key(ctx context.Context, ref KeyRef) (KeyInfo, error)

	// PublicKey returns the public key of a signing key
	// (ed25519.PublicKey or *ecdsa.PublicKey).
	PublicKey(ctx context.Context, ref KeyRef) (crypto.PublicKey, error)
	// Sign signs msg: pure Ed25519, or ECDSA P-256 over SHA-256(msg) with
	// an ASN.1 DER signature (what ecdsa.VerifyASN1 checks).
	Sign(ctx context.Context, ref KeyRef, msg []byte) ([]byte, error)
	// PRF runs the kind's pseudo-random function under the key (see the
	// package comment).
	PRF(ctx context.Context, ref KeyRef, msg []byte) ([]byte, error)
	// Wrap encrypts and authenticates plaintext under an AES key, binding
	// aad. The result is nonce (12) || ciphertext || tag (16).
	Wrap(ctx context.Context, ref KeyRef, plaintext, aad []byte) ([]byte, error)
	// Unwrap reverses Wrap; ErrUnwrap when the data or aad was altered.
	Unwrap(ctx context.Context, ref KeyRef, wrapped, aad []byte) ([]byte, error)

	// Close releases the backend (sessions, file handles).
	Close() error
}

// CheckCreate validates CreateKey's arguments, the same for every backend:
// a valid name and a kind the key manager generates itself.
func CheckCreate(name string, kind Kind) error {
	if err := CheckName(name); err != nil {
		return err
	}
	if !kind.Valid() {
		return fmt.Errorf("%w: kind %q unknown", ErrInvalid, kind)
	}
	if kind.Imported() {
		return fmt.Errorf("%w: %s keys are imported, not generated", ErrKind, kind)
	}
	return nil
}

// CheckImport validates ImportKey's arguments, the same for every backend:
// a valid name, a kind that is imported, and material of its exact size.
func CheckImport(name string, kind Kind, material []byte) error {
	if err := CheckName(name); err != nil {
		return err
	}
	if !kind.Imported() {
		return fmt.Errorf("%w: %s keys are generated inside the key manager, not imported", ErrKind, kind)
	}
	if len(material) != kind.SecretSize() {
		return fmt.Errorf("%w: %s key is %d bytes, want %d", ErrInvalid, kind, len(material), kind.SecretSize())
	}
	return nil
}

// CheckName validates a key name: 1 to 64 characters from a-z 0-9 . _ - /,
// starting with a letter or digit. Names appear in file formats, PKCS#11
// labels and logs, so they are kept plain.
func CheckName(name string) error {
	if len(name) == 0 || len(name) > 64 {
		return fmt.Errorf("%w: key name %q must be 1 to 64 characters", ErrInvalid, name)
	}
	for i, c := range name {
		ok := c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || i > 0 && (c == '.' || c == '_' || c == '-' || c == '/')
		if !ok {
			return fmt.Errorf("%w: key name %q: character %q at %d not allowed", ErrInvalid, name, c, i)
		}
	}
	return nil
}

// ParseRef parses "name" (the newest version) or "name@N", the form
// KeyRef.String prints.
func ParseRef(s string) (KeyRef, error) {
	name, ver, versioned := strings.Cut(s, "@")
	if err := CheckName(name); err != nil {
		return KeyRef{}, err
	}
	if !versioned {
		return KeyRef{Name: name}, nil
	}
	n, err := strconv.Atoi(ver)
	if err != nil || n < 1 || strconv.Itoa(n) != ver {
		return KeyRef{}, fmt.Errorf("%w: key reference %q: version must be a positive number", ErrInvalid, s)
	}
	return KeyRef{Name: name, Version: n}, nil
}
