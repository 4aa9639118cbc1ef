package attack

import (
	"context"
	_ "embed"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"sluice/keys"
	"sluice/kms"
	"sluice/kms/filekms"
	"sluice/meter"
	"sluice/sts"
	"sluice/voucher"
)

// The STS sample substitution and permutation tables that IEC 62055-41
// publishes for its worked example (copied from sts/testdata). A utility's
// production tables are licensed and never committed; EA07 behaves the same
// with either.
//
//go:embed testdata/sample-sta-tables.json
var staTablesJSON []byte

// Lab is the world the attacks play in: one sealed file KMS holding the
// standard key hierarchy and the STS vending keys of two supply groups, and a
// fixed clock. Every meter, card and voucher an attack needs is made from it
// the way the head-end and the factory make them.
type Lab struct {
	Seed uint64
	Now  time.Time // the lab's clock: every meter input carries it
	KM   kms.KeyManager
	// STA tables for EA07 decoders.
	Tables *sts.STATables

	// The STS supply groups: DKGA04/EA11 (the default) and a legacy
	// DKGA02/EA07 group.
	SGC04, SGC02 uint32

	opt Options
	dir string
	// vending holds the vending keys as the utility's key file gave them,
	// by KMS name, so the readout attack can search dumps for them.
	vending map[string][]byte
}

// Supply group codes of the lab's two STS groups.
const (
	labSGC04 = 600123
	labSGC02 = 600456
)

// NewLab creates the lab's KMS in a temporary directory.
func NewLab(ctx context.Context, opt Options) (*Lab, error) {
	dir, err := os.MkdirTemp("", "sluice-attack-")
	if err != nil {
		return nil, err
	}
	l := &Lab{Seed: opt.Seed, opt: opt, dir: dir, SGC04: labSGC04, SGC02: labSGC02,
		Now: time.Date(2026, 3, 4, 10, 0, 0, 0, time.UTC)}
	ok := false
	defer func() {
		if !ok {
			l.Close()
		}
	}()
	if l.Tables, err = sts.ParseSTATables(staTablesJSON); err != nil {
		return nil, fmt.Errorf("sta tables: %w", err)
	}
	now := l.Now
	// The passphrase stretch is lowered to keep the lab fast; the sealing
	// itself (AES-256-GCM) is the production code path.
	st, err := filekms.Create(filepath.Join(dir, "keys.sealed"), []byte("attack lab "+strconv.FormatUint(opt.Seed, 10)),
		filekms.Options{Time: 1, MemoryKiB: 8 << 10, Threads: 1, Rand: stream(opt.Seed, "kms"), Now: func() time.Time { return now }})
	if err != nil {
		return nil, fmt.Errorf("kms: %w", err)
	}
	l.KM = st
	if _, err := keys.Init(ctx, st, kms.Ed25519); err != nil {
		return nil, fmt.Errorf("key ceremony: %w", err)
	}
	// Vending keys as a utility's key file supplies them: the default
	// group at revisions 1 and 2 (for key changes), and a legacy group.
	rnd := stream(opt.Seed, "vending keys")
	vks := []keys.VendingKey{
		{SGC: labSGC04, KRN: 1, Kind: kms.STSDKGA04},
		{SGC: labSGC04, KRN: 2, Kind: kms.STSDKGA04},
		{SGC: labSGC02, KRN: 1, Kind: kms.STSDKGA02},
	}
	l.vending = map[string][]byte{}
	for i := range vks {
		vks[i].Key = make([]byte, vks[i].Kind.SecretSize())
		rnd.Read(vks[i].Key)
		l.vending[vks[i].Name()] = vks[i].Key
	}
	if _, err := keys.ImportVendingKeys(ctx, st, vks); err != nil {
		return nil, fmt.Errorf("import vending keys: %w", err)
	}
	ok = true
	return l, nil
}

// Close forgets the KMS and removes the lab's files.
func (l *Lab) Close() error {
	if l.KM != nil {
		l.KM.Close()
	}
	return os.RemoveAll(l.dir)
}

// Rand returns the deterministic random stream named name.
func (l *Lab) Rand(name string) io.Reader { return stream(l.Seed, name) }

// TempDir returns a fresh directory under the lab's.
func (l *Lab) TempDir(name string) (string, error) {
	return os.MkdirTemp(l.dir, name+"-")
}

// PAN returns the STS PAN of a lab meter: IIN 600727, the meter ID as the
// 11-digit DRN, and the Luhn digit.
func PAN(meterID uint64) sts.PAN {
	s := fmt.Sprintf("600727%011d", meterID%100_000_000_000)
	d, _ := sts.LuhnDigit(s)
	return sts.PAN(s + strconv.Itoa(d))
}

// STSGroup describes the STS identity a lab meter is given.
type STSGroup struct {
	SGC  uint32
	KRN  int
	DKGA string // "04" or "02"
}

// Default04 is the default group: DKGA04 with EA11 (MISTY1).
func (l *Lab) Default04() STSGroup { return STSGroup{SGC: l.SGC04, KRN: 1, DKGA: "04"} }

// Legacy02 is the legacy group: DKGA02 with EA07 (STA).
func (l *Lab) Legacy02() STSGroup { return STSGroup{SGC: l.SGC02, KRN: 1, DKGA: "02"} }

// EA returns the group's token algorithm.
func (g STSGroup) EA() sts.EA {
	if g.DKGA == "02" {
		return sts.EA07
	}
	return sts.EA11
}

// KeyID returns the STS key identifiers of the group (credit key type 2,
// tariff index 01).
func (g STSGroup) KeyID() sts.KeyID { return sts.KeyID{KT: 2, SGC: g.SGC, TI: 1, KRN: g.KRN} }

