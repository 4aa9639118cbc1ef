package meter

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"sluice/sts"
)

func TestTokenCredit(t *testing.T) {
	v := newVend(t, "supply group 600727")
	r := stsRig(t, DefaultParams(), v)
	tok := v.credit(2500)
	d, err := r.m.Keypad(t0, tok[:4]+" "+tok[4:8]+"-"+tok[8:])
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(d.Text, "+2500") {
		t.Errorf("display %q", d.Text)
	}
	sn := r.m.Snapshot()
	if sn.Credit != 2500 || sn.Loaded != 2500 || sn.Failures != 0 || sn.Status&ValveClosed != 0 {
		t.Fatalf("after token: %+v", sn)
	}
	if ev := r.m.Events(0); len(ev) != 2 || ev[0].Kind != EvTokenAccepted || ev[0].Value != 2500 || ev[1].Kind != EvValveOpened {
		t.Errorf("events %v, want the acceptance, then the valve opening", ev)
	}

	// Replay: refused, nothing added, and not counted towards lockout
	// (the customer typed a token they really had).
	_, err = r.m.EnterToken(t0, tok)
	wantErr(t, err, ErrUsed)
	if sn := r.m.Snapshot(); sn.Credit != 2500 || sn.Failures != 0 {
		t.Fatalf("after replay: %+v", sn)
	}
	// Replay after a power cycle: the TID memory is in the journal.
	r.boot()
	_, err = r.m.EnterToken(t0, tok)
	wantErr(t, err, ErrUsed)

	// Another meter's token fails the CRC and counts.
	other := newVend(t, "another supply group")
	_, err = r.m.EnterToken(t0, other.credit(1000))
	wantErr(t, err, ErrCRC)
	if ev := r.lastEvent(); ev.Kind != EvTokenRejected || ev.Reason != ReasonCRC {
		t.Errorf("last event %v", ev)
	}
	if sn := r.m.Snapshot(); sn.Credit != 2500 || sn.Failures != 1 {
		t.Fatalf("after foreign token: %+v", sn)
	}

	// A currency token on a litre meter: a real token, the wrong unit.
	cur, err := v.coder.Credit(sts.SubWaterCurrency, 0, v.next(), 500)
	if err != nil {
		t.Fatal(err)
	}
	_, err = r.m.EnterToken(t0, cur.String())
	wantErr(t, err, ErrUnit)

	// Management tokens.
	if err := r.m.Sense(t0, TamperMagnet); err != nil {
		t.Fatal(err)
	}
	if out, err := r.m.EnterToken(t0, v.management(sts.SubClearTamper, 0)); err != nil || out.Kind != TokenClearTamper {
		t.Fatalf("clear tamper: %+v %v", out, err)
	}
	if sn := r.m.Snapshot(); sn.Tamper != 0 || sn.Failures != 0 {
		t.Fatalf("after clear tamper: %+v", sn)
	}
	if out, err := r.m.EnterToken(t0, v.management(sts.SubClearCredit, 0)); err != nil || out.Kind != TokenClearCredit {
		t.Fatalf("clear credit: %+v %v", out, err)
	}
	if sn := r.m.Snapshot(); sn.Credit != 0 || sn.Status&ValveClosed == 0 {
		t.Fatalf("after clear credit: %+v", sn)
	}
	if out, err := r.m.EnterToken(t0, v.management(sts.SubSetWaterMeterFactor, 250)); err != nil || out.Param != ParamPulseWeight {
		t.Fatalf("water meter factor: %+v %v", out, err)
	}
	if p := r.m.Params(); p.PulseML != 250 {
		t.Fatalf("pulse weight %d mL after the water meter factor token", p.PulseML)
	}
	_, err = r.m.EnterToken(t0, v.management(sts.SubSetWaterMeterFactor, 0))
	wantErr(t, err, ErrFormat)
	_, err = r.m.EnterToken(t0, v.management(sts.SubSetMaxPowerLimit, 10))
	wantErr(t, err, ErrUnsupported)
}

