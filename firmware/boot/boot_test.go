package boot

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"fmt"
	"strconv"
	"testing"

	"sluice/firmware"
)

func key(n byte) ed25519.PrivateKey {
	seed := sha256.Sum256([]byte{'b', 'o', 'o', 't', n})
	return ed25519.NewKeyFromSeed(seed[:])
}

// image signs a 1000-byte application (four write chunks) marked with ver.
func image(t testing.TB, k ed25519.PrivateKey, major uint8, counter uint32) []byte {
	t.Helper()
	app := bytes.Repeat([]byte{major}, 1000)
	img, err := firmware.Sign(app, k, firmware.SignOptions{Version: firmware.Version{Major: major}, SecurityCounter: counter})
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func loader(t testing.TB, f Flash) *Loader {
	t.Helper()
	v, err := firmware.NewVerifier(key(1).Public())
	if err != nil {
		t.Fatal(err)
	}
	return New(f, v)
}

const slotSize, stateSize = 2048, 64

// factory returns a flash running version 1 (counter 1).
func factory(t testing.TB) *MemFlash {
	t.Helper()
	f := NewMemFlash(slotSize, stateSize)
	l := loader(t, f)
	if _, err := l.Install(image(t, key(1), 1, 1)); err != nil {
		t.Fatal(err)
	}
	b, err := l.Boot()
	if err != nil || b.Image.Header.Version.Major != 1 || !b.Updated {
		t.Fatalf("factory boot: %+v %v", b, err)
	}
	return f
}

func TestUpdate(t *testing.T) {
	f := factory(t)
	l := loader(t, f)
	st, _ := l.State()
	if st.Active != SlotB || st.Pending != NoSlot || st.SecurityCounter != 1 {
		t.Fatalf("after factory: %+v", st)
	}
	if _, err := l.Install(image(t, key(1), 2, 2)); err != nil {
		t.Fatal(err)
	}
	st, _ = l.State()
	if st.Active != SlotB || st.Pending != SlotA {
		t.Fatalf("after install: %+v", st)
	}
	b, err := l.Boot()
	if err != nil || b.Slot != SlotA || b.Image.Header.Version.Major != 2 || !b.Updated {
		t.Fatalf("boot: %+v %v", b, err)
	}
	st, _ = l.State()
	if st.Active != SlotA || st.Pending != NoSlot || st.SecurityCounter != 2 {
		t.Fatalf("after boot: %+v", st)
	}
	// A second boot runs the same image and writes nothing.
	ops := f.Ops()
	if b, err := l.Boot(); err != nil || b.Slot != SlotA || b.Updated {
		t.Fatalf("reboot: %+v %v", b, err)
	}
	if f.Ops() != ops {
		t.Errorf("a plain boot wrote to flash")
	}
}

func TestDowngradeRefused(t *testing.T) {
	f := factory(t)
	l := loader(t, f)
	if _, err := l.Install(image(t, key(1), 3, 5)); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Boot(); err != nil {
		t.Fatal(err)
	}
	ops := f.Ops()
	// A higher version with a lower counter is still a downgrade.
	if _, err := l.Install(image(t, key(1), 9, 4)); !errors.Is(err, ErrDowngrade) {
		t.Fatalf("install counter 4 after 5: %v", err)
	}
	if f.Ops() != ops {
		t.Errorf("refused install wrote to flash")
	}
	// Equal counter is allowed (a rebuild of the same security level).
	if _, err := l.Install(image(t, key(1), 4, 5)); err != nil {
		t.Fatalf("install equal counter: %v", err)
	}
}

// An attacker with a programmer writes an old signed image into the
// inactive slot and a state record marking it pending: Boot refuses it.
func TestDowngradeByFlashWrite(t *testing.T) {
	f := factory(t)
	l := loader(t, f)
	l.Install(image(t, key(1), 2, 2))
	l.Boot() // active A, counter 2; B still holds version 1 (counter 1)
	st, _ := l.State()
	if _, err := l.setState(State{Active: st.Active, Pending: SlotB, SecurityCounter: st.SecurityCounter}); err != nil {
		t.Fatal(err)
	}
	b, err := l.Boot()
	if err != nil || b.Slot != SlotA || b.Image.Header.Version.Major != 2 {
		t.Fatalf("boot: %+v %v", b, err)
	}
	// Damage the active image: the old image in B is not a fallback.
	f.Corrupt(SlotA, 40)
	if _, err := l.Boot(); !errors.Is(err, ErrNoBootable) {
		t.Fatalf("fallback to older counter: %v", err)
	}
}

// With equal counters the other slot is a valid fallback.
func TestFallback(t *testing.T) {
	f := factory(t)
	l := loader(t, f)
	l.Install(image(t, key(1), 2, 1))
	l.Boot()
	f.Corrupt(SlotA, 100)
	b, err := l.Boot()
	if err != nil || b.Slot != SlotB || b.Image.Header.Version.Major != 1 {
		t.Fatalf("fallback: %+v %v", b, err)
	}
	st, _ := l.State()
	if st.Active != SlotB {
		t.Errorf("state not moved to B: %+v", st)
	}
}

func TestBadImages(t *testing.T) {
	f := factory(t)
	l := loader(t, f)
	ops := f.Ops()
	if _, err := l.Install(image(t, key(2), 2, 2)); !errors.Is(err, firmware.ErrKeyHash) {
		t.Errorf("foreign key: %v", err)
	}
	bad := image(t, key(1), 2, 2)
	bad[50] ^= 1
	if _, err := l.Install(bad); !errors.Is(err, firmware.ErrHashMismatch) {
		t.Errorf("modified: %v", err)
	}
	if _, err := l.Install(make([]byte, slotSize+1)); err == nil {
		t.Errorf("junk accepted")
	}
	if f.Ops() != ops {
		t.Errorf("refused images wrote to flash")
	}
	big, _ := firmware.Sign(make([]byte, slotSize), key(1), firmware.SignOptions{SecurityCounter: 2})
	if _, err := l.Install(big); !errors.Is(err, ErrTooLarge) {
		t.Errorf("too large: %v", err)
	}
	// A pending slot whose image is damaged after install is dropped.
	if _, err := l.Install(image(t, key(1), 2, 2)); err != nil {
		t.Fatal(err)
	}
	f.Corrupt(SlotA, 33)
	b, err := l.Boot()
	if err != nil || b.Slot != SlotB || b.Updated {
		t.Fatalf("boot with damaged pending: %+v %v", b, err)
	}
	if st, _ := l.State(); st.Pending != NoSlot || st.SecurityCounter != 1 {
		t.Errorf("damaged pending left state %+v", st)
	}
}

func TestBlankFlash(t *testing.T) {
	l := loader(t, NewMemFlash(slotSize, stateSize))
	if _, err := l.Boot(); !errors.Is(err, ErrNoBootable) {
		t.Fatalf("blank: %v", err)
	}
}

// update runs one update as the meter would, ignoring errors (power may be
// cut anywhere in it).
func update(l *Loader, img []byte) {
	if _, err := l.Install(img); err == nil {
		l.Boot()
	}
}

// TestPowerCut cuts power at every flash operation of an update (install
// and the boot that activates it), at four points inside each operation,
// and then also at every operation of the recovery boot after that cut. After power returns the meter must boot a
// verified image, old or new, with a stored counter not above it; and a
// retried update must then succeed.
func TestPowerCut(t *testing.T) {
	base := factory(t)
	v2 := image(t, key(1), 2, 2)

	probe := base.Clone()
	before := probe.Ops()
	update(loader(t, probe), v2)
	steps := probe.Ops() - before
	if steps < 8 {
		t.Fatalf("an update takes only %d flash operations?", steps)
	}
	t.Logf("an update is %d flash operations", steps)

	check := func(f *MemFlash, what string) uint8 {
		t.Helper()
		l := loader(t, f)
		b, err := l.Boot()
		if err != nil {
			t.Fatalf("%s: no boot: %v", what, err)
		}
		major := b.Image.Header.Version.Major
		if major != 1 && major != 2 {
			t.Fatalf("%s: booted version %d", what, major)
		}
		st, _ := l.State()
		if st.SecurityCounter > b.Image.SecurityCounter || st.Active != b.Slot || st.Pending != NoSlot {
			t.Fatalf("%s: state %+v after booting %v counter %d", what, st, b.Slot, b.Image.SecurityCounter)
		}
		return major
	}
	var old, new int
	// Tear points: nothing done, one byte done, half done, all but the last.
	for _, done := range []int{0, 1, -1, 1 << 30} {
		for k := 0; k < steps; k++ {
			what := "cut at op " + strconv.Itoa(k) + " after " + strconv.Itoa(done) + " bytes"
			f := base.Clone()
			f.CutPower(k, done)
			update(loader(t, f), v2)
			f.Restore()
			if check(f.Clone(), what) == 1 {
				old++
			} else {
				new++
			}
			// Cut again at every operation of the recovery boot.
			for j := 0; ; j++ {
				g := f.Clone()
				g.CutPower(j, done)
				before := g.Ops()
				loader(t, g).Boot()
				if g.Ops()-before <= j { // the boot finished before the cut
					break
				}
				g.Restore()
				check(g, what+", then at recovery op "+strconv.Itoa(j))
			}
			// The retried update lands.
			update(loader(t, f), v2)
			if check(f, "retry after "+what) != 2 {
				t.Fatalf("retry after %s did not install version 2", what)
			}
		}
	}
	t.Logf("after a cut: %d times the old image booted, %d times the new", old, new)
	if old == 0 || new == 0 {
		t.Errorf("cuts should land on both sides of the commit point")
	}
}

func TestRecordCodec(t *testing.T) {
	st := State{Seq: 9, Active: SlotB, Pending: SlotA, SecurityCounter: 77}
	rec := encodeRecord(st)
	if got, ok := decodeRecord(rec); !ok || got != st {
		t.Fatalf("round trip: %+v %v", got, ok)
	}
	for i := range rec {
		bad := bytes.Clone(rec)
		bad[i] ^= 0x10
		if _, ok := decodeRecord(bad); ok {
			t.Errorf("flip at %d accepted", i)
		}
	}
	if _, ok := decodeRecord(encodeRecord(State{Active: SlotA, Pending: SlotA})); ok {
		t.Error("pending == active accepted")
	}
	for _, st := range []State{
		{Seq: 2, Active: SlotA, Pending: SlotB, PendingTrial: true},
		{Seq: 3, Active: SlotB, Pending: NoSlot, Trial: true, SecurityCounter: 5},
	} {
		if got, ok := decodeRecord(encodeRecord(st)); !ok || got != st {
			t.Errorf("round trip %+v: %+v %v", st, got, ok)
		}
	}
	for name, st := range map[string]State{
		"trial flag without pending": {Active: SlotA, Pending: NoSlot, PendingTrial: true},
		"pending while on trial":     {Active: SlotA, Pending: SlotB, Trial: true},
	} {
		if _, ok := decodeRecord(encodeRecord(st)); ok {
			t.Errorf("%s accepted", name)
		}
	}
}

func BenchmarkBoot(b *testing.B) {
	f := factory(b)
	l := loader(b, f)
	for b.Loop() {
		if _, err := l.Boot(); err != nil {
			b.Fatal(err)
		}
	}
}

// TestPowerCutOverPending: an update arrives while an earlier one is still
// pending (installed, not yet booted). Its install first withdraws the
// pending mark; a cut anywhere still leaves a meter that boots a verified
// image no older than the running one.
func TestPowerCutOverPending(t *testing.T) {
	base := factory(t)
	if _, err := loader(t, base).Install(image(t, key(1), 2, 2)); err != nil {
		t.Fatal(err)
	}
	v3 := image(t, key(1), 3, 3)
	probe := base.Clone()
	before := probe.Ops()
	update(loader(t, probe), v3)
	steps := probe.Ops() - before
	seen := map[uint8]int{}
	for k := 0; k < steps; k++ {
		f := base.Clone()
		f.CutPowerAfter(k)
		update(loader(t, f), v3)
		f.Restore()
		l := loader(t, f)
		b, err := l.Boot()
		if err != nil {
			t.Fatalf("cut at op %d: %v", k, err)
		}
		seen[b.Image.Header.Version.Major]++
		if st, _ := l.State(); st.Active != b.Slot || st.SecurityCounter > b.Image.SecurityCounter {
			t.Fatalf("cut at op %d: state %+v", k, st)
		}
	}
	t.Logf("%d operations; booted versions after a cut: %v", steps, seen)
	if seen[3] == 0 || seen[1]+seen[2] == 0 {
		t.Errorf("cuts should land on both sides of the commit point: %v", seen)
	}
}

func TestTrialConfirm(t *testing.T) {
	f := factory(t)
	l := loader(t, f)
	if _, err := l.InstallTrial(image(t, key(1), 2, 2)); err != nil {
		t.Fatal(err)
	}
	b, err := l.Boot()
	if err != nil || b.Image.Header.Version.Major != 2 || !b.Trial || !b.Updated {
		t.Fatalf("trial boot: %+v %v", b, err)
	}
	if st, _ := l.State(); !st.Trial || st.SecurityCounter != 1 {
		t.Fatalf("on trial the counter must not rise yet: %+v", st)
	}
	// No update may overwrite the fallback while the trial runs.
	if _, err := l.Install(image(t, key(1), 3, 3)); !errors.Is(err, ErrTrial) {
		t.Fatalf("install during trial: %v", err)
	}
	if err := l.Confirm(); err != nil {
		t.Fatal(err)
	}
	st, _ := l.State()
	if st.Trial || st.SecurityCounter != 2 {
		t.Fatalf("after confirm: %+v", st)
	}
	b, err = l.Boot()
	if err != nil || b.Image.Header.Version.Major != 2 || b.Trial || b.Reverted {
		t.Fatalf("boot after confirm: %+v %v", b, err)
	}
	if err := l.Confirm(); err != nil {
		t.Errorf("confirm without a trial: %v", err)
	}
}

func TestTrialRevert(t *testing.T) {
	f := factory(t)
	l := loader(t, f)
	l.InstallTrial(image(t, key(1), 2, 2))
	if b, _ := l.Boot(); !b.Trial {
		t.Fatal("not on trial")
	}
	// The new image crashed before confirming: the next boot goes back.
	b, err := l.Boot()
	if err != nil || b.Image.Header.Version.Major != 1 || !b.Reverted {
		t.Fatalf("revert: %+v %v", b, err)
	}
	st, _ := l.State()
	if st.Trial || st.Pending != NoSlot || st.SecurityCounter != 1 {
		t.Fatalf("after revert: %+v", st)
	}
	if b, _ := l.Boot(); b.Image.Header.Version.Major != 1 || b.Reverted {
		t.Fatalf("boot after revert: %+v", b)
	}
	// With nothing valid to go back to, the trial image keeps running.
	l.InstallTrial(image(t, key(1), 2, 2))
	l.Boot()
	st, _ = l.State()
	f.Corrupt(other(st.Active), 40)
	if b, err := l.Boot(); err != nil || b.Image.Header.Version.Major != 2 || !b.Trial {
		t.Fatalf("no fallback: %+v %v", b, err)
	}
}

// TestTrialPowerCut cuts power at every flash operation of a trial update
// taken to its end (install, trial boot, confirm) and of one that is
// abandoned (install, trial boot, reverting boot): the meter always boots
// a verified image, and never one older than the stored counter allows.
func TestTrialPowerCut(t *testing.T) {
	base := factory(t)
	v2 := image(t, key(1), 2, 2)
	flows := map[string]func(l *Loader){
		"confirmed": func(l *Loader) {
			if _, err := l.InstallTrial(v2); err == nil {
				if _, err := l.Boot(); err == nil {
					l.Confirm()
				}
			}
		},
		"abandoned": func(l *Loader) {
			if _, err := l.InstallTrial(v2); err == nil {
				if _, err := l.Boot(); err == nil {
					l.Boot()
				}
			}
		},
	}
	for name, flow := range flows {
		probe := base.Clone()
		before := probe.Ops()
		flow(loader(t, probe))
		steps := probe.Ops() - before
		seen := map[string]int{}
		for k := 0; k < steps; k++ {
			f := base.Clone()
			f.CutPowerAfter(k)
			flow(loader(t, f))
			f.Restore()
			l := loader(t, f)
			b, err := l.Boot()
			if err != nil {
				t.Fatalf("%s, cut at op %d: %v", name, k, err)
			}
			st, _ := l.State()
			if st.Active != b.Slot || st.SecurityCounter > b.Image.SecurityCounter || st.Trial != b.Trial {
				t.Fatalf("%s, cut at op %d: state %+v after %+v", name, k, st, b)
			}
			seen[fmt.Sprintf("v%d trial=%v", b.Image.Header.Version.Major, b.Trial)]++
		}
		t.Logf("%s: %d operations; after a cut: %v", name, steps, seen)
	}
}
