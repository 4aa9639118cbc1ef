package kdf

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatalf("bad hex %q: %v", s, err)
	}
	return b
}

// TestCAVP checks counter mode against the NIST CAVP KBKDF vectors for
// CMAC-AES128 with the counter before the fixed input data.
func TestCAVP(t *testing.T) {
	f, err := os.Open("testdata/kbkdf_ctr_cmac_aes128.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<16)
	n := 0
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		fields := strings.Fields(text)
		if len(fields) != 5 {
			t.Fatalf("line %d: %d fields, want 5", line, len(fields))
		}
		r, _ := strconv.Atoi(fields[0])
		l, _ := strconv.Atoi(fields[1])
		ki, fixed, ko := unhex(t, fields[2]), unhex(t, fields[3]), unhex(t, fields[4])
		prf, err := CMAC(ki)
		if err != nil {
			t.Fatal(err)
		}
		got, err := CounterMode(context.Background(), prf, r, fixed, l)
		if err != nil {
			t.Fatalf("line %d: %v", line, err)
		}
		if !bytes.Equal(got, ko) {
			t.Errorf("line %d (r=%d, L=%d): got %x, want %x", line, r, l, got, ko)
		}
		n++
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if n < 10 {
		t.Fatalf("only %d vectors read", n)
	}
}

type sharedVectors struct {
	CMAC struct {
		Key   string `json:"key"`
		Cases []struct {
			Message string `json:"message"`
			MAC     string `json:"mac"`
		} `json:"cases"`
	} `json:"aes_cmac_rfc4493"`
	AN10922 struct {
		Key  string `json:"key"`
		M    string `json:"m"`
		KDiv string `json:"diversified_key"`
	} `json:"key_diversification_an10922"`
}

func loadShared(t *testing.T) sharedVectors {
	t.Helper()
	raw, err := os.ReadFile("testdata/rfc4493_an10922.json")
	if err != nil {
		t.Fatal(err)
	}
	var v sharedVectors
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatal(err)
	}
	return v
}

// TestCMACPRF checks the software PRF is RFC 4493 AES-CMAC, including when one
// PRF value is reused for messages of different lengths.
func TestCMACPRF(t *testing.T) {
	v := loadShared(t)
	prf, err := CMAC(unhex(t, v.CMAC.Key))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ { // twice: the PRF must not carry state between calls
		for _, c := range v.CMAC.Cases {
			got, err := prf(context.Background(), unhex(t, c.Message))
			if err != nil {
				t.Fatal(err)
			}
			if want := unhex(t, c.MAC); !bytes.Equal(got, want) {
				t.Errorf("CMAC(%s...) = %x, want %x", c.Message[:min(8, len(c.Message))], got, want)
			}
		}
	}
}

func TestCMACPRFConcurrent(t *testing.T) {
	v := loadShared(t)
	prf, _ := CMAC(unhex(t, v.CMAC.Key))
	c := v.CMAC.Cases[3]
	msg, want := unhex(t, c.Message), unhex(t, c.MAC)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 100 {
				got, _ := prf(context.Background(), msg)
				if !bytes.Equal(got, want) {
					t.Error("concurrent CMAC differs")
					return
				}
			}
		}()
	}
	wg.Wait()
}

func TestDiversifyAN10922(t *testing.T) {
	v := loadShared(t)
	got, err := DiversifyAN10922(unhex(t, v.AN10922.Key), unhex(t, v.AN10922.M))
	if err != nil {
		t.Fatal(err)
	}
	if want := unhex(t, v.AN10922.KDiv); !bytes.Equal(got, want) {
		t.Fatalf("K_div = %x, want %x", got, want)
	}
	if _, err := DiversifyAN10922(make([]byte, 32), []byte{1}); err == nil {
		t.Error("accepted a 32-byte key for AES-128 diversification")
	}
	for _, n := range []int{0, 32} {
		if _, err := DiversifyAN10922(make([]byte, 16), make([]byte, n)); err == nil {
			t.Errorf("accepted a %d-byte diversification input", n)
		}
	}
}