func TestCurrencyMeterTokens(t *testing.T) {
	v := newVend(t, "supply group 600727")
	p := DefaultParams()
	p.Unit, p.Price, p.LowCredit = Minor, 2500, 100
	r := stsRig(t, p, v)
	cur, err := v.coder.Credit(sts.SubWaterCurrency, 0, v.next(), 5000) // 50.00
	if err != nil {
		t.Fatal(err)
	}
	if out, err := r.m.EnterToken(t0, cur.String()); err != nil || out.Amount != 5000 || out.Unit != Minor {
		t.Fatalf("currency token: %+v %v", out, err)
	}
	r.tick(t0, 1000, 0) // 1 m3 at 25.00
	if c := r.m.Snapshot().Credit; c != 2500 {
		t.Fatalf("credit %d after 1 m3 at 2500/m3", c)
	}
	if out, err := r.m.EnterToken(t0, v.management(sts.SubSetTariffRate, 3000)); err != nil || out.Kind != TokenSetting {
		t.Fatalf("tariff rate: %+v %v", out, err)
	}
	if p := r.m.Params(); p.Price != 3000 {
		t.Fatalf("price %d", p.Price)
	}
	_, err = r.m.EnterToken(t0, v.credit(1000))
	wantErr(t, err, ErrUnit)
}

// TestKeypadLockout: free tries, then doubling lockouts that a power cycle
// does not reset, and that a test token (which anyone can make) does not
// lift; a good token does.
func TestKeypadLockout(t *testing.T) {
	v := newVend(t, "supply group 600727")
	r := stsRig(t, DefaultParams(), v) // 5 free, then 60 s doubling
	guesser := newVend(t, "guess")
	now := t0
	for i := 1; i <= 5; i++ {
		_, err := r.m.EnterToken(now, guesser.credit(100))
		wantErr(t, err, ErrCRC)
		if sn := r.m.Snapshot(); sn.Failures != uint16(i) || !sn.LockedUntil.IsZero() {
			t.Fatalf("after %d rejections: %+v", i, sn)
		}
	}
	lock := []time.Duration{time.Minute, 2 * time.Minute, 4 * time.Minute, 8 * time.Minute}
	for i, d := range lock {
		_, err := r.m.EnterToken(now, guesser.credit(100))
		wantErr(t, err, ErrCRC)
		if ev := r.lastEvent(); ev.Kind != EvLockout || ev.Value != int64(d/time.Second) {
			t.Fatalf("rejection %d: last event %v, want lockout %v", 6+i, ev, d)
		}
		// Locked: a good token is refused without being looked at.
		before := r.m.Snapshot()
		_, err = r.m.EnterToken(now.Add(d-time.Second), v.credit(100))
		wantErr(t, err, ErrLocked)
		if d, _ := r.m.Keypad(now.Add(d-time.Second), v.credit(100)); !strings.HasPrefix(d.Text, "Locked") {
			t.Errorf("display %q", d.Text)
		}
		// A power cycle does not help.
		r.boot()
		_, err = r.m.EnterToken(now.Add(d-time.Second), guesser.credit(100))
		wantErr(t, err, ErrLocked)
		if after := r.m.Snapshot(); after != before {
			t.Fatalf("a locked-out entry changed state: %+v -> %+v", before, after)
		}
		now = now.Add(d)
	}
	// A test token is accepted but does not lift the lockout.
	tt, err := sts.TestToken(sts.SubTest2Digit, 1, 0)
	if err != nil {
		t.Fatal(err)
	}
	w, ev := r.ee.Writes(), r.m.Snapshot().EventSeq
	if out, err := r.m.EnterToken(now, tt.String()); err != nil || out.Kind != TokenTest {
		t.Fatalf("test token: %+v %v", out, err)
	}
	if r.ee.Writes() != w || r.m.Snapshot().EventSeq != ev {
		t.Fatalf("a test token wrote %d bytes and logged %d events", r.ee.Writes()-w, r.m.Snapshot().EventSeq-ev)
	}
	if sn := r.m.Snapshot(); sn.Failures != 9 {
		t.Fatalf("test token changed the rejection count: %+v", sn)
	}
	// The lockout is capped.
	p := DefaultParams()
	if got := p.lockoutUntil(t0, 60000) - t0.Unix(); got != int64(p.LockoutMax) {
		t.Errorf("lockout after 60000 rejections = %d s, want the cap %d", got, p.LockoutMax)
	}
	// A good token clears it.
	if _, err := r.m.EnterToken(now, v.credit(100)); err != nil {
		t.Fatal(err)
	}
	if sn := r.m.Snapshot(); sn.Failures != 0 || !sn.LockedUntil.IsZero() || sn.Credit != 100 {
		t.Fatalf("after a good token: %+v", sn)
	}
}

