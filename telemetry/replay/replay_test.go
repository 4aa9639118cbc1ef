package replay

import (
	"errors"
	"math/rand/v2"
	"testing"
)

func tag(b byte) (t [TagSize]byte) { t[0] = b; return t }

func TestSequence(t *testing.T) {
	steps := []struct {
		counter uint32
		tag     byte
		want    Verdict
	}{
		{1, 1, New},
		{1, 1, Duplicate}, // retransmission of the latest
		{1, 9, Reused},    // same counter, other bytes
		{3, 3, New},       // 2 skipped (lost or late)
		{2, 2, New},       // late, inside the window
		{2, 2, Duplicate},
		{2, 7, Duplicate}, // below the highest no tag is kept: the store decides
		{0, 0, TooOld},
		{3 + Size, 4, New},
		{3, 3, TooOld}, // fell out of the window
		{4, 5, New},    // the oldest counter still inside
		{4, 5, Duplicate},
		{4 + Size*10, 6, New}, // a jump resets the bitmap
		{3 + Size, 4, TooOld},
	}
	var w Window
	for i, s := range steps {
		v, next := w.Observe(s.counter, tag(s.tag))
		if v != s.want {
			t.Fatalf("step %d (counter %d): %v, want %v", i, s.counter, v, s.want)
		}
		if v != New && next != w {
			t.Fatalf("step %d: a %v frame changed the window", i, v)
		}
		w = next
	}
}

func TestTopOfRange(t *testing.T) {
	var w Window
	w = w.Accept(^uint32(0)-1, tag(1))
	w = w.Accept(^uint32(0), tag(2))
	if w.Check(^uint32(0), tag(2)) != Duplicate || w.Check(^uint32(0)-1, tag(0)) != Duplicate {
		t.Errorf("top of range: %+v", w)
	}
}

// TestModel compares the window with a naive set of accepted counters over
// random arrivals: within the window the two must agree on New versus
// already seen.
func TestModel(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for run := 0; run < 200; run++ {
		var w Window
		seen := map[uint32]bool{}
		var hi uint32
		for i := 0; i < 300; i++ {
			c := uint32(1 + r.IntN(400))
			if r.IntN(4) == 0 {
				c = hi + uint32(r.IntN(3))
			}
			if c == 0 {
				c = 1
			}
			v, next := w.Observe(c, tag(byte(c)))
			switch {
			case hi != 0 && c+Size <= hi:
				if v != TooOld {
					t.Fatalf("counter %d with highest %d: %v, want too-old", c, hi, v)
				}
			case seen[c]:
				if v != Duplicate {
					t.Fatalf("counter %d seen: %v, want duplicate", c, v)
				}
			default:
				if v != New {
					t.Fatalf("counter %d unseen: %v, want new", c, v)
				}
				seen[c] = true
				hi = max(hi, c)
			}
			w = next
			if w.Highest != hi {
				t.Fatalf("highest %d, model %d", w.Highest, hi)
			}
		}
	}
}

func TestMarshal(t *testing.T) {
	var w Window
	for _, c := range []uint32{5, 7, 6, 70} {
		w = w.Accept(c, tag(byte(c)))
	}
	b, _ := w.MarshalBinary()
	var got Window
	if err := got.UnmarshalBinary(b); err != nil || got != w {
		t.Fatalf("round trip: %+v %v", got, err)
	}
	var zero Window
	zb, _ := zero.MarshalBinary()
	if err := got.UnmarshalBinary(zb); err != nil || got != zero {
		t.Fatalf("zero round trip: %v", err)
	}
	bad := map[string][]byte{
		"short":            b[:19],
		"empty with bits":  append([]byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}, make([]byte, 8)...),
		"highest unmarked": append([]byte{0, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 2}, make([]byte, 8)...),
		"below counter 1":  append([]byte{0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0x0F}, make([]byte, 8)...),
	}
	for name, b := range bad {
		if err := got.UnmarshalBinary(b); !errors.Is(err, ErrState) {
			t.Errorf("%s: err = %v", name, err)
		}
	}
}

func FuzzWindow(f *testing.F) {
	f.Add([]byte{0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 0, 1, 1, 2, 3, 4, 5, 6, 7, 8}, uint32(4), uint32(70))
	f.Fuzz(func(t *testing.T, state []byte, a, b uint32) {
		var w Window
		if w.UnmarshalBinary(state) != nil {
			return
		}
		for _, c := range []uint32{a, b, a} {
			v, next := w.Observe(c, tag(1))
			if v == New {
				if next.Check(c, tag(1)) != Duplicate {
					t.Fatalf("counter %d accepted but not seen afterwards", c)
				}
				if next.Highest < w.Highest {
					t.Fatal("highest went down")
				}
			} else if next != w {
				t.Fatalf("%v changed the window", v)
			}
			w = next
			m, _ := w.MarshalBinary()
			var back Window
			if err := back.UnmarshalBinary(m); err != nil || back != w {
				t.Fatalf("reachable window %+v does not round-trip: %v", w, err)
			}
		}
	})
}

func BenchmarkObserve(b *testing.B) {
	var w Window
	var c uint32
	for b.Loop() {
		c++
		_, w = w.Observe(c, tag(byte(c)))
	}
}
