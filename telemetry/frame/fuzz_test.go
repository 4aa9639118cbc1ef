package frame

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// FuzzOpen: no input panics, every failure carries a sentinel, and every
// frame Open accepts re-seals to exactly the same bytes (one canonical form).
func FuzzOpen(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.hex")
	for _, name := range files {
		s, _ := os.ReadFile(name)
		f.Add(mustHex(strings.TrimSpace(string(s))))
	}
	k, _ := NewKey(testKey)
	sentinels := []error{ErrShort, ErrLength, ErrVersion, ErrKind, ErrField, ErrMAC}
	f.Fuzz(func(t *testing.T, b []byte) {
		var fr Frame
		err := Open(k, b, &fr)
		if err != nil {
			for _, s := range sentinels {
				if errors.Is(err, s) {
					return
				}
			}
			t.Fatalf("error without a sentinel: %v", err)
		}
		again, err := Seal(nil, k, &fr)
		if err != nil {
			t.Fatalf("accepted frame does not re-seal: %v", err)
		}
		if !bytes.Equal(again, b) {
			t.Fatalf("accepted %x, re-seals to %x", b, again)
		}
	})
}

// FuzzOpenUnkeyed exercises the body parsers past the MAC: the fuzzer
// supplies the body and the test seals it, as a meter holding its key could.
func FuzzOpenUnkeyed(f *testing.F) {
	files, _ := filepath.Glob("testdata/good_*.hex")
	for _, name := range files {
		s, _ := os.ReadFile(name)
		b := mustHex(strings.TrimSpace(string(s)))
		f.Add(b[1], b[HeaderSize:len(b)-TagSize])
	}
	k, _ := NewKey(testKey)
	f.Fuzz(func(t *testing.T, kind byte, body []byte) {
		hdr := []byte{Version, kind, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0x30, 0, 0, 0}
		msg := append(hdr, body...)
		tg := k.tag(msg)
		msg = append(msg, tg[:]...)
		var fr Frame
		if err := Open(k, msg, &fr); err != nil {
			return
		}
		again, err := Seal(nil, k, &fr)
		if err != nil || !bytes.Equal(again, msg) {
			t.Fatalf("accepted body %x does not round-trip: %v", body, err)
		}
	})
}

func benchFrames(b *testing.B) (*Key, [][]byte) {
	k, _ := NewKey(testKey)
	var frames [][]byte
	for _, n := range []int{0, 4, 24} {
		iv := make([]uint32, n)
		fr := &Frame{Kind: KindReading, Meter: 4710001, Counter: 1, Time: t0,
			Reading: Reading{Forward: 1e6, Credit: 5000, Loaded: 1e5, Unit: UnitLitres, Intervals: iv}}
		if n > 0 {
			fr.Reading.Interval = time.Hour
		}
		out, err := Seal(nil, k, fr)
		if err != nil {
			b.Fatal(err)
		}
		frames = append(frames, out)
	}
	return k, frames
}

// BenchmarkOpen measures readings parsed and verified per second on one
// core, for readings with 0, 4 and 24 intervals.
func BenchmarkOpen(b *testing.B) {
	k, frames := benchFrames(b)
	for i, name := range []string{"intervals=0", "intervals=4", "intervals=24"} {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(frames[i])))
			var f Frame
			for b.Loop() {
				if err := Open(k, frames[i], &f); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "readings/s")
		})
	}
}

// BenchmarkOpenParallel uses every core (GOMAXPROCS), one Frame per
// goroutine and one shared Key, as the ingest will.
func BenchmarkOpenParallel(b *testing.B) {
	k, frames := benchFrames(b)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		var f Frame
		for pb.Next() {
			if err := Open(k, frames[1], &f); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "readings/s")
}

func BenchmarkSeal(b *testing.B) {
	k, _ := NewKey(testKey)
	fr := &Frame{Kind: KindReading, Meter: 4710001, Counter: 1, Time: t0,
		Reading: Reading{Forward: 1e6, Unit: UnitLitres, Interval: time.Hour, Intervals: make([]uint32, 4)}}
	buf := make([]byte, 0, MaxSize)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Seal(buf[:0], k, fr); err != nil {
			b.Fatal(err)
		}
	}
}

// TestKeyConcurrent: one Key serves many goroutines (run with -race).
func TestKeyConcurrent(t *testing.T) {
	k := key(t)
	b := readHex(t, "good_reading_intervals.hex")
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var f Frame
			for range 200 {
				if err := Open(k, b, &f); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
}
