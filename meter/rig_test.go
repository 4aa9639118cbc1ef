package meter

import (
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"testing"
	"time"

	"sluice/sts"
	"sluice/voucher"
)

// t0 is a Monday, 10:00 UTC: outside every default friendly period.
var t0 = time.Date(2026, time.March, 2, 10, 0, 0, 0, time.UTC)

const testMeterID = 4710001

func testKey(label string) ed25519.PrivateKey {
	seed := sha256.Sum256([]byte("sluice meter test " + label))
	return ed25519.NewKeyFromSeed(seed[:])
}

// rig is a meter on an emulated EEPROM with the head-end's signing keys.
type rig struct {
	t      testing.TB
	ee     *EEPROM
	m      *Meter
	credit ed25519.PrivateKey
	manage ed25519.PrivateKey
	deps   Deps
	seq    uint32
}

func testKeys() Keys {
	var k Keys
	copy(k.MeterKey[:], "meter-key-471000")
	copy(k.TelemetryKey[:], "telemetry-key-47")
	k.Trusted = voucher.Keyring{
		{Role: voucher.RoleCredit, Public: testKey("credit").Public().(ed25519.PublicKey)},
		{Role: voucher.RoleManagement, Public: testKey("manage").Public().(ed25519.PublicKey)},
	}
	return k
}

func newRig(t testing.TB, p Params, deps Deps, stsCfg *sts.DecoderConfig) *rig {
	t.Helper()
	r := &rig{t: t, ee: NewEEPROM(DefaultEEPROMSize, DefaultPageSize), credit: testKey("credit"), manage: testKey("manage"), deps: deps}
	if err := Format(r.ee, Provision{ID: testMeterID, Params: p, Keys: testKeys(), STS: stsCfg}); err != nil {
		t.Fatal(err)
	}
	r.boot()
	return r
}

func (r *rig) boot() {
	r.t.Helper()
	r.ee.PowerOn()
	m, err := Boot(r.ee, r.deps)
	if err != nil {
		r.t.Fatalf("boot: %v", err)
	}
	r.m = m
}

// sign signs v after filling in the meter, a fresh sequence number (unless
// set) and a validity period around t0.
func (r *rig) sign(v voucher.Voucher) []byte {
	r.t.Helper()
	if v.MeterID == 0 {
		v.MeterID = testMeterID
	}
	if v.Sequence == 0 {
		r.seq++
		v.Sequence = r.seq
	}
	if v.Issued.IsZero() {
		v.Issued = t0.Add(-time.Hour)
	}
	if v.Expires.IsZero() {
		v.Expires = t0.Add(30 * 24 * time.Hour)
	}
	key := r.manage
	if v.Kind == voucher.KindCredit {
		key = r.credit
	}
	b, err := voucher.Sign(&v, key)
	if err != nil {
		r.t.Fatal(err)
	}
	return b
}

func (r *rig) creditVoucher(litres uint32) []byte {
	return r.sign(voucher.Voucher{Kind: voucher.KindCredit, Unit: voucher.UnitLitres, Quantity: litres})
}

func (r *rig) load(now time.Time, b []byte) Receipt {
	r.t.Helper()
	rc, err := r.m.LoadVoucher(now, b, FromRemote)
	if err != nil {
		r.t.Fatalf("LoadVoucher: %v", err)
	}
	return rc
}

func (r *rig) tick(now time.Time, fwd, rev uint32) {
	r.t.Helper()
	if err := r.m.Tick(now, fwd, rev); err != nil {
		r.t.Fatalf("Tick: %v", err)
	}
}

func (r *rig) lastEvent() Event {
	ev := r.m.Events(0)
	if len(ev) == 0 {
		return Event{}
	}
	return ev[len(ev)-1]
}

func (r *rig) hasEvent(k EventKind, since uint32) bool {
	for _, e := range r.m.Events(since) {
		if e.Kind == k {
			return true
		}
	}
	return false
}

func wantErr(t testing.TB, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("error = %v, want %v", err, target)
	}
}

// vend is the vending side of STS for the test meter: a decoder key
// derived with DKGA04 from a supply group's vending key, and the coder that
// seals tokens under it.
type vend struct {
	t     testing.TB
	cfg   sts.DecoderConfig
	coder *sts.Coder
	tid   uint32
}

var testKeyID = sts.KeyID{KT: 2, SGC: 600727, TI: 1, KRN: 1}

func newVend(t testing.TB, vendingKeyLabel string) *vend {
	t.Helper()
	vk := sha256.Sum256([]byte(vendingKeyLabel))
	pan, err := sts.ParsePAN("600727000000000009")
	if err != nil {
		t.Fatal(err)
	}
	key, err := sts.DKGA04(vk[:20], testKeyID, pan, sts.Base2014, sts.EA11)
	if err != nil {
		t.Fatal(err)
	}
	c, err := sts.NewEA11(key)
	if err != nil {
		t.Fatal(err)
	}
	tid, err := sts.TIDAt(sts.Base2014, t0)
	if err != nil {
		t.Fatal(err)
	}
	return &vend{t: t, coder: c, tid: tid, cfg: sts.DecoderConfig{EA: sts.EA11, Key: key, ID: testKeyID, KEN: 255, Base: sts.Base2014,
		CreditSubclasses: 1<<sts.SubWater | 1<<sts.SubWaterCurrency}}
}

func (v *vend) next() uint32 { v.tid++; return v.tid }

// credit returns a water token for litres (a multiple of 100: 0.1 m3).
func (v *vend) credit(litres uint64) string {
	v.t.Helper()
	tok, err := v.coder.Credit(sts.SubWater, 0, v.next(), litres/100)
	if err != nil {
		v.t.Fatal(err)
	}
	return tok.String()
}

func (v *vend) management(sub uint8, value uint16) string {
	v.t.Helper()
	tok, err := v.coder.Management(sub, 0, v.next(), value)
	if err != nil {
		v.t.Fatal(err)
	}
	return tok.String()
}

// keyChange returns the 4 tokens moving the meter to newKey and switches
// the vending side to it.
func (v *vend) keyChange(newKey []byte) []string {
	v.t.Helper()
	toks, err := v.coder.KeyChange(sts.KeyChange{NewKey: newKey, KEN: 255, KRN: 2, KT: 2, TI: 1, SGC: testKeyID.SGC})
	if err != nil {
		v.t.Fatal(err)
	}
	var out []string
	for _, tk := range toks {
		out = append(out, tk.String())
	}
	if v.coder, err = sts.NewEA11(newKey); err != nil {
		v.t.Fatal(err)
	}
	return out
}

// stsRig is a rig with an STS decoder provisioned from v.
func stsRig(t testing.TB, p Params, v *vend) *rig {
	t.Helper()
	cfg := v.cfg
	return newRig(t, p, Deps{}, &cfg)
}
