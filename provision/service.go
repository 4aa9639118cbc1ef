package provision

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/hpke"
	"crypto/rand"
	"encoding/binary"
	"fmt"
)

// DeriveFunc returns the keys of one meter. The head-end passes one built
// on the KMS (kms.Derive under the meter roots, per kind), so the roots
// never leave the KMS and this package never sees them.
type DeriveFunc func(ctx context.Context, meterID uint64) ([]Key, error)

// Service is the head-end's provisioning service.
type Service struct {
	signer crypto.Signer
	derive DeriveFunc
}

// NewService returns a Service signing records with signer, the Ed25519
// management key (kms.Signer gives one), and deriving keys with derive.
func NewService(signer crypto.Signer, derive DeriveFunc) (*Service, error) {
	if _, ok := signer.Public().(ed25519.PublicKey); !ok {
		return nil, fmt.Errorf("%w: management signer must be Ed25519, got %T", ErrInvalid, signer.Public())
	}
	if derive == nil {
		return nil, fmt.Errorf("%w: no key derivation function", ErrInvalid)
	}
	return &Service{signer: signer, derive: derive}, nil
}

// Params are the head-end's choices for one record.
type Params struct {
	// Counter must exceed the counter of every record issued to this meter
	// before; the head-end keeps it per meter.
	Counter uint32
	Trust   Trust
}

// Provision builds and signs the record for a checked request (see
// ParseRequest). The keys are sealed to the request's device key and bound
// to every other field of the record.
func (s *Service) Provision(ctx context.Context, req *Request, p Params) ([]byte, error) {
	if req == nil || req.raw == nil {
		return nil, fmt.Errorf("%w: request not parsed with ParseRequest", ErrInvalid)
	}
	if p.Counter == 0 {
		return nil, fmt.Errorf("%w: counter zero", ErrInvalid)
	}
	if err := p.Trust.check(); err != nil {
		return nil, err
	}
	keys, err := s.derive(ctx, req.MeterID)
	if err != nil {
		return nil, fmt.Errorf("provision: derive keys of meter %d: %w", req.MeterID, err)
	}
	if len(keys) == 0 || len(keys) > MaxKeys {
		return nil, fmt.Errorf("%w: %d keys, want 1..%d", ErrInvalid, len(keys), MaxKeys)
	}
	seen := map[KeyKind]bool{}
	var plain []byte
	defer func() { clear(plain) }()
	for i, k := range keys {
		switch {
		case !k.Kind.valid():
			return nil, fmt.Errorf("%w: key %d: unknown kind %d", ErrInvalid, i, k.Kind)
		case seen[k.Kind]:
			return nil, fmt.Errorf("%w: key %d: %v twice", ErrInvalid, i, k.Kind)
		case len(k.Secret) < MinKeyLen || len(k.Secret) > MaxKeyLen:
			return nil, fmt.Errorf("%w: key %d (%v): %d bytes, want %d..%d", ErrInvalid, i, k.Kind, len(k.Secret), MinKeyLen, MaxKeyLen)
		case k.RootVersion == 0:
			return nil, fmt.Errorf("%w: key %d (%v): root version zero", ErrInvalid, i, k.Kind)
		}
		seen[k.Kind] = true
		plain = append(plain, k.Secret...)
	}

	b := append([]byte(nil), recordMagic[:]...)
	b = append(b, Version)
	b = binary.BigEndian.AppendUint64(b, req.MeterID)
	b = appendModel(b, req.Model)
	b = binary.BigEndian.AppendUint32(b, p.Counter)
	b = append(b, req.DeviceKey[:]...)
	b = append(b, req.Identity...)
	b = append(b, p.Trust.Credit...)
	b = append(b, p.Trust.Management...)
	typ, fw, _ := firmwareKeyBytes(p.Trust.Firmware)
	b = append(append(b, typ), fw...)
	b = append(b, byte(len(keys)))
	for _, k := range keys {
		b = append(b, byte(k.Kind), byte(len(k.Secret)))
		b = binary.BigEndian.AppendUint16(b, k.RootVersion)
		b = binary.BigEndian.AppendUint16(b, k.Version)
	}

	dk, err := x25519Public(req.DeviceKey[:])
	if err != nil {
		return nil, fmt.Errorf("%w: device key: %v", ErrInvalid, err)
	}
	pk, err := hpke.NewDHKEMPublicKey(dk)
	if err != nil {
		return nil, fmt.Errorf("provision: %w", err)
	}
	enc, sender, err := hpke.NewSender(pk, hpke.HKDFSHA256(), hpke.AES256GCM(), hpkeInfo)
	if err != nil {
		return nil, fmt.Errorf("provision: seal to device key: %w", err)
	}
	sealed, err := sender.Seal(b, plain)
	if err != nil {
		return nil, fmt.Errorf("provision: seal: %w", err)
	}
	b = append(append(b, enc...), sealed...)

	msg := append(append([]byte(nil), recordContext...), b...)
	sig, err := s.signer.Sign(rand.Reader, msg, crypto.Hash(0))
	if err != nil {
		return nil, fmt.Errorf("provision: sign record: %w", err)
	}
	if !ed25519.Verify(s.signer.Public().(ed25519.PublicKey), msg, sig) {
		return nil, fmt.Errorf("provision: the management signer returned a signature that does not verify")
	}
	return append(b, sig...), nil
}
