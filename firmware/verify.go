package firmware

import (
	"crypto"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
)

// Verifier checks images against a set of trusted public keys (the
// firmware signing keys the meter was built or provisioned with).
type Verifier struct {
	keys []trustedKey
}

type trustedKey struct {
	hash [32]byte
	pub  crypto.PublicKey
}

// NewVerifier returns a Verifier trusting keys (ed25519.PublicKey or
// *ecdsa.PublicKey on P-256). Several keys allow a signing key rotation.
func NewVerifier(keys ...crypto.PublicKey) (*Verifier, error) {
	if len(keys) == 0 {
		return nil, errors.New("firmware: a verifier needs at least one trusted key")
	}
	v := &Verifier{}
	for i, k := range keys {
		h, err := KeyHash(k)
		if err != nil {
			return nil, fmt.Errorf("firmware: trusted key %d: %w", i, err)
		}
		v.keys = append(v.keys, trustedKey{hash: h, pub: k})
	}
	return v, nil
}

// Verify parses an image file and checks its hash, key hash and signature.
// The returned Image may be trusted only when the error is nil.
func (v *Verifier) Verify(b []byte) (*Image, error) {
	im, err := Parse(b)
	if err != nil {
		return nil, err
	}
	return im, v.Check(im)
}

// VerifySlot is Verify for the contents of a flash slot (see ParseSlot).
func (v *Verifier) VerifySlot(b []byte) (*Image, error) {
	im, err := ParseSlot(b)
	if err != nil {
		return nil, err
	}
	return im, v.Check(im)
}

// Check verifies a parsed image: the recomputed digest must equal the
// SHA256 TLV, the KEYHASH must name a trusted key, and the signature must
// verify under that key over the recomputed digest.
func (v *Verifier) Check(im *Image) error {
	if im == nil || im.raw == nil {
		return fmt.Errorf("firmware: %w: image not produced by Parse", ErrTruncated)
	}
	digest := sha256.Sum256(im.SignedBytes())
	if subtle.ConstantTimeCompare(digest[:], im.Hash[:]) != 1 {
		return fmt.Errorf("firmware: %w: SHA256 TLV %x, computed %x over %d bytes", ErrHashMismatch, im.Hash[:8], digest[:8], len(im.SignedBytes()))
	}
	for _, k := range v.keys {
		if k.hash != im.KeyHash {
			continue
		}
		if err := checkSignature(k.pub, im.SigType, digest[:], im.Signature); err != nil {
			return fmt.Errorf("firmware: %w", err)
		}
		return nil
	}
	return fmt.Errorf("firmware: %w: KEYHASH %x", ErrKeyHash, im.KeyHash[:8])
}
