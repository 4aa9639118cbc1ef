package provision

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"fmt"

	"sluice/keys"
	"sluice/kms"
)

// KMSDerive returns the DeriveFunc of the standard key hierarchy: a meter's
// card, telemetry and wM-Bus keys, derived inside the KMS under the meter
// root (package keys: SP 800-108, label "sluice/meter/" || purpose ||
// version, context the meter ID), with the root version pinned per call and
// the per-meter key version keyVersion(meterID) that the head-end records.
// A head-end that also provisions STS keypad meters wraps it and appends the
// KeySTSDecoder key.
func KMSDerive(km kms.KeyManager, root kms.KeyRef, keyVersion func(meterID uint64) uint16) DeriveFunc {
	return func(ctx context.Context, meterID uint64) ([]Key, error) {
		v := keyVersion(meterID)
		mk, err := keys.DeriveMeter(ctx, km, root, meterID, v)
		if err != nil {
			return nil, err
		}
		if mk.RootVersion < 1 || mk.RootVersion > 0xffff {
			return nil, fmt.Errorf("%w: meter root version %d does not fit the record", ErrInvalid, mk.RootVersion)
		}
		rv := uint16(mk.RootVersion)
		return []Key{
			{Kind: KeyCard, RootVersion: rv, Version: v, Secret: mk.Card[:]},
			{Kind: KeyTelemetry, RootVersion: rv, Version: v, Secret: mk.Telemetry[:]},
			{Kind: KeyWMBus, RootVersion: rv, Version: v, Secret: mk.WMBus[:]},
		}, nil
	}
}

// KMSTrust reads the verification keys a record installs from the KMS:
// the newest credit-signing, management-signing and firmware-signing
// public keys of the standard hierarchy.
func KMSTrust(ctx context.Context, km kms.KeyManager) (Trust, error) {
	pub := func(name string) (crypto.PublicKey, error) {
		k, err := km.PublicKey(ctx, kms.Ref(name))
		if err != nil {
			return nil, fmt.Errorf("provision: %s: %w", name, err)
		}
		return k, nil
	}
	var t Trust
	for _, k := range []struct {
		name string
		dst  *ed25519.PublicKey
	}{{keys.CreditSigning, &t.Credit}, {keys.ManagementSigning, &t.Management}} {
		p, err := pub(k.name)
		if err != nil {
			return Trust{}, err
		}
		ed, ok := p.(ed25519.PublicKey)
		if !ok {
			return Trust{}, fmt.Errorf("%w: %s is %T, want Ed25519", ErrInvalid, k.name, p)
		}
		*k.dst = ed
	}
	fw, err := pub(keys.FirmwareSigning)
	if err != nil {
		return Trust{}, err
	}
	t.Firmware = fw
	return t, t.check()
}
