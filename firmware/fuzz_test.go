package firmware

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// FuzzParse: no input panics the parser, every rejection wraps a sentinel,
// and an accepted image re-parses to the same fields.
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "*.img"))
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	v, err := NewVerifier(testKey(1).Public())
	if err != nil {
		f.Fatal(err)
	}
	sentinels := []error{ErrBadMagic, ErrTruncated, ErrTrailingData, ErrBadHeader, ErrTLVLength, ErrUnknownTLV,
		ErrMisplacedTLV, ErrDuplicateTLV, ErrMissingTLV, ErrHashMismatch, ErrKeyHash, ErrBadSignature}
	f.Fuzz(func(t *testing.T, b []byte) {
		im, err := v.Verify(b)
		if err != nil {
			for _, s := range sentinels {
				if errors.Is(err, s) {
					return
				}
			}
			t.Fatalf("error wraps no sentinel: %v", err)
		}
		again, err := Parse(im.Bytes())
		if err != nil || again.Header != im.Header || again.SecurityCounter != im.SecurityCounter ||
			!bytes.Equal(again.Signature, im.Signature) {
			t.Fatalf("accepted image does not re-parse: %v", err)
		}
	})
}

func benchmarkVerify(b *testing.B, size int, p256 bool) {
	var v *Verifier
	var img []byte
	if p256 {
		k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		img = mustSign(b, make([]byte, size), k, goldenOpts)
		v = mustVerifier(b, &k.PublicKey)
	} else {
		img = mustSign(b, make([]byte, size), testKey(1), goldenOpts)
		v = mustVerifier(b, testKey(1).Public())
	}
	b.SetBytes(int64(len(img)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Verify(img); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerifyEd25519_4KiB(b *testing.B)   { benchmarkVerify(b, 4<<10, false) }
func BenchmarkVerifyEd25519_256KiB(b *testing.B) { benchmarkVerify(b, 256<<10, false) }
func BenchmarkVerifyP256_256KiB(b *testing.B)    { benchmarkVerify(b, 256<<10, true) }

func BenchmarkSignEd25519_256KiB(b *testing.B) {
	app := make([]byte, 256<<10)
	for b.Loop() {
		mustSign(b, app, testKey(1), goldenOpts)
	}
}

// FuzzParseSecrets: no key file panics the parser, every secret it returns
// is long enough to search for, and Scan finds each one in an image made of
// it.
func FuzzParseSecrets(f *testing.F) {
	f.Add([]byte("root: 00112233445566778899aabbccddeeff\n"))
	f.Add([]byte(`{"k":"ABEiM0RVZneImaq7zN3u/w=="}`))
	f.Add([]byte("-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n-----END PRIVATE KEY-----\n"))
	f.Add([]byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15})
	f.Fuzz(func(t *testing.T, data []byte) {
		secrets, err := ParseSecrets("fuzz", data)
		if err != nil {
			return
		}
		for _, s := range secrets {
			if len(s.Value) < MinSecretSize {
				t.Fatalf("short secret %q", s.Name)
			}
			if len(Scan(append([]byte("xx"), s.Value...), []Secret{s})) == 0 {
				t.Fatalf("secret %q not found in itself", s.Name)
			}
		}
	})
}
