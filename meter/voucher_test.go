package meter

import (
	"crypto/ed25519"
	"testing"
	"time"

	"sluice/voucher"
)

func TestVoucherCredit(t *testing.T) {
	r := newRig(t, DefaultParams(), Deps{}, nil)
	if r.m.Snapshot().Status&ValveClosed == 0 {
		t.Fatal("a new meter with no credit has its valve open")
	}
	v := r.creditVoucher(2500)
	rc := r.load(t0, v)
	if rc.Status != Loaded || rc.Amount != 2500 || rc.Credit != 2500 || rc.Loaded != 2500 || rc.Seq != 1 || rc.MeterID != testMeterID {
		t.Fatalf("receipt %+v", rc)
	}
	sn := r.m.Snapshot()
	if sn.Credit != 2500 || sn.Status&ValveClosed != 0 || sn.VoucherSeq != 1 {
		t.Fatalf("after load: %+v", sn)
	}
	if !r.hasEvent(EvVoucherAccepted, 0) || !r.hasEvent(EvValveOpened, 0) {
		t.Errorf("events: %v", r.m.Events(0))
	}

	// The same voucher again: nothing added, and a Duplicate receipt so a
	// card can retire it.
	rc, err := r.m.LoadVoucher(t0, v, FromCard)
	wantErr(t, err, ErrUsed)
	if rc.Status != Duplicate || rc.Amount != 0 || rc.Credit != 2500 {
		t.Fatalf("duplicate receipt %+v", rc)
	}
	if ev := r.lastEvent(); ev.Kind != EvVoucherRejected || ev.Reason != ReasonUsed {
		t.Errorf("last event %v", ev)
	}

	// The receipt verifies under the telemetry key and nothing else.
	b, _ := rc.MarshalBinary()
	got, err := OpenReceipt(b, testKeys().TelemetryKey)
	if err != nil || got != rc {
		t.Fatalf("OpenReceipt = %+v, %v; want %+v", got, err, rc)
	}
	for i := range b {
		bad := append([]byte(nil), b...)
		bad[i] ^= 0x80
		if _, err := OpenReceipt(bad, testKeys().TelemetryKey); err == nil {
			t.Fatalf("receipt with byte %d flipped verifies", i)
		}
	}
}

// TestVoucherSequenceWindow: vouchers are accepted once each, in any order
// within the window; older ones are refused as old.
func TestVoucherSequenceWindow(t *testing.T) {
	r := newRig(t, DefaultParams(), Deps{}, nil)
	mk := func(seq uint32) []byte {
		return r.sign(voucher.Voucher{Kind: voucher.KindCredit, Unit: voucher.UnitLitres, Quantity: 10, Sequence: seq})
	}
	early := mk(5)
	r.load(t0, mk(100))
	r.load(t0, mk(40)) // 60 below: inside the window
	if _, err := r.m.LoadVoucher(t0, mk(40), FromCard); err == nil {
		t.Fatal("voucher 40 accepted twice")
	}
	_, err := r.m.LoadVoucher(t0, early, FromCard)
	wantErr(t, err, ErrOld)
	r.load(t0, mk(101))
	r.load(t0, mk(99))
	for _, q := range []uint32{99, 100, 101} {
		_, err := r.m.LoadVoucher(t0, mk(q), FromRemote)
		wantErr(t, err, ErrUsed)
	}
	r.load(t0, mk(300)) // a jump beyond the window forgets the rest
	_, err = r.m.LoadVoucher(t0, mk(101), FromRemote)
	wantErr(t, err, ErrOld)
	if c := r.m.Snapshot().Credit; c != 50 {
		t.Errorf("credit %d, want 50", c)
	}
}

