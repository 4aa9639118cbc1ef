package meter

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"fmt"
	"testing"

	"sluice/provision"
	"sluice/sts"
)

// provisioningHeadEnd is the head-end's provisioning service for the tests:
// per-meter keys derived from a label (the KMS in production) and records
// signed with a management key.
type provisioningHeadEnd struct {
	t       testing.TB
	mgmt    ed25519.PrivateKey
	version int // bumps every derived key, to play a key rotation
	counter uint32
	noSTS   bool // derive no STS decoder key
}

func (h *provisioningHeadEnd) derive(_ context.Context, id uint64) ([]provision.Key, error) {
	k := func(kind provision.KeyKind) provision.Key {
		s := sha256.Sum256([]byte(fmt.Sprintf("meter %d key %v version %d", id, kind, h.version)))
		return provision.Key{Kind: kind, RootVersion: 1, Version: uint16(h.version + 1), Secret: s[:16]}
	}
	ks := []provision.Key{k(provision.KeyCard), k(provision.KeyTelemetry), k(provision.KeyWMBus)}
	if !h.noSTS {
		ks = append(ks, k(provision.KeySTSDecoder))
	}
	return ks, nil
}

// record answers the meter's request with the next record, installing
// nextMgmt (or keeping the current management key).
func (h *provisioningHeadEnd) record(req []byte, nextMgmt ed25519.PrivateKey) []byte {
	h.t.Helper()
	q, err := provision.ParseRequest(req)
	if err != nil {
		h.t.Fatal(err)
	}
	svc, err := provision.NewService(h.mgmt, h.derive)
	if err != nil {
		h.t.Fatal(err)
	}
	if nextMgmt == nil {
		nextMgmt = h.mgmt
	}
	h.counter++
	rec, err := svc.Provision(context.Background(), q, provision.Params{Counter: h.counter, Trust: provision.Trust{
		Credit: testKey("credit").Public().(ed25519.PublicKey), Management: nextMgmt.Public().(ed25519.PublicKey),
		Firmware: testKey("firmware").Public()}})
	if err != nil {
		h.t.Fatal(err)
	}
	h.mgmt = nextMgmt
	return rec
}

func (h *provisioningHeadEnd) key(id uint64, kind provision.KeyKind) []byte {
	ks, _ := h.derive(nil, id)
	for _, k := range ks {
		if k.Kind == kind {
			return k.Secret
		}
	}
	return nil
}

// factoryRig is a meter from the factory station: device keys, the
// firmware's management anchor, an STS keypad waiting for its key.
func factoryRig(t testing.TB) (*rig, *provisioningHeadEnd) {
	t.Helper()
	h := &provisioningHeadEnd{t: t, mgmt: testKey("provisioning management")}
	seed := sha256.Sum256([]byte("factory station"))
	dev, err := provision.NewDevice(bytes.NewReader(append(seed[:], seed[:]...)), testMeterID, "SLW-15")
	if err != nil {
		t.Fatal(err)
	}
	r := &rig{t: t, ee: NewEEPROM(DefaultEEPROMSize, DefaultPageSize), credit: testKey("credit"), manage: h.mgmt}
	cfg := newVend(t, "unused").cfg
	if err := FormatFactory(r.ee, Factory{Params: DefaultParams(), Device: dev, Anchor: h.mgmt.Public().(ed25519.PublicKey), STS: &cfg}); err != nil {
		t.Fatal(err)
	}
	r.boot()
	return r, h
}