func TestFixedInputLayout(t *testing.T) {
	got := FixedInput([]byte("card"), []byte{0x01, 0x02}, 128)
	want := []byte{'c', 'a', 'r', 'd', 0x00, 0x01, 0x02, 0x00, 0x80}
	if !bytes.Equal(got, want) {
		t.Fatalf("FixedInput = %x, want %x", got, want)
	}
}

// TestDeriveProfile pins Derive to counter mode over FixedInput with an
// 8-bit counter, so the documented profile is the one implemented.
func TestDeriveProfile(t *testing.T) {
	ctx := context.Background()
	prf, _ := CMAC(unhex(t, "000102030405060708090a0b0c0d0e0f"))
	for _, bits := range []int{64, 128, 160, 256, 512} {
		got, err := Derive(ctx, prf, []byte("telemetry"), []byte("meter-42"), bits)
		if err != nil {
			t.Fatal(err)
		}
		want, _ := CounterMode(ctx, prf, 8, FixedInput([]byte("telemetry"), []byte("meter-42"), bits), bits)
		if !bytes.Equal(got, want) || len(got) != bits/8 {
			t.Errorf("bits=%d: Derive = %x, want %x", bits, got, want)
		}
		// The first block is literally CMAC(K, 01 || label || 00 || context || L).
		first, _ := prf(ctx, append([]byte{1}, FixedInput([]byte("telemetry"), []byte("meter-42"), bits)...))
		if !bytes.Equal(got[:min(16, len(got))], first[:min(16, len(got))]) {
			t.Errorf("bits=%d: first block differs from the documented PRF input", bits)
		}
	}
}

// TestDeriveSeparation: keys for different purposes, devices or lengths are
// unrelated, including the classic ambiguity of moving bytes between label
// and context.
func TestDeriveSeparation(t *testing.T) {
	ctx := context.Background()
	prf, _ := CMAC(make([]byte, 16))
	seen := map[string]string{}
	for _, c := range []struct{ label, context string }{
		{"card", "1"}, {"card", "2"}, {"telemetry", "1"}, {"car", "d1"}, {"card1", ""},
	} {
		k, err := Derive(ctx, prf, []byte(c.label), []byte(c.context), 128)
		if err != nil {
			t.Fatal(err)
		}
		if prev, ok := seen[string(k)]; ok {
			t.Errorf("%q/%q derives the same key as %s", c.label, c.context, prev)
		}
		seen[string(k)] = c.label + "/" + c.context
	}
	a, _ := Derive(ctx, prf, []byte("card"), []byte("1"), 128)
	b, _ := Derive(ctx, prf, []byte("card"), []byte("1"), 256)
	if bytes.Equal(a, b[:16]) {
		t.Error("a 128-bit key is a prefix of the 256-bit key for the same purpose")
	}
}

func TestLengthErrors(t *testing.T) {
	ctx := context.Background()
	prf, _ := CMAC(make([]byte, 16))
	for _, bits := range []int{0, -8, 7, MaxBits + 8} {
		if _, err := Derive(ctx, prf, nil, nil, bits); !errors.Is(err, ErrLength) {
			t.Errorf("Derive(%d bits) error = %v, want ErrLength", bits, err)
		}
	}
	if _, err := Derive(ctx, prf, nil, nil, MaxBits); err != nil {
		t.Errorf("Derive(MaxBits) = %v", err)
	}
	if _, err := CounterMode(ctx, prf, 12, nil, 128); err == nil {
		t.Error("accepted a 12-bit counter")
	}
}

func TestPRFErrorPropagates(t *testing.T) {
	boom := errors.New("token removed")
	prf := func(context.Context, []byte) ([]byte, error) { return nil, boom }
	if _, err := Derive(context.Background(), prf, []byte("card"), nil, 128); !errors.Is(err, boom) {
		t.Fatalf("error = %v, want the PRF's", err)
	}
}

func BenchmarkDerive128(b *testing.B) {
	prf, _ := CMAC(make([]byte, 16))
	ctx := context.Background()
	ctxt := []byte("00000000042")
	for b.Loop() {
		if _, err := Derive(ctx, prf, []byte("card"), ctxt, 128); err != nil {
			b.Fatal(err)
		}
	}
}