func TestVoucherRejections(t *testing.T) {
	r := newRig(t, DefaultParams(), Deps{}, nil)
	good := r.creditVoucher(100)
	flipped := append([]byte(nil), good...)
	flipped[len(flipped)-1] ^= 1
	other := r.sign(voucher.Voucher{Kind: voucher.KindCredit, Unit: voucher.UnitLitres, Quantity: 100, MeterID: testMeterID + 1})
	expired := r.sign(voucher.Voucher{Kind: voucher.KindCredit, Unit: voucher.UnitLitres, Quantity: 100,
		Issued: t0.Add(-48 * time.Hour), Expires: t0.Add(-time.Hour)})
	currency := r.sign(voucher.Voucher{Kind: voucher.KindCredit, Unit: voucher.UnitMinor, Quantity: 100})
	byCreditKey := func() []byte {
		v := voucher.Voucher{Kind: voucher.KindClearTamper, MeterID: testMeterID, Sequence: 77, Issued: t0, Expires: t0.Add(time.Hour), TamperMask: 1}
		b, err := voucher.Sign(&v, r.credit)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}()
	unknownKey := func() []byte {
		v := voucher.Voucher{Kind: voucher.KindCredit, MeterID: testMeterID, Sequence: 78, Issued: t0, Expires: t0.Add(time.Hour), Unit: voucher.UnitLitres, Quantity: 9999}
		b, err := voucher.Sign(&v, testKey("stolen vending point"))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}()
	cases := []struct {
		name string
		b    []byte
		want error
	}{
		{"empty", nil, ErrFormat},
		{"truncated", good[:40], ErrFormat},
		{"signature flipped", flipped, ErrSignature},
		{"another meter", other, ErrWrongMeter},
		{"expired", expired, ErrExpired},
		{"currency voucher on a litre meter", currency, ErrUnit},
		{"engineering voucher signed by the credit key", byCreditKey, ErrSignature},
		{"untrusted signer", unknownKey, ErrSignature},
	}
	for _, c := range cases {
		before := r.m.Snapshot()
		rc, err := r.m.LoadVoucher(t0, c.b, FromCard)
		wantErr(t, err, c.want)
		after := r.m.Snapshot()
		if after.Credit != before.Credit || after.Loaded != before.Loaded || after.VoucherSeq != before.VoucherSeq {
			t.Errorf("%s: rejected voucher changed credit: %+v -> %+v", c.name, before, after)
		}
		if rc.Status != Rejected || rc.Reason != ReasonOf(c.want) {
			t.Errorf("%s: receipt %+v", c.name, rc)
		}
		if ev := r.m.Events(before.EventSeq); len(ev) == 0 || ev[0].Kind != EvVoucherRejected || ev[0].Reason != ReasonOf(c.want) {
			t.Errorf("%s: events %v", c.name, ev)
		}
	}
	// A good voucher still loads after all that.
	r.load(t0, good)
}

func TestEngineeringVouchers(t *testing.T) {
	r := newRig(t, DefaultParams(), Deps{}, nil)
	r.load(t0, r.creditVoucher(5000))
	eng := func(v voucher.Voucher) {
		t.Helper()
		if _, err := r.m.LoadVoucher(t0, r.sign(v), FromCard); err != nil {
			t.Fatalf("%v: %v", v.Kind, err)
		}
	}
	set := func(p uint16, val uint32) {
		t.Helper()
		eng(voucher.Voucher{Kind: voucher.KindSetParameter, Param: p, Value: val})
	}

	if err := r.m.Sense(t0, TamperMagnet|TamperCover); err != nil {
		t.Fatal(err)
	}
	eng(voucher.Voucher{Kind: voucher.KindClearTamper, TamperMask: uint32(TamperMagnet)})
	if tp := r.m.Snapshot().Tamper; tp != TamperCover {
		t.Fatalf("tamper after clearing magnet: %v", tp)
	}

	set(ParamLowCredit, 7000)
	set(ParamEmergencyCredit, 900)
	set(ParamFriendlyLimit, 0)
	set(ParamNight, 22*60<<16|5*60)
	set(ParamWeekend, 1<<time.Sunday)
	set(ParamAddHoliday, uint32(DayOf(2026, 12, 25)))
	set(ParamReverseLimit, 9)
	set(ParamCloseOnTamper, 1)
	set(ParamUTCOffset, uint32(0xFFFFFF88)) // -120
	p := r.m.Params()
	if p.LowCredit != 7000 || p.EmergencyCredit != 900 || p.FriendlyLimit != 0 || p.NightStart != 22*60 || p.NightEnd != 5*60 ||
		p.Weekend != 1<<time.Sunday || len(p.Holidays) != 1 || p.ReverseLimit != 9 || !p.CloseOnTamper || p.UTCOffset != -120 {
		t.Fatalf("params %+v", p)
	}
	// CloseOnTamper with the cover tamper still latched closed the valve.
	if st := r.m.Snapshot().Status; st&ClosedTamper == 0 {
		t.Fatalf("status %06b: CloseOnTamper did not close on the latched cover tamper", st)
	}
	eng(voucher.Voucher{Kind: voucher.KindClearTamper, TamperMask: 0xFFFFFFFF})
	set(ParamValve, 1)
	if st := r.m.Snapshot().Status; st&ClosedRemote == 0 || st&ValveClosed == 0 {
		t.Fatalf("status %06b after remote close", st)
	}
	set(ParamValve, 0)
	set(ParamClearCredit, 0)
	if sn := r.m.Snapshot(); sn.Credit != 0 || sn.Status&ValveClosed == 0 {
		t.Fatalf("after clear credit: %+v", sn)
	}
	for _, bad := range []struct {
		p uint16
		v uint32
	}{{ParamNight, 25 * 60 << 16}, {ParamWeekend, 0x80}, {ParamUTCOffset, 15 * 60}, {999, 1}, {ParamValve, 2}} {
		_, err := r.m.LoadVoucher(t0, r.sign(voucher.Voucher{Kind: voucher.KindSetParameter, Param: bad.p, Value: bad.v}), FromCard)
		if err == nil {
			t.Errorf("parameter %d = %d accepted", bad.p, bad.v)
		}
	}
	if p2 := r.m.Params(); p2.NightStart != 22*60 || p2.Weekend != 1<<time.Sunday || p2.UTCOffset != -120 {
		t.Errorf("refused settings changed params: %+v", p2)
	}
}

