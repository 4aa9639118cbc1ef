package webhook

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	crand "crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"

	"sluice/keys"
	"sluice/kms"
)

// BoxLabel is the SP 800-108 label under which the secret box key is
// derived from the meter root; it differs from every per-meter label
// ("sluice/meter/...") and from the audit anchors' label.
const BoxLabel = "sluice/webhook-secrets"

const boxContext = "aes-256-gcm v1"

// boxMagic starts a sealed secret; a secret in clear starts with "whsec_".
var boxMagic = []byte("sbx1")

// ErrSealed reports a sealed secret read without the box that sealed it.
var ErrSealed = errors.New("webhook: subscriber secret is sealed; configure the KMS secret box")

// Box keeps subscribers' signing secrets sealed in the database, so that
// reading the database is not enough to forge deliveries. Its AES-256-GCM key
// is derived in the KMS from the meter root (kms.Derive, label BoxLabel): the
// root never leaves the KMS and the derived key lives only in memory. A
// sealed secret is
//
//	"sbx1" || root version (uint32, big-endian) || nonce (12) || ciphertext || tag (16)
//
// with the subscriber's name as associated data, so a sealed secret copied to
// another subscriber does not open. Naming the root version keeps secrets
// readable after the meter root is rotated.
type Box struct {
	ctx     context.Context
	km      kms.KeyManager
	sealVer int

	mu    sync.Mutex
	aeads map[int]cipher.AEAD
}

// NewBox derives the box key under the newest meter root. ctx is kept for
// the derivations opening older secrets needs.
func NewBox(ctx context.Context, km kms.KeyManager) (*Box, error) {
	b := &Box{ctx: ctx, km: km, aeads: map[int]cipher.AEAD{}}
	info, err := km.Key(ctx, kms.Ref(keys.MeterRoot))
	if err != nil {
		return nil, fmt.Errorf("webhook: secret box: %w", err)
	}
	if _, err := b.aead(info.Version); err != nil {
		return nil, err
	}
	b.sealVer = info.Version
	return b, nil
}

func (b *Box) aead(version int) (cipher.AEAD, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if a, ok := b.aeads[version]; ok {
		return a, nil
	}
	key, _, err := kms.Derive(b.ctx, b.km, kms.KeyRef{Name: keys.MeterRoot, Version: version}, []byte(BoxLabel), []byte(boxContext), 256)
	if err != nil {
		return nil, fmt.Errorf("webhook: deriving the secret box key under %s@%d: %w", keys.MeterRoot, version, err)
	}
	block, err := aes.NewCipher(key)
	clear(key)
	if err != nil {
		return nil, err
	}
	a, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	b.aeads[version] = a
	return a, nil
}

func boxAAD(subscriber string) []byte {
	return append([]byte("sluice webhook secret v1\x00"), subscriber...)
}

// seal seals a subscriber's secret.
func (b *Box) seal(subscriber string, secret []byte) ([]byte, error) {
	a, err := b.aead(b.sealVer)
	if err != nil {
		return nil, err
	}
	out := append(bytes.Clone(boxMagic), 0, 0, 0, 0)
	binary.BigEndian.PutUint32(out[len(boxMagic):], uint32(b.sealVer))
	nonce := make([]byte, a.NonceSize())
	if _, err := crand.Read(nonce); err != nil {
		return nil, err
	}
	out = append(out, nonce...)
	return a.Seal(out, nonce, secret, boxAAD(subscriber)), nil
}

// openSecret returns a stored secret in clear: as stored when it was never
// sealed, opened with b (which may be nil) when it was.
func openSecret(b *Box, subscriber string, stored []byte) ([]byte, error) {
	if !bytes.HasPrefix(stored, boxMagic) {
		return stored, nil
	}
	if b == nil {
		return nil, ErrSealed
	}
	rest := stored[len(boxMagic):]
	if len(rest) < 4+12+16 {
		return nil, fmt.Errorf("webhook: sealed secret of %s is truncated", subscriber)
	}
	a, err := b.aead(int(binary.BigEndian.Uint32(rest)))
	if err != nil {
		return nil, err
	}
	rest = rest[4:]
	secret, err := a.Open(nil, rest[:a.NonceSize()], rest[a.NonceSize():], boxAAD(subscriber))
	if err != nil {
		return nil, fmt.Errorf("webhook: sealed secret of %s does not open: %w", subscriber, err)
	}
	return secret, nil
}
