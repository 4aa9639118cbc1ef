package meter

import (
	"errors"
	"testing"
	"time"

	"sluice/voucher"
)

func TestFormat(t *testing.T) {
	ee := NewEEPROM(DefaultEEPROMSize, DefaultPageSize)
	if _, err := Boot(ee, Deps{}); !errors.Is(err, ErrBlank) {
		t.Fatalf("boot of blank storage: %v", err)
	}
	bad := []Provision{
		{ID: 0, Params: DefaultParams()},
		{ID: 1, Params: Params{Unit: 9}},
		{ID: 1, Params: func() Params { p := DefaultParams(); p.Unit = Minor; return p }()}, // no price
		{ID: 1, Params: func() Params { p := DefaultParams(); p.NightEnd = 24 * 60; return p }()},
		{ID: 1, Params: func() Params { p := DefaultParams(); p.EmergencyCredit = -1; return p }()},
		{ID: 1, Params: DefaultParams(), Keys: Keys{Trusted: voucher.Keyring{{Role: voucher.RoleCredit, Public: make([]byte, 31)}}}},
		{ID: 1, Params: DefaultParams(), Keys: Keys{Trusted: voucher.Keyring{{Role: 7, Public: make([]byte, 32)}}}},
	}
	for i, p := range bad {
		if err := Format(ee, p); err == nil {
			t.Errorf("provision %d accepted: %+v", i, p)
		}
	}
	if err := Format(ee, Provision{ID: 7, Params: DefaultParams(), Keys: testKeys()}); err != nil {
		t.Fatal(err)
	}
	if err := Format(ee, Provision{ID: 8, Params: DefaultParams()}); !errors.Is(err, ErrProvisioned) {
		t.Fatalf("re-provisioning: %v, want ErrProvisioned", err)
	}
	m, err := Boot(ee, Deps{})
	if err != nil || m.ID() != 7 {
		t.Fatalf("boot: %v", err)
	}
	if _, err := m.EnterToken(t0, "12345678901234567890"); !errors.Is(err, ErrUnsupported) {
		t.Errorf("token on a meter without STS: %v", err)
	}
}

// TestStateSurvivesReboot: every field of the state comes back from the
// journal as it went in.
func TestStateSurvivesReboot(t *testing.T) {
	p := DefaultParams()
	p.Holidays = []Day{DayOf(2026, 12, 25), DayOf(2027, 1, 1)}
	p.UTCOffset = -300
	p.CloseOnTamper = true
	v := newVend(t, "supply group 600727")
	r := newRig(t, p, Deps{}, &v.cfg)
	r.load(t0, r.creditVoucher(1500))
	if _, err := r.m.EnterToken(t0, v.credit(700)); err != nil {
		t.Fatal(err)
	}
	r.tick(t0, 1300, 9)
	if err := r.m.Sense(t0, TamperBattery); err != nil {
		t.Fatal(err)
	}
	if _, err := r.m.FrameCounter(); err != nil {
		t.Fatal(err)
	}
	before := r.m.s.marshal()
	sn := r.m.Snapshot()
	ev := r.m.Events(0)
	r.boot()
	if got := r.m.s.marshal(); string(got) != string(before) {
		t.Fatal("state after reboot differs")
	}
	if r.m.Snapshot() != sn || len(r.m.Events(0)) != len(ev) || r.m.Events(0)[len(ev)-1] != ev[len(ev)-1] {
		t.Fatalf("snapshot or events differ after reboot")
	}
	if p2 := r.m.Params(); len(p2.Holidays) != 2 || p2.UTCOffset != -300 || !p2.CloseOnTamper {
		t.Fatalf("params after reboot: %+v", p2)
	}
}

func TestSensorsAndCardPort(t *testing.T) {
	r := newRig(t, DefaultParams(), Deps{}, nil)
	r.load(t0, r.creditVoucher(5000))
	w := r.ee.Writes()
	if err := r.m.Sense(t0, TamperCover); err != nil {
		t.Fatal(err)
	}
	if ev := r.lastEvent(); ev.Kind != EvTamper || ev.Value != int64(TamperCover) {
		t.Fatalf("last event %v", ev)
	}
	// The same condition again is already latched: nothing written.
	w = r.ee.Writes()
	if err := r.m.Sense(t0, TamperCover); err != nil || r.ee.Writes() != w {
		t.Fatalf("re-sensing a latched tamper wrote %d bytes (%v)", r.ee.Writes()-w, err)
	}
	// A tick with no flow and nothing to change writes nothing either.
	if err := r.m.Tick(t0, 0, 0); err != nil || r.ee.Writes() != w {
		t.Fatalf("an idle tick wrote %d bytes (%v)", r.ee.Writes()-w, err)
	}
	for i := 0; i < cardFailLimit-1; i++ {
		if err := r.m.CardAuthFailed(t0); err != nil {
			t.Fatal(err)
		}
	}
	if r.m.Snapshot().Tamper&TamperCardPort != 0 {
		t.Fatal("card-port tamper before the limit")
	}
	if err := r.m.CardAuthFailed(t0); err != nil {
		t.Fatal(err)
	}
	if r.m.Snapshot().Tamper&TamperCardPort == 0 {
		t.Fatal("no card-port tamper at the limit")
	}
}

