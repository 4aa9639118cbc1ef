// Package kmstest is the behavioural test suite every kms.KeyManager backend
// must pass. Each backend's tests call Run with a constructor of fresh, empty
// key managers, so the file store and the HSM are held to the same contract.
package kmstest

import (
	"bytes"
	"context"
	"crypto/des"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"sluice/kdf"
	"sluice/kms"
	"sluice/voucher"
)

// Caps declares what a backend supports beyond the common contract, so the
// suite checks that an unsupported operation fails cleanly (ErrUnsupported)
// instead of skipping it.
type Caps struct {
	DKGA02 bool // in-backend STS DKGA02 (needs the vending key in the clear)
}

// Run runs the suite. open returns a new, empty key manager; the suite
// closes it.
func Run(t *testing.T, open func(t *testing.T) kms.KeyManager, caps Caps) {
	tests := []struct {
		name string
		f    func(*testing.T, kms.KeyManager, Caps)
	}{
		{"CreateAndList", testCreateAndList},
		{"CreateErrors", testCreateErrors},
		{"SignEd25519", testSignEd25519},
		{"SignECDSA", testSignECDSA},
		{"KindChecks", testKindChecks},
		{"PRFAndDerive", testPRFAndDerive},
		{"Rotate", testRotate},
		{"Wrap", testWrap},
		{"ImportDKGA04", testImportDKGA04},
		{"ImportDKGA02", testImportDKGA02},
		{"Signer", testSigner},
		{"Voucher", testVoucher},
		{"Audit", testAudit},
		{"Concurrent", testConcurrent},
		{"Close", testClose},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			km := open(t)
			t.Cleanup(func() { km.Close() })
			defer func() {
				if r := recover(); r != nil {
					f, ok := r.(failure)
					if !ok {
						panic(r)
					}
					t.Fatalf("%s:%d: %v", f.file, f.line, f.err)
				}
			}()
			tc.f(t, km, caps)
		})
	}
}

var bg = context.Background()

// failure carries an unexpected error out of must to the recover in Run,
// with the line that called must.
type failure struct {
	err  error
	file string
	line int
}

// must returns v, or stops the test when err is set. It panics rather than
// taking t so that calls read must(km.Sign(...)); Run turns the panic into
// t.Fatal. Use it only on the test goroutine.
func must[T any](v T, err error) T {
	if err != nil {
		_, file, line, _ := runtime.Caller(1)
		panic(failure{err, filepath.Base(file), line})
	}
	return v
}

func wantErr(t *testing.T, err, want error, what string) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Errorf("%s: error %v, want %v", what, err, want)
	}
}

func testCreateAndList(t *testing.T, km kms.KeyManager, _ Caps) {
	for _, k := range []kms.Kind{kms.AES128, kms.AES256, kms.Ed25519, kms.ECDSAP256} {
		info := must(km.CreateKey(bg, "root/"+string(k), k))
		if info.Version != 1 || info.Kind != k || info.Name != "root/"+string(k) {
			t.Errorf("CreateKey(%s) = %+v", k, info)
		}
		if k.Signing() != (info.Public != nil) {
			t.Errorf("%s: public key %v", k, info.Public)
		}
	}
	keys := must(km.Keys(bg))
	if len(keys) != 4 {
		t.Fatalf("Keys() lists %d, want 4", len(keys))
	}
	for i := 1; i < len(keys); i++ {
		if keys[i-1].Name >= keys[i].Name {
			t.Errorf("Keys() not sorted: %s before %s", keys[i-1].Name, keys[i].Name)
		}
	}
	info := must(km.Key(bg, kms.Ref("root/ed25519")))
	if info.Kind != kms.Ed25519 || info.Version != 1 {
		t.Errorf("Key() = %+v", info)
	}
	_, err := km.Key(bg, kms.Ref("nope"))
	wantErr(t, err, kms.ErrNotFound, "Key(missing)")
}