func TestProvisioning(t *testing.T) {
	r, h := factoryRig(t)
	if r.m.Ready() {
		t.Fatal("a factory meter is ready before provisioning")
	}
	_, err := r.m.LoadVoucher(t0, r.creditVoucher(100), FromRemote)
	wantErr(t, err, ErrNotProvisioned)
	_, err = r.m.EnterToken(t0, "12345678901234567890")
	wantErr(t, err, ErrNotProvisioned)
	if err := Format(r.ee, Provision{ID: 1, Params: DefaultParams()}); err == nil {
		t.Fatal("a factory meter was formatted again")
	}

	req, err := r.m.ProvisioningRequest()
	if err != nil {
		t.Fatal(err)
	}
	rec := h.record(req, nil)
	if err := r.m.Provision(t0, rec); err != nil {
		t.Fatal(err)
	}
	r.boot()
	if !r.m.Ready() || r.lastEvent().Kind != EvProvisioned {
		t.Fatalf("after provisioning: ready %v, events %v", r.m.Ready(), r.m.Events(0))
	}
	if !bytes.Equal(r.m.CardKey(), h.key(testMeterID, provision.KeyCard)) {
		t.Fatal("card key not installed")
	}
	// Vouchers under the record's credit key load; STS tokens under the
	// provisioned decoder key too.
	r.load(t0, r.creditVoucher(1000))
	stsKey := h.key(testMeterID, provision.KeySTSDecoder)
	coder, err := sts.NewEA11(stsKey)
	if err != nil {
		t.Fatal(err)
	}
	tid, _ := sts.TIDAt(sts.Base2014, t0)
	tok, _ := coder.Credit(sts.SubWater, 0, tid, 5)
	if _, err := r.m.EnterToken(t0, tok.String()); err != nil {
		t.Fatalf("token under the provisioned key: %v", err)
	}

	// The same record again, or one for another device, is refused.
	err = r.m.Provision(t0, rec)
	wantErr(t, err, ErrUsed)
	if ev := r.lastEvent(); ev.Kind != EvProvisionRefused || ev.Reason != ReasonUsed {
		t.Fatalf("last event %v", ev)
	}
	otherDev, _ := provision.NewDevice(bytes.NewReader(make([]byte, 64)), testMeterID, "SLW-15")
	if err := r.m.Provision(t0, h.record(otherDev.Request(), nil)); err == nil {
		t.Fatal("a record for another device was accepted")
	}

	// A record without an STS key cannot bring a keypad meter alive with
	// the factory's zero decoder key.
	r2, h2 := factoryRig(t)
	h2.noSTS = true
	req2, _ := r2.m.ProvisioningRequest()
	err = r2.m.Provision(t0, h2.record(req2, nil))
	wantErr(t, err, ErrFormat)
	if r2.m.Ready() {
		t.Fatal("keypad meter ready without an STS key")
	}

	// Re-provisioning rotates the keys and the management key; the same
	// STS key keeps the TID memory, so the used token stays used.
	oldCard := r.m.CardKey()
	nextMgmt := testKey("provisioning management 2")
	h.version++
	rec2 := h.record(req, nextMgmt)
	if err := r.m.Provision(t0, rec2); err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(r.m.CardKey(), oldCard) || bytes.Contains(r.ee.Image(), oldCard) {
		t.Fatal("the old card key survived re-provisioning")
	}
	h.version-- // the STS key of version 0 again: decoder state kept
	if err := r.m.Provision(t0, h.record(req, nil)); err != nil {
		t.Fatal(err)
	}
	_, err = r.m.EnterToken(t0, tok.String())
	wantErr(t, err, ErrUsed)
	if c := r.m.Snapshot().Credit; c != 1500 {
		t.Fatalf("credit %d", c)
	}
	// A record signed by the retired management key is refused.
	h.mgmt = testKey("provisioning management")
	err = r.m.Provision(t0, h.record(req, nil))
	wantErr(t, err, ErrSignature)
}

// TestPowerCutProvisioning cuts the power at every byte of a first
// provisioning and of a re-provisioning.
func TestPowerCutProvisioning(t *testing.T) {
	r, h := factoryRig(t)
	req, err := r.m.ProvisioningRequest()
	if err != nil {
		t.Fatal(err)
	}
	rec := h.record(req, nil)
	cutEveryByte(t, r, func(m *Meter) error { return m.Provision(t0, rec) }, true, func(t *testing.T, m *Meter) {
		if !m.Ready() || !bytes.Equal(m.CardKey(), h.key(testMeterID, provision.KeyCard)) {
			t.Fatal("not provisioned with the record's keys")
		}
	})
	// cutEveryByte left r's meter provisioned by its uncut run.
	h.version++
	rec2 := h.record(req, testKey("provisioning management 2"))
	cutEveryByte(t, r, func(m *Meter) error { return m.Provision(t0, rec2) }, true, func(t *testing.T, m *Meter) {
		if !bytes.Equal(m.CardKey(), h.key(testMeterID, provision.KeyCard)) {
			t.Fatal("not re-provisioned with the new keys")
		}
	})
}

// FuzzProvision offers arbitrary bytes as a provisioning record to a
// factory meter: no panic, and no keys unless the record verifies (only
// the seed can).
func FuzzProvision(f *testing.F) {
	r, h := factoryRig(f)
	req, err := r.m.ProvisioningRequest()
	if err != nil {
		f.Fatal(err)
	}
	good := h.record(req, nil)
	f.Add(good)
	f.Add(good[:len(good)-1])
	f.Add([]byte("SLPR\x01"))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, _ := factoryRig(t)
		if err := r.m.Provision(t0, b); err != nil {
			if r.m.Ready() {
				t.Fatal("refused record left the meter ready")
			}
			return
		}
		if !bytes.Equal(b, good) {
			t.Fatal("a record other than the head-end's was accepted")
		}
	})
}
