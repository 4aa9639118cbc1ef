package console

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"fmt"

	"sluice/meter"
	"sluice/sts"
	"sluice/voucher"
)

// DemoPAN is the demo meter's STS PAN (the STS sample IIN 600727).
const DemoPAN = "600727000000000009"

// NewDemo provisions a blank storage as demo meter id and returns the demo
// vending point that can sell to it. Every key comes from a public label:
// this is a bench meter, and says so; a production meter is provisioned
// from the KMS with keys nobody can recompute.
func NewDemo(st meter.Storage, id uint64) (*Demo, error) {
	d, prov, err := demoKeys(id)
	if err != nil {
		return nil, err
	}
	if err := meter.Format(st, prov); err != nil {
		return nil, err
	}
	return d, nil
}

// OpenDemo returns the demo vending point for a demo meter provisioned
// earlier by NewDemo, continuing its TID and voucher sequences, or nil when
// m is not a demo meter (its card key is not the demo's).
func OpenDemo(m *meter.Meter, lastTID uint32) (*Demo, error) {
	d, _, err := demoKeys(m.ID())
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(d.CardKey, m.CardKey()) {
		return nil, nil
	}
	d.Seq, d.LastTID = m.Snapshot().VoucherSeq, lastTID
	return d, nil
}

func demoSeed(label string) []byte {
	s := sha256.Sum256([]byte("sluice demo " + label))
	return s[:]
}

func demoKeys(id uint64) (*Demo, meter.Provision, error) {
	credit := ed25519.NewKeyFromSeed(demoSeed("credit signing key"))
	manage := ed25519.NewKeyFromSeed(demoSeed("management signing key"))
	pan, err := sts.ParsePAN(DemoPAN)
	if err != nil {
		return nil, meter.Provision{}, err
	}
	kid := sts.KeyID{KT: 2, SGC: 600727, TI: 1, KRN: 1}
	dk, err := sts.DKGA04(demoSeed("vending key")[:20], kid, pan, sts.Base2014, sts.EA11)
	if err != nil {
		return nil, meter.Provision{}, err
	}
	coder, err := sts.NewEA11(dk)
	if err != nil {
		return nil, meter.Provision{}, err
	}
	var keys meter.Keys
	copy(keys.MeterKey[:], demoSeed(fmt.Sprintf("meter key %d", id)))
	copy(keys.TelemetryKey[:], demoSeed(fmt.Sprintf("telemetry key %d", id)))
	keys.Trusted = voucher.Keyring{
		{Role: voucher.RoleCredit, Public: credit.Public().(ed25519.PublicKey)},
		{Role: voucher.RoleManagement, Public: manage.Public().(ed25519.PublicKey)},
	}
	prov := meter.Provision{ID: id, Params: meter.DefaultParams(), Keys: keys,
		STS: &sts.DecoderConfig{EA: sts.EA11, Key: dk, ID: kid, KEN: 255, Base: sts.Base2014,
			CreditSubclasses: 1<<sts.SubWater | 1<<sts.SubWaterCurrency}}
	return &Demo{Coder: coder, Base: sts.Base2014, Credit: credit, Manage: manage, CardKey: keys.MeterKey[:]}, prov, nil
}
