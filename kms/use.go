package kms

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"fmt"
	"io"

	"sluice/kdf"
)

// PRF returns the PRF of one key version as a kdf.PRF, so any construction
// of package kdf can run under a key the caller never holds.
func PRF(km KeyManager, ref KeyRef) kdf.PRF {
	return func(ctx context.Context, msg []byte) ([]byte, error) {
		return km.PRF(ctx, ref, msg)
	}
}

// Derive derives bits of key material under an AES key with the SP 800-108
// counter-mode KDF of package kdf (label = purpose, context = what the key
// belongs to). The version is pinned before the first PRF block, so a
// rotation running meanwhile cannot mix two versions in one key; the
// version used is returned with the key.
func Derive(ctx context.Context, km KeyManager, ref KeyRef, label, context []byte, bits int) ([]byte, KeyInfo, error) {
	info, err := km.Key(ctx, ref)
	if err != nil {
		return nil, KeyInfo{}, err
	}
	if info.Kind != AES128 && info.Kind != AES256 {
		return nil, KeyInfo{}, fmt.Errorf("%w: derive under %s key %s", ErrKind, info.Kind, ref)
	}
	k, err := kdf.Derive(ctx, PRF(km, info.Ref()), label, context, bits)
	if err != nil {
		return nil, KeyInfo{}, fmt.Errorf("kms: derive under %s: %w", info.Ref(), err)
	}
	return k, info, nil
}

// Signer returns a crypto.Signer for an Ed25519 key version, pinned at the
// time of the call, for APIs written against crypto.Signer (package
// voucher). ctx is used for every signature it makes.
//
// ECDSA keys are not offered here: crypto.Signer hands over a digest, and
// the KeyManager signs messages; use KeyManager.Sign for them.
func Signer(ctx context.Context, km KeyManager, ref KeyRef) (crypto.Signer, error) {
	info, err := km.Key(ctx, ref)
	if err != nil {
		return nil, err
	}
	pub, ok := info.Public.(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("%w: crypto.Signer for %s key %s (only Ed25519)", ErrKind, info.Kind, ref)
	}
	return &signer{ctx: ctx, km: km, ref: info.Ref(), pub: pub}, nil
}

type signer struct {
	ctx context.Context
	km  KeyManager
	ref KeyRef
	pub ed25519.PublicKey
}

func (s *signer) Public() crypto.PublicKey { return s.pub }

func (s *signer) Sign(_ io.Reader, msg []byte, opts crypto.SignerOpts) ([]byte, error) {
	if opts != nil && opts.HashFunc() != 0 {
		return nil, fmt.Errorf("%w: Ed25519ph (pre-hashed) signatures", ErrUnsupported)
	}
	return s.km.Sign(s.ctx, s.ref, msg)
}