// DecoderKey derives a meter's decoder key the way the head-end does
// (vend.KMSKeys): the vending key's PRF computed inside the KMS.
func (l *Lab) DecoderKey(ctx context.Context, g STSGroup, meterID uint64) ([]byte, error) {
	ref := kms.Ref(keys.STSVendingKey(int(g.SGC), g.KRN))
	pan := PAN(meterID)
	switch g.DKGA {
	case "04":
		msg, err := sts.DKGA04Message(g.KeyID(), pan, sts.Base2014, sts.EA11)
		if err != nil {
			return nil, err
		}
		out, err := l.KM.PRF(ctx, ref, msg)
		if err != nil {
			return nil, err
		}
		return out[:sts.EA11.KeySize()], nil
	case "02":
		cb, err := sts.ControlBlock(g.KeyID())
		if err != nil {
			return nil, err
		}
		var d [8]byte
		v := pan.Block() ^ cb
		for i := 7; i >= 0; i-- {
			d[i] = byte(v)
			v >>= 8
		}
		return l.KM.PRF(ctx, ref, d[:])
	}
	return nil, fmt.Errorf("dkga %q", g.DKGA)
}

// Coder returns the vending side's token coder for a meter.
func (l *Lab) Coder(ctx context.Context, g STSGroup, meterID uint64) (*sts.Coder, error) {
	dk, err := l.DecoderKey(ctx, g, meterID)
	if err != nil {
		return nil, err
	}
	return sts.NewCoder(g.EA(), dk, l.Tables)
}

// DecoderConfig is the STS identity a meter of group g is provisioned with.
func (l *Lab) DecoderConfig(ctx context.Context, g STSGroup, meterID uint64) (*sts.DecoderConfig, error) {
	dk, err := l.DecoderKey(ctx, g, meterID)
	if err != nil {
		return nil, err
	}
	return &sts.DecoderConfig{EA: g.EA(), Key: dk, ID: g.KeyID(), KEN: 255, Base: sts.Base2014,
		CreditSubclasses: 1<<sts.SubWater | 1<<sts.SubWaterCurrency, Tables: l.Tables}, nil
}

// LabMeter is a reference meter on its emulated EEPROM, with the keys the
// KMS derived for it.
type LabMeter struct {
	*meter.Meter
	EEPROM *meter.EEPROM
	Keys   keys.MeterKeys
	Deps   meter.Deps
}

// MeterSpec adjusts a lab meter.
type MeterSpec struct {
	STS    *STSGroup                             // nil: no keypad tokens
	Params func(p *meter.Params)                 // nil: meter.DefaultParams
	Ring   func(voucher.Keyring) voucher.Keyring // nil: the KMS's trusted keys
	// KM is the key manager the meter's keys and trusted keys come from
	// (a running head-end's, for meters that talk to it); nil: the lab's.
	KM kms.KeyManager
}

// NewMeter manufactures a meter the way the factory does: keys derived for
// it by the KMS, the public verification keys, its STS decoder key, written
// by meter.Format into a blank EEPROM; then boots it.
func (l *Lab) NewMeter(ctx context.Context, id uint64, spec MeterSpec) (*LabMeter, error) {
	km := spec.KM
	if km == nil {
		km = l.KM
	}
	mk, err := keys.DeriveMeter(ctx, km, kms.Ref(keys.MeterRoot), id, 1)
	if err != nil {
		return nil, fmt.Errorf("derive meter %d: %w", id, err)
	}
	ring, err := keys.TrustedKeys(ctx, km)
	if err != nil {
		return nil, err
	}
	if spec.Ring != nil {
		ring = spec.Ring(ring)
	}
	p := meter.DefaultParams()
	if spec.Params != nil {
		spec.Params(&p)
	}
	prov := meter.Provision{ID: id, Params: p, Keys: meter.Keys{MeterKey: mk.Card, TelemetryKey: mk.Telemetry, Trusted: ring}}
	if spec.STS != nil {
		if prov.STS, err = l.DecoderConfig(ctx, *spec.STS, id); err != nil {
			return nil, err
		}
	}
	if l.opt.Weaken != nil {
		l.opt.Weaken(&prov)
	}
	ee := meter.NewEEPROM(meter.DefaultEEPROMSize, meter.DefaultPageSize)
	if err := meter.Format(ee, prov); err != nil {
		return nil, fmt.Errorf("format meter %d: %w", id, err)
	}
	deps := meter.Deps{STATables: l.Tables, Rand: l.Rand(fmt.Sprintf("meter %d", id))}
	m, err := meter.Boot(ee, deps)
	if err != nil {
		return nil, fmt.Errorf("boot meter %d: %w", id, err)
	}
	return &LabMeter{Meter: m, EEPROM: ee, Keys: mk, Deps: deps}, nil
}

// Reboot powers the meter off and on: it boots again from its EEPROM.
func (m *LabMeter) Reboot() error {
	b, err := meter.Boot(m.EEPROM, m.Deps)
	if err != nil {
		return err
	}
	m.Meter = b
	return nil
}

// CreditVoucher signs a credit voucher with the KMS's credit key, as the
// head-end does for a purchase.
func (l *Lab) CreditVoucher(ctx context.Context, meterID uint64, seq uint32, litres uint32) ([]byte, error) {
	s, err := keys.VoucherSigner(ctx, l.KM, voucher.KindCredit)
	if err != nil {
		return nil, err
	}
	return voucher.Sign(&voucher.Voucher{Kind: voucher.KindCredit, MeterID: meterID, Sequence: seq,
		Issued: l.Now.Add(-time.Hour), Expires: l.Now.Add(30 * 24 * time.Hour), Unit: voucher.UnitLitres, Quantity: litres}, s)
}