func testCreateErrors(t *testing.T, km kms.KeyManager, _ Caps) {
	must(km.CreateKey(bg, "a", kms.AES256))
	_, err := km.CreateKey(bg, "a", kms.AES256)
	wantErr(t, err, kms.ErrExists, "second CreateKey")
	for _, name := range []string{"", "A", "/x", "x y", string(make([]byte, 65))} {
		_, err := km.CreateKey(bg, name, kms.AES256)
		wantErr(t, err, kms.ErrInvalid, "CreateKey("+name+")")
	}
	_, err = km.CreateKey(bg, "b", "rsa")
	wantErr(t, err, kms.ErrInvalid, "unknown kind")
	_, err = km.CreateKey(bg, "b", kms.STSDKGA04)
	wantErr(t, err, kms.ErrKind, "CreateKey of an imported kind")
	_, err = km.ImportKey(bg, "b", kms.AES256, make([]byte, 32))
	wantErr(t, err, kms.ErrKind, "ImportKey of a generated kind")
	_, err = km.ImportKey(bg, "b", kms.STSDKGA04, make([]byte, 16))
	wantErr(t, err, kms.ErrInvalid, "ImportKey with a short key")
	if keys := must(km.Keys(bg)); len(keys) != 1 {
		t.Errorf("failed calls changed the store: %d keys", len(keys))
	}
}

func testSignEd25519(t *testing.T, km kms.KeyManager, _ Caps) {
	must(km.CreateKey(bg, "credit", kms.Ed25519))
	pub := must(km.PublicKey(bg, kms.Ref("credit"))).(ed25519.PublicKey)
	msg := []byte("voucher body")
	sig := must(km.Sign(bg, kms.Ref("credit"), msg))
	if !ed25519.Verify(pub, msg, sig) {
		t.Fatal("Ed25519 signature does not verify")
	}
	if ed25519.Verify(pub, []byte("voucher bodz"), sig) {
		t.Fatal("signature verifies another message")
	}
}

func testSignECDSA(t *testing.T, km kms.KeyManager, _ Caps) {
	must(km.CreateKey(bg, "firmware", kms.ECDSAP256))
	pub := must(km.PublicKey(bg, kms.Ref("firmware"))).(*ecdsa.PublicKey)
	msg := []byte("firmware image")
	sig := must(km.Sign(bg, kms.Ref("firmware"), msg))
	h := sha256.Sum256(msg)
	if !ecdsa.VerifyASN1(pub, h[:], sig) {
		t.Fatal("ECDSA signature does not verify over SHA-256(msg)")
	}
}

func testKindChecks(t *testing.T, km kms.KeyManager, _ Caps) {
	must(km.CreateKey(bg, "root", kms.AES256))
	must(km.CreateKey(bg, "sig", kms.Ed25519))
	_, err := km.Sign(bg, kms.Ref("root"), []byte("x"))
	wantErr(t, err, kms.ErrKind, "Sign with an AES key")
	_, err = km.PublicKey(bg, kms.Ref("root"))
	wantErr(t, err, kms.ErrKind, "PublicKey of an AES key")
	_, err = km.PRF(bg, kms.Ref("sig"), []byte("x"))
	wantErr(t, err, kms.ErrKind, "PRF with a signing key")
	_, err = km.Wrap(bg, kms.Ref("sig"), []byte("x"), nil)
	wantErr(t, err, kms.ErrKind, "Wrap with a signing key")
	_, _, err = kms.Derive(bg, km, kms.Ref("sig"), []byte("l"), nil, 128)
	wantErr(t, err, kms.ErrKind, "Derive under a signing key")
	_, err = km.Sign(bg, kms.Ref("missing"), []byte("x"))
	wantErr(t, err, kms.ErrNotFound, "Sign with a missing key")
}

