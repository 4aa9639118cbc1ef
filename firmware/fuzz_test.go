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
