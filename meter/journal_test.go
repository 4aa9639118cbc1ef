package meter

import (
	"bytes"
	"errors"
	"testing"
)

func TestEEPROMPowerCutTearsOnlyThePage(t *testing.T) {
	e := NewEEPROM(128, 32)
	old := bytes.Repeat([]byte{0x11}, 32)
	for off := 0; off < 128; off += 32 {
		if err := e.WritePage(off, old); err != nil {
			t.Fatal(err)
		}
	}
	e.CutPowerAfter(5)
	err := e.WritePage(32, bytes.Repeat([]byte{0x22}, 32))
	if !errors.Is(err, ErrPowerLost) {
		t.Fatalf("write after cut = %v, want ErrPowerLost", err)
	}
	img := e.Image()
	if !bytes.Equal(img[32:37], bytes.Repeat([]byte{0x22}, 5)) {
		t.Errorf("programmed prefix = %x", img[32:37])
	}
	if img[37] == 0x11 || img[37] == 0x22 {
		t.Errorf("torn byte = %#x, want garbage", img[37])
	}
	if !bytes.Equal(img[38:64], bytes.Repeat([]byte{0xFF}, 26)) {
		t.Errorf("rest of the page = %x, want erased", img[38:64])
	}
	if !bytes.Equal(img[:32], old) || !bytes.Equal(img[64:], bytes.Repeat([]byte{0x11}, 64)) {
		t.Error("a power cut changed another page")
	}
	if err := e.WritePage(0, []byte{1}); !errors.Is(err, ErrPowerLost) {
		t.Errorf("write while unpowered = %v", err)
	}
	e.PowerOn()
	if err := e.WritePage(0, []byte{1}); err != nil {
		t.Errorf("write after PowerOn = %v", err)
	}
	if err := e.WritePage(30, []byte{1, 2, 3}); err == nil {
		t.Error("a write crossing a page boundary was accepted")
	}
}

func TestJournal(t *testing.T) {
	e := NewEEPROM(256, 16)
	j, _ := newJournal(e)
	if _, err := j.load(); !errors.Is(err, ErrBlank) {
		t.Fatalf("blank load = %v, want ErrBlank", err)
	}
	for i, p := range []string{"first", "second state", "third"} {
		if err := j.commit([]byte(p)); err != nil {
			t.Fatal(err)
		}
		j2, _ := newJournal(e)
		got, err := j2.load()
		if err != nil || string(got) != p || j2.seq != uint32(i+1) || j2.cur != i%2 {
			t.Fatalf("after commit %d: load = %q, %v, seq %d bank %d", i, got, err, j2.seq, j2.cur)
		}
	}
	// Corrupting the newest record falls back to the previous one.
	img := e.Image()
	img[0+12] ^= 1 // bank 0 holds "third"
	e2, _ := LoadEEPROM(img, 16)
	j3, _ := newJournal(e2)
	if got, err := j3.load(); err != nil || string(got) != "second state" {
		t.Fatalf("with newest record corrupted: %q, %v", got, err)
	}
	// Both corrupted: no state at all, which is not the same as blank.
	img[128+12] ^= 1
	e3, _ := LoadEEPROM(img, 16)
	j4, _ := newJournal(e3)
	if _, err := j4.load(); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("both banks corrupted: %v, want ErrCorrupt", err)
	}
	if err := j.commit(make([]byte, j.maxPayload()+1)); err == nil {
		t.Error("oversized record accepted")
	}
}

// TestJournalEveryCut commits over and over, cutting power at every byte
// of a commit, and checks the journal yields exactly the old or the new
// record.
func TestJournalEveryCut(t *testing.T) {
	e := NewEEPROM(512, 32)
	j, _ := newJournal(e)
	if err := j.commit(bytes.Repeat([]byte("a"), 100)); err != nil {
		t.Fatal(err)
	}
	if err := j.commit(bytes.Repeat([]byte("b"), 90)); err != nil {
		t.Fatal(err)
	}
	base := e.Image()
	next := bytes.Repeat([]byte("c"), 120)
	for cut := 0; ; cut++ {
		ee, _ := LoadEEPROM(base, 32)
		jj, _ := newJournal(ee)
		if _, err := jj.load(); err != nil {
			t.Fatal(err)
		}
		ee.CutPowerAfter(cut)
		err := jj.commit(next)
		ee.PowerOn()
		jr, _ := newJournal(ee)
		got, lerr := jr.load()
		if lerr != nil {
			t.Fatalf("cut %d: %v", cut, lerr)
		}
		if err == nil {
			if !bytes.Equal(got, next) {
				t.Fatalf("cut %d: committed but read %q", cut, got)
			}
			if cut < 100 {
				t.Fatalf("commit finished after only %d bytes", cut)
			}
			return
		}
		if !bytes.Equal(got, bytes.Repeat([]byte("b"), 90)) {
			t.Fatalf("cut %d: interrupted commit read %q, want the old record", cut, got)
		}
	}
}

// TestFrameCounterNeverRepeats: telemetry frame counters strictly increase
// across reboots and power cuts during the reservation.
func TestFrameCounterNeverRepeats(t *testing.T) {
	r := newRig(t, DefaultParams(), Deps{}, nil)
	last := uint32(0)
	next := func() {
		t.Helper()
		c, err := r.m.FrameCounter()
		if errors.Is(err, ErrHalted) {
			r.boot()
			return
		}
		if err != nil || c <= last {
			t.Fatalf("counter %d after %d: %v", c, last, err)
		}
		last = c
	}
	for i := 0; i < 200; i++ {
		next()
		if i%37 == 0 {
			r.boot()
		}
		if i%50 == 0 {
			r.ee.CutPowerAfter(i % 30)
		}
	}
	if w := r.ee.Writes(); w > 200*400 {
		t.Errorf("%d bytes written for 200 frames: counters are not reserved in blocks", w)
	}
}