func TestEmergencyAndFriendlyOnTheMeter(t *testing.T) {
	r := newRig(t, DefaultParams(), Deps{}, nil)
	r.load(t0, r.creditVoucher(1200))
	if ok, _ := r.m.RequestEmergency(t0); ok {
		t.Fatal("emergency credit granted above the low-credit threshold")
	}
	r.tick(t0, 1200, 0)
	if sn := r.m.Snapshot(); sn.Status&ClosedCredit == 0 {
		t.Fatalf("valve open at zero credit on a Monday morning: %+v", sn)
	}
	if d, err := r.m.Keypad(t0, "*2#"); err != nil || d.Text != "Emergency 500 L" {
		t.Fatalf("*2: %q %v", d.Text, err)
	}
	if sn := r.m.Snapshot(); sn.Status&ValveClosed != 0 || sn.Status&Emergency == 0 {
		t.Fatalf("after emergency credit: %+v", sn)
	}
	if !r.hasEvent(EvEmergency, 0) {
		t.Error("no emergency event")
	}
	// Saturday: friendly credit carries the household past the emergency floor.
	sat := time.Date(2026, 3, 7, 12, 0, 0, 0, time.UTC)
	r.tick(sat, 600, 0)
	if sn := r.m.Snapshot(); sn.Credit != -600 || sn.Status&ValveClosed != 0 {
		t.Fatalf("Saturday, 600 L into emergency credit: %+v", sn)
	}
	// Monday morning the friendly period is over: a tick settles the valve.
	r.tick(time.Date(2026, 3, 9, 8, 0, 0, 0, time.UTC), 0, 0)
	if sn := r.m.Snapshot(); sn.Status&ValveClosed == 0 {
		t.Fatalf("friendly period over, valve still open: %+v", sn)
	}
	r.load(t0, r.creditVoucher(1000))
	if sn := r.m.Snapshot(); sn.Credit != 400 || sn.Status&(ValveClosed|Emergency) != 0 {
		t.Fatalf("after repaying: %+v", sn)
	}
}

func TestKeypadShortCodes(t *testing.T) {
	r := newRig(t, DefaultParams(), Deps{}, nil)
	r.load(t0, r.creditVoucher(2500))
	r.tick(t0, 100, 0)
	for code, want := range map[string]string{"*1": "Credit 2400 L", "*4": "Volume 100 L", "*5": "Meter 4710001",
		"*6": "valve open"} {
		if d, err := r.m.Keypad(t0, code); err != nil || d.Text != want {
			t.Errorf("%s: %q %v, want %q", code, d.Text, err, want)
		}
	}
	if d, _ := r.m.Keypad(t0, "*3"); d.Text == "" {
		t.Error("*3 shows nothing")
	}
	if _, err := r.m.Keypad(t0, "*99"); !errors.Is(err, ErrFormat) {
		t.Errorf("*99: %v", err)
	}
}

// TestPulses: flow arrives as sensor pulses of PulseML millilitres; the
// fraction of a litre carries over and is journaled.
func TestPulses(t *testing.T) {
	p := DefaultParams()
	p.PulseML = 250
	r := newRig(t, p, Deps{}, nil)
	r.load(t0, r.creditVoucher(5000))
	r.tick(t0, 4, 0) // 1 L
	r.tick(t0, 3, 0) // 0.75 L: nothing charged yet, but remembered
	r.boot()
	r.tick(t0, 1, 0) // 0.25 L more: the second litre
	if sn := r.m.Snapshot(); sn.Forward != 2 || sn.Credit != 4998 {
		t.Fatalf("forward %d credit %d, want 2 and 4998", sn.Forward, sn.Credit)
	}
	r.tick(t0, 0, 4*6) // 6 L reverse: beyond the 5 L limit
	if sn := r.m.Snapshot(); sn.Reverse != 6 || sn.Tamper&TamperReverse == 0 || sn.Credit != 4998 {
		t.Fatalf("after reverse flow: %+v", sn)
	}
	if _, err := r.m.LoadVoucher(t0, r.sign(voucher.Voucher{Kind: voucher.KindSetParameter, Param: ParamPulseWeight, Value: 10000}), FromRemote); err != nil {
		t.Fatal(err)
	}
	r.tick(t0, 3, 0) // 30 L
	if sn := r.m.Snapshot(); sn.Forward != 32 {
		t.Fatalf("forward %d after 3 pulses of 10 L", sn.Forward)
	}
}
