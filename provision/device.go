package provision

import (
	"bytes"
	"crypto"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/hpke"
	"encoding/binary"
	"fmt"
	"io"
)

// Device is the meter's side: its factory-generated key pairs. It holds
// secrets and stays in the meter (MarshalBinary is for the meter's own
// protected storage, nothing else).
type Device struct {
	MeterID uint64
	Model   string
	kex     *ecdh.PrivateKey   // X25519: the head-end seals keys to it
	id      ed25519.PrivateKey // identity: signs the request
}

// NewDevice generates the key pairs of a meter at the factory station.
func NewDevice(rand io.Reader, meterID uint64, model string) (*Device, error) {
	if meterID == 0 {
		return nil, fmt.Errorf("%w: meter ID zero", ErrInvalid)
	}
	if err := checkModel(model); err != nil {
		return nil, fmt.Errorf("%w: model: %v", ErrInvalid, err)
	}
	kex, err := ecdh.X25519().GenerateKey(rand)
	if err != nil {
		return nil, fmt.Errorf("provision: device key: %w", err)
	}
	_, id, err := ed25519.GenerateKey(rand)
	if err != nil {
		return nil, fmt.Errorf("provision: identity key: %w", err)
	}
	return &Device{MeterID: meterID, Model: model, kex: kex, id: id}, nil
}

// DeviceKey is the public X25519 key records are sealed to.
func (d *Device) DeviceKey() [32]byte { return [32]byte(d.kex.PublicKey().Bytes()) }

// Identity is the meter's identity public key.
func (d *Device) Identity() ed25519.PublicKey { return d.id.Public().(ed25519.PublicKey) }

// IdentitySigner lets the meter sign with its identity key (Ed25519).
func (d *Device) IdentitySigner() crypto.Signer { return d.id }

// Request returns the signed provisioning request the factory station
// sends to the head-end.
func (d *Device) Request() []byte {
	body := encodeRequestBody(d.MeterID, d.Model, d.DeviceKey(), d.Identity())
	sig := ed25519.Sign(d.id, append(append([]byte(nil), requestContext...), body...))
	return append(body, sig...)
}

// device file format (secret):
//
//	0  4  "SLDV"
//	4  1  version (1)
//	5  8  meter ID
//	13 1  model length m
//	14 m  model
//	.  32 X25519 private key
//	.  32 Ed25519 seed

// MarshalBinary encodes the device keys for the meter's protected storage.
func (d *Device) MarshalBinary() ([]byte, error) {
	b := append([]byte(nil), deviceMagic[:]...)
	b = append(b, Version)
	b = binary.BigEndian.AppendUint64(b, d.MeterID)
	b = appendModel(b, d.Model)
	b = append(b, d.kex.Bytes()...)
	return append(b, d.id.Seed()...), nil
}

// ParseDevice decodes what MarshalBinary wrote.
func ParseDevice(b []byte) (*Device, error) {
	r := &reader{b: b}
	r.header(deviceMagic, "device key file")
	d := &Device{MeterID: r.meterID(), Model: r.model()}
	kex := r.take("x25519_private", 32)
	seed := r.take("ed25519_seed", ed25519.SeedSize)
	r.end()
	if r.err != nil {
		return nil, r.err
	}
	var err error
	if d.kex, err = ecdh.X25519().NewPrivateKey(kex); err != nil {
		return nil, fmt.Errorf("%w: x25519_private: %v", ErrMalformed, err)
	}
	d.id = ed25519.NewKeyFromSeed(seed)
	return d, nil
}

// State is what a meter keeps about provisioning between records: the
// counter of the last record it accepted and the management key the next
// record must be signed with. A blank meter starts from FactoryState.
type State struct {
	Counter    uint32
	Management ed25519.PublicKey
}

// FactoryState is the state of a meter never provisioned: it trusts the
// management key its signed firmware carries, and no counter is used yet.
func FactoryState(anchor ed25519.PublicKey) State { return State{Management: anchor} }

// Provisioned is what an accepted record gives the meter.
type Provisioned struct {
	MeterID uint64
	Model   string
	Counter uint32
	Trust   Trust
	Keys    []Key
}

// Key returns the key of the given kind, if the record carried one.
func (p *Provisioned) Key(kind KeyKind) (Key, bool) {
	for _, k := range p.Keys {
		if k.Kind == kind {
			return k, true
		}
	}
	return Key{}, false
}

// Open verifies a provisioning record for this device against st and
// returns its keys and the state to store with them. It checks, in order:
// the structure, the signature under st.Management, that the record names
// this device (meter ID, model, both public keys), that its counter is
// above st.Counter, and that the sealed keys open. Nothing is returned
// unless every check passes; st itself is never modified, so the caller
// commits keys and new state together (in one journaled write) or not at all.
func (d *Device) Open(record []byte, st State) (*Provisioned, State, error) {
	rec, err := ParseRecord(record)
	if err != nil {
		return nil, st, err
	}
	if err := rec.Verify(st.Management); err != nil {
		return nil, st, err
	}
	switch dk := d.DeviceKey(); {
	case rec.MeterID != d.MeterID:
		return nil, st, fmt.Errorf("%w: record for meter %d, this is meter %d", ErrWrongDevice, rec.MeterID, d.MeterID)
	case rec.Model != d.Model:
		return nil, st, fmt.Errorf("%w: record for model %q, this is %q", ErrWrongDevice, rec.Model, d.Model)
	case rec.DeviceKey != dk:
		return nil, st, fmt.Errorf("%w: record sealed to device key %x, this device has %x", ErrWrongDevice, rec.DeviceKey[:8], dk[:8])
	case !bytes.Equal(rec.Identity, d.Identity()):
		return nil, st, fmt.Errorf("%w: record names identity key %x", ErrWrongDevice, rec.Identity[:8])
	}
	if rec.Counter <= st.Counter {
		return nil, st, fmt.Errorf("%w: record counter %d, last accepted %d", ErrReplay, rec.Counter, st.Counter)
	}
	priv, err := hpke.NewDHKEMPrivateKey(d.kex)
	if err != nil {
		return nil, st, fmt.Errorf("provision: %w", err)
	}
	rcpt, err := hpke.NewRecipient(rec.enc, priv, hpke.HKDFSHA256(), hpke.AES256GCM(), hpkeInfo)
	if err != nil {
		return nil, st, fmt.Errorf("%w: %v", ErrUnwrap, err)
	}
	plain, err := rcpt.Open(rec.raw[:rec.aadEnd], rec.sealed)
	if err != nil {
		return nil, st, fmt.Errorf("%w: %v", ErrUnwrap, err)
	}
	p := &Provisioned{MeterID: rec.MeterID, Model: rec.Model, Counter: rec.Counter, Trust: rec.Trust}
	off := 0
	for _, k := range rec.Keys {
		p.Keys = append(p.Keys, Key{Kind: k.Kind, RootVersion: k.RootVersion, Version: k.Version, Secret: plain[off : off+k.Len : off+k.Len]})
		off += k.Len
	}
	return p, State{Counter: rec.Counter, Management: rec.Trust.Management}, nil
}
