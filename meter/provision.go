package meter

import (
	"bytes"
	"crypto/ed25519"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"time"

	"sluice/provision"
	"sluice/sts"
	"sluice/voucher"
)

// Factory is what the factory station writes into a blank meter that will
// be provisioned by a signed record (package provision) rather than handed
// its keys: its identity, the key pairs it generated itself, and the
// management key its signed firmware trusts for the first record. Such a
// meter holds no operational key, accepts no token, voucher or card until
// Meter.Provision installs them.
type Factory struct {
	Params Params
	Device *provision.Device  // generated on the meter: provision.NewDevice
	Anchor ed25519.PublicKey  // the management key the first record must be signed with
	STS    *sts.DecoderConfig // identifiers of the STS decoder key to come (Key is ignored); nil: no keypad
}

// ErrNotProvisioned is returned for inputs that need operational keys on a
// meter that has none yet.
var ErrNotProvisioned = errors.New("meter: not provisioned")

// FormatFactory writes the first record of a blank meter that will be
// provisioned by a signed record.
func FormatFactory(st Storage, f Factory) error {
	if f.Device == nil || f.Device.MeterID == 0 {
		return errors.New("meter: factory device: required, with a meter ID")
	}
	if len(f.Anchor) != ed25519.PublicKeySize {
		return errors.New("meter: factory anchor: want an Ed25519 public key")
	}
	dev, err := f.Device.MarshalBinary()
	if err != nil {
		return fmt.Errorf("meter: factory device: %w", err)
	}
	p := Provision{ID: f.Device.MeterID, Params: f.Params}
	if f.STS != nil {
		// Until the record brings the real key, the decoder holds an
		// all-zero one; the meter refuses tokens until then anyway.
		cfg := *f.STS
		cfg.Key = make([]byte, cfg.EA.KeySize())
		p.STS = &cfg
	}
	return format(st, p, func(s *state) {
		s.Ready = false
		s.Device = dev
		copy(s.ProvManagement[:], f.Anchor)
	})
}

// Ready reports whether the meter holds its operational keys.
func (m *Meter) Ready() bool { return m.s.Ready }

// ProvisioningRequest returns the request, signed by the meter's identity
// key, that the factory station sends to the head-end's provisioning
// service.
func (m *Meter) ProvisioningRequest() ([]byte, error) {
	if len(m.s.Device) == 0 {
		return nil, fmt.Errorf("%w: meter has no provisioning keys", ErrUnsupported)
	}
	d, err := provision.ParseDevice(m.s.Device)
	if err != nil {
		return nil, fmt.Errorf("meter: stored device keys: %w", err)
	}
	return d.Request(), nil
}

// Provision installs the keys of a signed provisioning record: the card
// and telemetry keys, the STS decoder key if the meter has a keypad, and
// the credit and management verification keys, with the new provisioning
// state, all in one commit. provision.Device.Open checks the record first:
// signed by the management key the meter trusts, bound to this meter's
// device keys, counter above the last one, sealed keys intact. A later
// record re-provisions (rotates keys); an old one is refused as used.
//
// After the commit the meter commits once more, so the keys it replaced do
// not survive in the other journal bank.
func (m *Meter) Provision(now time.Time, record []byte) error {
	if m.halt != nil {
		return m.halt
	}
	if len(m.s.Device) == 0 {
		return fmt.Errorf("%w: meter has no provisioning keys (set up by Format)", ErrUnsupported)
	}
	dev, err := provision.ParseDevice(m.s.Device)
	if err != nil {
		return fmt.Errorf("meter: stored device keys: %w", err)
	}
	var rej error
	err = m.update(func(s *state) error {
		st := provision.State{Counter: s.ProvCounter, Management: ed25519.PublicKey(append([]byte(nil), s.ProvManagement[:]...))}
		p, next, err := dev.Open(record, st)
		if err != nil {
			err = provisionErr(err)
		} else {
			before := s.clone()
			if err = s.install(p, m.deps.STATables); err != nil {
				*s = before
			} else {
				s.ProvCounter = next.Counter
				copy(s.ProvManagement[:], next.Management)
				s.Ready = true
				s.log(now, EvProvisioned, ReasonNone, int64(next.Counter))
				return nil
			}
		}
		rej = err
		s.log(now, EvProvisionRefused, ReasonOf(err), 0)
		return nil
	})
	if err != nil {
		return err
	}
	if rej != nil {
		return rej
	}
	_ = m.update(func(*state) error { return nil })
	return nil
}