func testPRFAndDerive(t *testing.T, km kms.KeyManager, _ Caps) {
	for _, k := range []kms.Kind{kms.AES128, kms.AES256} {
		name := "meter-root-" + string(k)
		must(km.CreateKey(bg, name, k))
		a := must(km.PRF(bg, kms.Ref(name), []byte("msg")))
		b := must(km.PRF(bg, kms.Ref(name), []byte("msg")))
		c := must(km.PRF(bg, kms.Ref(name), []byte("msh")))
		if len(a) != 16 || !bytes.Equal(a, b) || bytes.Equal(a, c) {
			t.Errorf("%s PRF: %x %x %x", k, a, b, c)
		}
		// Derive is the documented SP 800-108 profile over this PRF: its first
		// block is PRF(0x01 || label || 0x00 || context || [L]_16).
		key, info := must2(kms.Derive(bg, km, kms.Ref(name), []byte("card"), []byte("meter-7"), 256))
		first := must(km.PRF(bg, kms.Ref(name), append([]byte{1}, kdf.FixedInput([]byte("card"), []byte("meter-7"), 256)...)))
		if len(key) != 32 || !bytes.Equal(key[:16], first) || info.Version != 1 {
			t.Errorf("%s Derive = %x (v%d), first block %x", k, key, info.Version, first)
		}
	}
}

func must2(b []byte, i kms.KeyInfo, err error) ([]byte, kms.KeyInfo) {
	if err != nil {
		_, file, line, _ := runtime.Caller(1)
		panic(failure{err, filepath.Base(file), line})
	}
	return b, i
}

func testRotate(t *testing.T, km kms.KeyManager, _ Caps) {
	must(km.CreateKey(bg, "root", kms.AES128))
	must(km.CreateKey(bg, "credit", kms.Ed25519))
	v1 := must(km.PRF(bg, kms.Ref("root"), []byte("m")))
	pub1 := must(km.PublicKey(bg, kms.Ref("credit"))).(ed25519.PublicKey)

	info := must(km.Rotate(bg, "root"))
	if info.Version != 2 || info.Kind != kms.AES128 {
		t.Fatalf("Rotate = %+v", info)
	}
	must(km.Rotate(bg, "credit"))
	// The old version still answers the same; the new one differs and is
	// the default.
	if got := must(km.PRF(bg, kms.KeyRef{Name: "root", Version: 1}, []byte("m"))); !bytes.Equal(got, v1) {
		t.Error("version 1 changed after rotation")
	}
	v2 := must(km.PRF(bg, kms.Ref("root"), []byte("m")))
	if bytes.Equal(v2, v1) {
		t.Error("rotation did not change the newest key")
	}
	if got := must(km.PRF(bg, kms.KeyRef{Name: "root", Version: 2}, []byte("m"))); !bytes.Equal(got, v2) {
		t.Error("version 0 is not the newest version")
	}
	pub2 := must(km.PublicKey(bg, kms.Ref("credit"))).(ed25519.PublicKey)
	if pub2.Equal(pub1) {
		t.Error("rotated signing key has the same public key")
	}
	sig := must(km.Sign(bg, kms.KeyRef{Name: "credit", Version: 1}, []byte("old")))
	if !ed25519.Verify(pub1, []byte("old"), sig) {
		t.Error("version 1 no longer signs as version 1")
	}
	if keys := must(km.Keys(bg)); len(keys) != 4 {
		t.Errorf("Keys() lists %d versions, want 4", len(keys))
	}
	_, err := km.PRF(bg, kms.KeyRef{Name: "root", Version: 3}, []byte("m"))
	wantErr(t, err, kms.ErrNotFound, "PRF with version 3")
	_, err = km.Rotate(bg, "missing")
	wantErr(t, err, kms.ErrNotFound, "Rotate(missing)")
}

