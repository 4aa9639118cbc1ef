package audit

import (
	"crypto"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
)

// AnchorTag opens the message an anchor signs, so an anchor can never be
// confused with any other signature made by the same key.
const AnchorTag = "sluice audit anchor v1\n"

// AnchorMessage is what an anchor signs: AnchorTag | seq uint64 big-endian |
// the record's 32-byte hash. The hash commits to the whole chain before it.
func AnchorMessage(seq uint64, h Hash) []byte {
	b := make([]byte, 0, len(AnchorTag)+8+len(h))
	b = append(b, AnchorTag...)
	b = binary.BigEndian.AppendUint64(b, seq)
	return append(b, h[:]...)
}

// Signer makes anchors. The key lives in the KMS, never in the database.
type Signer interface {
	SignAnchor(msg []byte) ([]byte, error)
}

// AnchorVerifier checks anchors.
type AnchorVerifier interface {
	VerifyAnchor(msg, sig []byte) error
}

// Seal anchors r with s.
func (r *Record) Seal(s Signer) error {
	sig, err := s.SignAnchor(AnchorMessage(r.Seq, r.Hash))
	if err != nil {
		return fmt.Errorf("audit: anchoring record %d: %w", r.Seq, err)
	}
	r.Anchor = sig
	return nil
}

// HMAC anchors with HMAC-SHA-256. Anyone who can verify can also forge, so
// the verifier must be the key holder (the head-end's `audit verify` with
// the KMS); use Ed25519 when auditors should verify without that power.
type HMAC struct{ key []byte }

// NewHMAC returns an HMAC anchor key; the key must be at least 32 bytes.
func NewHMAC(key []byte) (*HMAC, error) {
	if len(key) < 32 {
		return nil, fmt.Errorf("audit: HMAC anchor key is %d bytes, want at least 32", len(key))
	}
	return &HMAC{key: append([]byte(nil), key...)}, nil
}

func (h *HMAC) SignAnchor(msg []byte) ([]byte, error) {
	m := hmac.New(sha256.New, h.key)
	m.Write(msg)
	return m.Sum(nil), nil
}

func (h *HMAC) VerifyAnchor(msg, sig []byte) error {
	want, _ := h.SignAnchor(msg)
	if !hmac.Equal(want, sig) {
		return errBadSig
	}
	return nil
}

var errBadSig = errors.New("signature mismatch")

// Ed25519Signer anchors with an Ed25519 crypto.Signer, such as a KMS or
// PKCS#11 key handle; the private key never has to leave it.
type Ed25519Signer struct{ s crypto.Signer }

// NewEd25519Signer wraps s, which must hold an Ed25519 key.
func NewEd25519Signer(s crypto.Signer) (*Ed25519Signer, error) {
	if _, ok := s.Public().(ed25519.PublicKey); !ok {
		return nil, fmt.Errorf("audit: anchor signer holds a %T, want an Ed25519 key", s.Public())
	}
	return &Ed25519Signer{s}, nil
}

func (e *Ed25519Signer) SignAnchor(msg []byte) ([]byte, error) {
	// Pure Ed25519 signs the message itself: crypto.Hash(0).
	return e.s.Sign(nil, msg, crypto.Hash(0))
}

// Ed25519Verifier checks Ed25519 anchors with the public key only.
type Ed25519Verifier ed25519.PublicKey

func (pub Ed25519Verifier) VerifyAnchor(msg, sig []byte) error {
	if len(pub) != ed25519.PublicKeySize || !ed25519.Verify(ed25519.PublicKey(pub), msg, sig) {
		return errBadSig
	}
	return nil
}