// install puts the keys of an opened record into s.
func (s *state) install(p *provision.Provisioned, tables *sts.STATables) error {
	for _, k := range []struct {
		kind provision.KeyKind
		dst  *[16]byte
	}{{provision.KeyCard, &s.Keys.MeterKey}, {provision.KeyTelemetry, &s.Keys.TelemetryKey}} {
		key, ok := p.Key(k.kind)
		if !ok || len(key.Secret) != 16 {
			return fmt.Errorf("%w: provisioning record: %v key missing or not 16 bytes", ErrFormat, k.kind)
		}
		copy(k.dst[:], key.Secret)
	}
	if key, ok := p.Key(provision.KeySTSDecoder); ok && len(s.Tokens) > 0 {
		if err := s.rekeySTS(key.Secret, tables); err != nil {
			return err
		}
	}
	if len(s.Tokens) > 0 {
		// A keypad meter must not come alive with the factory's all-zero
		// decoder key, which anyone can seal tokens under.
		var d sts.Decoder
		d.SetTables(tables)
		if err := d.UnmarshalBinary(s.Tokens); err != nil || allZero(d.Key()) {
			return fmt.Errorf("%w: provisioning record: a keypad meter needs an STS decoder key", ErrFormat)
		}
	}
	s.Keys.Trusted = voucher.Keyring{
		{Role: voucher.RoleCredit, Public: append(ed25519.PublicKey(nil), p.Trust.Credit...)},
		{Role: voucher.RoleManagement, Public: append(ed25519.PublicKey(nil), p.Trust.Management...)},
	}
	return nil
}

// rekeySTS gives the STS decoder a provisioned key and keeps the rest of
// its state, as an STS key change does: the TID memory stays, so no
// sequence of re-provisionings (even back to an earlier key) makes a used
// token good again; a key-change set in progress, sealed under the old key,
// is dropped.
//
// package sts exposes no key setter, so this edits the decoder's binary
// form at the offsets its documentation fixes (version 1: key at 6..21,
// key-change sections at 294..326, CRC-32 at 327) and lets
// Decoder.UnmarshalBinary check the result.
func (s *state) rekeySTS(key []byte, tables *sts.STATables) error {
	var d sts.Decoder
	d.SetTables(tables)
	if err := d.UnmarshalBinary(s.Tokens); err != nil {
		return fmt.Errorf("%w: stored decoder state: %w", ErrUnsupported, err)
	}
	if len(key) != d.EA().KeySize() {
		return fmt.Errorf("%w: provisioning record: sts key of %d bytes for EA%s", ErrFormat, len(key), d.EA())
	}
	if len(s.Tokens) != sts.StateSize || s.Tokens[4] != 1 {
		return fmt.Errorf("%w: stored decoder state: not version 1", ErrUnsupported)
	}
	b := append([]byte(nil), s.Tokens...)
	clear(b[6:22])
	copy(b[6:], key)
	clear(b[294:327])
	binary.BigEndian.PutUint32(b[327:], crc32.ChecksumIEEE(b[:327]))
	if err := d.UnmarshalBinary(b); err != nil || !bytes.Equal(d.Key(), key) {
		return fmt.Errorf("%w: re-keyed decoder state does not check: %v", ErrUnsupported, err)
	}
	s.Tokens = b
	return nil
}

// provisionErr adds the meter's sentinel to an error of package provision.
func provisionErr(err error) error {
	var s error
	switch {
	case errors.Is(err, provision.ErrSignature), errors.Is(err, provision.ErrUnwrap):
		s = ErrSignature
	case errors.Is(err, provision.ErrWrongDevice):
		s = ErrWrongMeter
	case errors.Is(err, provision.ErrReplay):
		s = ErrUsed
	default:
		s = ErrFormat
	}
	return fmt.Errorf("%w: %w", s, err)
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