func testWrap(t *testing.T, km kms.KeyManager, _ Caps) {
	must(km.CreateKey(bg, "kek", kms.AES256))
	must(km.CreateKey(bg, "kek2", kms.AES128))
	secret := []byte("meter 42 telemetry key 16B")
	aad := []byte("meter=42;purpose=telemetry")
	w := must(km.Wrap(bg, kms.Ref("kek"), secret, aad))
	w2 := must(km.Wrap(bg, kms.Ref("kek"), secret, aad))
	if len(w) != 12+len(secret)+16 || bytes.Equal(w, w2) {
		t.Errorf("wrap: %d bytes, repeated wraps equal: %v", len(w), bytes.Equal(w, w2))
	}
	if got := must(km.Unwrap(bg, kms.Ref("kek"), w, aad)); !bytes.Equal(got, secret) {
		t.Fatalf("unwrap = %q", got)
	}
	_, err := km.Unwrap(bg, kms.Ref("kek"), w, []byte("meter=43;purpose=telemetry"))
	wantErr(t, err, kms.ErrUnwrap, "unwrap with other aad")
	_, err = km.Unwrap(bg, kms.Ref("kek2"), w, aad)
	wantErr(t, err, kms.ErrUnwrap, "unwrap under another key")
	for i := range w {
		c := bytes.Clone(w)
		c[i] ^= 0x01
		if _, err := km.Unwrap(bg, kms.Ref("kek"), c, aad); !errors.Is(err, kms.ErrUnwrap) {
			t.Fatalf("byte %d flipped: %v", i, err)
		}
	}
	_, err = km.Unwrap(bg, kms.Ref("kek"), w[:20], aad)
	wantErr(t, err, kms.ErrUnwrap, "truncated")
}

// A DKGA04 vending key is a 160-bit HMAC-SHA-256 key: the PRF must be exactly
// that HMAC, however the backend stores it.
func testImportDKGA04(t *testing.T, km kms.KeyManager, _ Caps) {
	vk := []byte("0123456789abcdefghij")
	info := must(km.ImportKey(bg, "sts/600727/krn1", kms.STSDKGA04, vk))
	if info.Version != 1 || info.Kind != kms.STSDKGA04 {
		t.Fatalf("ImportKey = %+v", info)
	}
	msg := []byte("DKGA04 message")
	m := hmac.New(sha256.New, vk)
	m.Write(msg)
	if got := must(km.PRF(bg, kms.Ref("sts/600727/krn1"), msg)); !bytes.Equal(got, m.Sum(nil)) {
		t.Fatalf("DKGA04 PRF = %x, want HMAC-SHA-256 %x", got, m.Sum(nil))
	}
	info = must(km.ImportKey(bg, "sts/600727/krn1", kms.STSDKGA04, []byte("jihgfedcba9876543210")))
	if info.Version != 2 {
		t.Errorf("second import is version %d, want 2", info.Version)
	}
	_, err := km.Rotate(bg, "sts/600727/krn1")
	wantErr(t, err, kms.ErrKind, "Rotate of an imported key")
	_, err = km.ImportKey(bg, "sts/600727/krn1", kms.STSDKGA02, make([]byte, 8))
	wantErr(t, err, kms.ErrKind, "importing another kind under the same name")
}