// TestVoucherKeyChange rotates the credit key: vouchers under the new key
// load, vouchers under the retired key no longer do, and the change
// survives a reboot.
func TestVoucherKeyChange(t *testing.T) {
	r := newRig(t, DefaultParams(), Deps{}, nil)
	oldCredit := r.credit
	newCredit := testKey("credit 2027")
	kc := func(retire uint32, slot voucher.Role, pub ed25519.PublicKey) error {
		_, err := r.m.LoadVoucher(t0, r.sign(voucher.Voucher{Kind: voucher.KindKeyChange, Slot: slot, NewKey: pub, Retire: retire}), FromRemote)
		return err
	}
	if err := kc(voucher.KeyID(oldCredit.Public().(ed25519.PublicKey)), voucher.RoleCredit, newCredit.Public().(ed25519.PublicKey)); err != nil {
		t.Fatal(err)
	}
	if ev := r.m.Events(0); !r.hasEvent(EvKeyChanged, 0) {
		t.Fatalf("no key-changed event: %v", ev)
	}
	r.boot()
	_, err := r.m.LoadVoucher(t0, r.creditVoucher(10), FromRemote)
	wantErr(t, err, ErrSignature)
	r.credit = newCredit
	r.load(t0, r.creditVoucher(10))

	// Retiring a key the meter does not hold, or filling the ring, is refused.
	wantErr(t, kc(0xdeadbeef, voucher.RoleCredit, testKey("x").Public().(ed25519.PublicKey)), ErrKey)
	for i, name := range []string{"a", "b"} {
		if err := kc(0, voucher.RoleManagement, testKey(name).Public().(ed25519.PublicKey)); err != nil {
			t.Fatalf("adding key %d: %v", i, err)
		}
	}
	wantErr(t, kc(0, voucher.RoleManagement, testKey("c").Public().(ed25519.PublicKey)), ErrKey)
}

// TestWindowAgainstModel checks the sequence window against a plain set:
// each number is accepted at most once, and a number is refused as old
// only when it is more than VoucherWindow below the newest.
func TestWindowAgainstModel(t *testing.T) {
	var w Window
	seen := map[uint32]bool{}
	max := uint32(0)
	x := uint64(12345)
	for i := 0; i < 20000; i++ {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		q := max + 8 - uint32(x%100) // mostly just below the top, sometimes above
		if q == 0 || q > 1<<31 {
			continue
		}
		err := w.Check(q)
		switch {
		case seen[q] && err == nil:
			t.Fatalf("sequence %d accepted twice", q)
		case !seen[q] && q+VoucherWindow >= max && err != nil:
			t.Fatalf("fresh sequence %d (max %d) refused: %v", q, max, err)
		}
		if err == nil {
			w.Accept(q)
			seen[q] = true
			if q > max {
				max = q
			}
		}
	}
}

// TestRejectionFloods: a flood of the same bad downlink writes once; forged
// vouchers on a card latch the card-port tamper like failed authentications.
func TestRejectionFloods(t *testing.T) {
	r := newRig(t, DefaultParams(), Deps{}, nil)
	forged := r.creditVoucher(100)
	forged[40] ^= 1
	if _, err := r.m.LoadVoucher(t0, forged, FromRemote); err == nil {
		t.Fatal("forged voucher accepted")
	}
	w, ev := r.ee.Writes(), r.m.Snapshot().EventSeq
	for i := 0; i < 100; i++ {
		rc, err := r.m.LoadVoucher(t0, forged, FromRemote)
		wantErr(t, err, ErrSignature)
		if rc.Status != Rejected || rc.Reason != ReasonSignature {
			t.Fatalf("receipt %+v", rc)
		}
	}
	if r.ee.Writes() != w || r.m.Snapshot().EventSeq != ev {
		t.Fatalf("100 identical bad downlinks wrote %d bytes, %d events", r.ee.Writes()-w, r.m.Snapshot().EventSeq-ev)
	}
	for i := 0; i < cardFailLimit; i++ {
		_, err := r.m.LoadVoucher(t0, forged, FromCard)
		wantErr(t, err, ErrSignature)
	}
	if tp := r.m.Snapshot().Tamper; tp&TamperCardPort == 0 {
		t.Fatalf("tamper %v after %d forged card vouchers", tp, cardFailLimit)
	}
}