// TestLockoutChargedBeforeDecoding: cutting the power during the decision
// does not refund the attempt.
func TestLockoutChargedBeforeDecoding(t *testing.T) {
	v := newVend(t, "supply group 600727")
	r := stsRig(t, DefaultParams(), v)
	guesser := newVend(t, "guess")
	// Find how many bytes the charge commit writes, then cut just after it.
	img := r.ee.Image()
	w := r.ee.Writes()
	var charge int
	r.m.j.committed = func([]byte) {
		if charge == 0 {
			charge = r.ee.Writes() - w
		}
	}
	if _, err := r.m.EnterToken(t0, guesser.credit(100)); err == nil {
		t.Fatal("guess accepted")
	}
	r.ee, _ = LoadEEPROM(img, DefaultPageSize)
	r.boot()
	r.ee.CutPowerAfter(charge)
	_, err := r.m.EnterToken(t0, guesser.credit(100))
	wantErr(t, err, ErrHalted)
	r.boot()
	if sn := r.m.Snapshot(); sn.Failures != 1 {
		t.Fatalf("after a cut during the decision: %d rejections recorded, want 1", sn.Failures)
	}
}

// TestSTSKeyChange moves the meter to a new decoder key with a 4-token
// set: old-key tokens fail from then on, new-key tokens load, and no copy
// of the old key is left in the storage.
func TestSTSKeyChange(t *testing.T) {
	v := newVend(t, "supply group 600727")
	r := stsRig(t, DefaultParams(), v)
	oldKey := append([]byte(nil), v.cfg.Key...)
	if !bytes.Contains(r.ee.Image(), oldKey) {
		t.Fatal("the decoder key is not where the test expects it")
	}
	staleOld := v.credit(100)
	newKey := []byte("new-decoder-key!")
	toks := v.keyChange(newKey)
	for i, tk := range toks {
		out, err := r.m.EnterToken(t0, tk)
		if err != nil {
			t.Fatalf("key change token %d: %v", i+1, err)
		}
		want := TokenKeyPart
		if i == len(toks)-1 {
			want = TokenKeyChange
		}
		if out.Kind != want {
			t.Fatalf("key change token %d: %v, want %v", i+1, out.Kind, want)
		}
	}
	if !r.hasEvent(EvKeyChanged, 0) {
		t.Error("no key-changed event")
	}
	_, err := r.m.EnterToken(t0, staleOld)
	wantErr(t, err, ErrCRC)
	if _, err := r.m.EnterToken(t0, v.credit(300)); err != nil {
		t.Fatalf("new-key token: %v", err)
	}
	if bytes.Contains(r.ee.Image(), oldKey) {
		t.Error("the old decoder key is still in the storage")
	}
	if _, err := r.m.EnterToken(t0, toks[0]); err == nil {
		t.Error("a key change token was accepted again")
	}
}

// TestTIDRollover plays the 2024 TID rollover: a meter on base date 1993
// near the end of its 24-bit TIDs takes a rollover key change; from then
// on tokens count minutes from 2014, whose TIDs are far below the ones it
// remembers, and they are accepted because the rollover cleared the memory.
func TestTIDRollover(t *testing.T) {
	v := newVend(t, "supply group 600727")
	v.cfg.Base = sts.Base1993
	at := time.Date(2024, time.October, 1, 9, 0, 0, 0, time.UTC)
	tid, err := sts.TIDAt(sts.Base1993, at)
	if err != nil {
		t.Fatal(err)
	}
	v.tid = tid
	r := stsRig(t, DefaultParams(), v)
	if _, err := r.m.EnterToken(at, v.credit(100)); err != nil {
		t.Fatal(err)
	}
	toks, err := v.coder.KeyChange(sts.KeyChange{NewKey: []byte("rollover-key-16b"), KEN: 255, KRN: 2, KT: 2, TI: 1,
		SGC: testKeyID.SGC, RO: true})
	if err != nil {
		t.Fatal(err)
	}
	for i, tk := range toks {
		if _, err := r.m.EnterToken(at, tk.String()); err != nil {
			t.Fatalf("rollover token %d: %v", i+1, err)
		}
	}
	if v.coder, err = sts.NewEA11([]byte("rollover-key-16b")); err != nil {
		t.Fatal(err)
	}
	if v.tid, err = sts.TIDAt(sts.Base2014, at); err != nil {
		t.Fatal(err)
	}
	if _, err := r.m.EnterToken(at, v.credit(200)); err != nil {
		t.Fatalf("token on the 2014 base after rollover: %v", err)
	}
	if c := r.m.Snapshot().Credit; c != 300 {
		t.Fatalf("credit %d, want 300", c)
	}
}