func testImportDKGA02(t *testing.T, km kms.KeyManager, caps Caps) {
	vk := []byte{0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef}
	_, err := km.ImportKey(bg, "sts/legacy", kms.STSDKGA02, vk)
	if !caps.DKGA02 {
		wantErr(t, err, kms.ErrUnsupported, "DKGA02 import on a backend without it")
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	data := []byte{0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88}
	c, _ := des.NewCipher(vk)
	want := make([]byte, 8)
	c.Encrypt(want, data)
	subtle.XORBytes(want, want, data)
	subtle.XORBytes(want, want, vk)
	if got := must(km.PRF(bg, kms.Ref("sts/legacy"), data)); !bytes.Equal(got, want) {
		t.Fatalf("DKGA02 PRF = %x, want %x", got, want)
	}
	_, err = km.PRF(bg, kms.Ref("sts/legacy"), data[:7])
	wantErr(t, err, kms.ErrInvalid, "DKGA02 PRF on 7 bytes")
}

func testSigner(t *testing.T, km kms.KeyManager, _ Caps) {
	must(km.CreateKey(bg, "credit", kms.Ed25519))
	s := must(kms.Signer(bg, km, kms.Ref("credit")))
	// Rotating after the Signer was made must not change the key it uses.
	must(km.Rotate(bg, "credit"))
	sig := must(s.Sign(nil, []byte("m"), nil))
	if !ed25519.Verify(s.Public().(ed25519.PublicKey), []byte("m"), sig) {
		t.Fatal("Signer signature does not verify under its Public()")
	}
	must(km.CreateKey(bg, "fw", kms.ECDSAP256))
	_, err := kms.Signer(bg, km, kms.Ref("fw"))
	wantErr(t, err, kms.ErrKind, "Signer over ECDSA")
}

// testVoucher: a voucher signed through the key manager opens at a meter
// that holds only the public key.
func testVoucher(t *testing.T, km kms.KeyManager, _ Caps) {
	must(km.CreateKey(bg, "credit-signing", kms.Ed25519))
	s := must(kms.Signer(bg, km, kms.Ref("credit-signing")))
	now := time.Date(2026, 11, 25, 8, 0, 0, 0, time.UTC)
	b := must(voucher.Sign(&voucher.Voucher{Kind: voucher.KindCredit, MeterID: 31234567890, Sequence: 1,
		Issued: now, Expires: now.Add(24 * time.Hour), Unit: voucher.UnitLitres, Quantity: 6000}, s))
	ring := voucher.Keyring{{Role: voucher.RoleCredit, Public: s.Public().(ed25519.PublicKey)}}
	v, err := voucher.Open(b, ring, 31234567890, now)
	if err != nil || v.Quantity != 6000 {
		t.Fatalf("voucher signed by the key manager: %v", err)
	}
}

type recorder struct {
	mu     sync.Mutex
	events []kms.Event
	fail   error
}

func (r *recorder) Record(_ context.Context, e kms.Event) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail != nil {
		return r.fail
	}
	r.events = append(r.events, e)
	return nil
}

func testAudit(t *testing.T, km kms.KeyManager, _ Caps) {
	rec := &recorder{}
	a := kms.WithAudit(km, rec)
	must(a.CreateKey(bg, "credit", kms.Ed25519))
	must(a.Sign(bg, kms.Ref("credit"), []byte("hello")))
	_, err := a.Sign(bg, kms.Ref("missing"), nil)
	wantErr(t, err, kms.ErrNotFound, "audited Sign(missing)")
	if len(rec.events) != 3 || rec.events[0].Op != kms.OpCreate || rec.events[1].Op != kms.OpSign ||
		rec.events[1].Bytes != 5 || rec.events[2].Err == nil {
		t.Fatalf("events %+v", rec.events)
	}
	rec.fail = errors.New("audit log full")
	if sig, err := a.Sign(bg, kms.Ref("credit"), []byte("hello")); err == nil || sig != nil {
		t.Fatal("signature released although the audit record failed")
	}
}

func testConcurrent(t *testing.T, km kms.KeyManager, _ Caps) {
	must(km.CreateKey(bg, "root", kms.AES128))
	must(km.CreateKey(bg, "credit", kms.Ed25519))
	pub := must(km.PublicKey(bg, kms.Ref("credit"))).(ed25519.PublicKey)
	want := must(km.PRF(bg, kms.Ref("root"), []byte("m")))
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 20 {
				got, err := km.PRF(bg, kms.Ref("root"), []byte("m"))
				if err != nil || !bytes.Equal(got, want) {
					t.Errorf("concurrent PRF: %x, %v", got, err)
					return
				}
				sig, err := km.Sign(bg, kms.Ref("credit"), []byte("m"))
				if err != nil || !ed25519.Verify(pub, []byte("m"), sig) {
					t.Errorf("concurrent Sign: %v", err)
					return
				}
			}
		}()
	}
	wg.Wait()
}

func testClose(t *testing.T, km kms.KeyManager, _ Caps) {
	must(km.CreateKey(bg, "root", kms.AES128))
	if err := km.Close(); err != nil {
		t.Fatal(err)
	}
	_, err := km.PRF(bg, kms.Ref("root"), []byte("m"))
	wantErr(t, err, kms.ErrClosed, "PRF after Close")
	_, err = km.Keys(bg)
	wantErr(t, err, kms.ErrClosed, "Keys after Close")
	if err := km.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}
