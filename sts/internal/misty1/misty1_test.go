package misty1

import (
	"bytes"
	"encoding/hex"
	"math/rand/v2"
	"testing"
)

// RFC 2994 section 4 (also in ../../testdata/vectors.json "misty1").
var rfcVectors = []struct{ key, pt, ct string }{
	{"00112233445566778899aabbccddeeff", "0123456789abcdef", "8b1da5f56ab3d07c"},
	{"00112233445566778899aabbccddeeff", "fedcba9876543210", "04b68240b13be95d"},
}

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestRFC2994(t *testing.T) {
	for _, v := range rfcVectors {
		c, err := New(unhex(t, v.key))
		if err != nil {
			t.Fatal(err)
		}
		pt, ct := unhex(t, v.pt), unhex(t, v.ct)
		got := make([]byte, BlockSize)
		c.Encrypt(got, pt)
		if !bytes.Equal(got, ct) {
			t.Errorf("Encrypt(%s) = %x, want %s", v.pt, got, v.ct)
		}
		c.Decrypt(got, ct)
		if !bytes.Equal(got, pt) {
			t.Errorf("Decrypt(%s) = %x, want %s", v.ct, got, v.pt)
		}
	}
}

func TestRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	key := make([]byte, KeySize)
	for range 200 {
		for i := range key {
			key[i] = byte(r.Uint32())
		}
		c, err := New(key)
		if err != nil {
			t.Fatal(err)
		}
		p := r.Uint64()
		if got := c.Decrypt64(c.Encrypt64(p)); got != p {
			t.Fatalf("key %x: Decrypt(Encrypt(%016x)) = %016x", key, p, got)
		}
	}
}

func TestKeySize(t *testing.T) {
	for _, n := range []int{0, 8, 15, 17, 32} {
		if _, err := New(make([]byte, n)); err == nil {
			t.Errorf("New with a %d-byte key: no error", n)
		}
	}
}

func BenchmarkEncrypt(b *testing.B) {
	c, _ := New(make([]byte, KeySize))
	var x uint64
	for b.Loop() {
		x = c.Encrypt64(x)
	}
}

func BenchmarkKeySchedule(b *testing.B) {
	key := make([]byte, KeySize)
	var c Cipher
	for b.Loop() {
		_ = c.Init(key)
	}
}
