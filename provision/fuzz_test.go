package provision

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

var sentinels = []error{ErrMalformed, ErrVersion, ErrSignature, ErrWrongDevice, ErrReplay, ErrUnwrap}

func wrapsSentinel(err error) bool {
	for _, s := range sentinels {
		if errors.Is(err, s) {
			return true
		}
	}
	return false
}

func seeds(f *testing.F, pattern string) {
	files, _ := filepath.Glob(filepath.Join("testdata", pattern))
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
}

// FuzzOpen: no record panics the meter's parser or Open, every rejection
// wraps a sentinel, and nothing but the stored good records opens.
func FuzzOpen(f *testing.F) {
	seeds(f, "*record*.bin")
	seeds(f, "fail_*.bin")
	b, err := os.ReadFile("testdata/device_1.bin")
	if err != nil {
		f.Fatal(err)
	}
	d, err := ParseDevice(b)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, rec []byte) {
		if _, err := ParseRecord(rec); err != nil && !wrapsSentinel(err) {
			t.Fatalf("ParseRecord error wraps no sentinel: %v", err)
		}
		p, st, err := d.Open(rec, factory)
		if err != nil {
			if !wrapsSentinel(err) {
				t.Fatalf("Open error wraps no sentinel: %v", err)
			}
			if st.Counter != 0 {
				t.Fatal("state changed on failure")
			}
			return
		}
		if p.MeterID != d.MeterID || st.Counter == 0 {
			t.Fatalf("accepted %+v", p)
		}
	})
}

func FuzzParseRequest(f *testing.F) {
	seeds(f, "*request*.bin")
	f.Fuzz(func(t *testing.T, b []byte) {
		q, err := ParseRequest(b)
		if err != nil {
			if !wrapsSentinel(err) {
				t.Fatalf("error wraps no sentinel: %v", err)
			}
			return
		}
		if q.MeterID == 0 || checkModel(q.Model) != nil {
			t.Fatalf("accepted %+v", q)
		}
	})
}

func FuzzParseDevice(f *testing.F) {
	seeds(f, "device_*.bin")
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := ParseDevice(b)
		if err != nil {
			if !wrapsSentinel(err) {
				t.Fatalf("error wraps no sentinel: %v", err)
			}
			return
		}
		if _, err := ParseRequest(d.Request()); err != nil {
			t.Fatalf("device from file makes a bad request: %v", err)
		}
	})
}
