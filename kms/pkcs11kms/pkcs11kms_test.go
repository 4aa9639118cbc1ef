//go:build cgo && !nopkcs11

package pkcs11kms

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/miekg/pkcs11"

	"sluice/cmac"
	"sluice/internal/testenv"
	"sluice/kdf"
	"sluice/kms"
	"sluice/kms/kmstest"
)

var softhsmModules = []string{
	"/usr/lib/softhsm/libsofthsm2.so",
	"/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
	"/usr/local/lib/softhsm/libsofthsm2.so",
}

// newToken makes a SoftHSM2 token in a directory private to the test: its
// own configuration file (SOFTHSM2_CONF) naming its own token directory, so
// tests never see each other's keys or the machine's tokens.
func newToken(t testing.TB) Config {
	t.Helper()
	module := ""
	for _, m := range softhsmModules {
		if _, err := os.Stat(m); err == nil {
			module = m
			break
		}
	}
	if module == "" {
		testenv.Missing(t, "SoftHSM2 module (Debian package softhsm2) not found in %v", softhsmModules)
	}
	util, err := exec.LookPath("softhsm2-util")
	if err != nil {
		testenv.Missing(t, "softhsm2-util: %v", err)
	}
	dir := t.TempDir()
	tokens := filepath.Join(dir, "tokens")
	if err := os.Mkdir(tokens, 0o700); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "softhsm2.conf")
	cfg := "directories.tokendir = " + tokens + "\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n"
	if err := os.WriteFile(conf, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SOFTHSM2_CONF", conf)
	out, err := exec.Command(util, "--init-token", "--free", "--label", "sluice-test",
		"--pin", "1234", "--so-pin", "5678").CombinedOutput()
	if err != nil {
		t.Fatalf("softhsm2-util --init-token: %v\n%s", err, out)
	}
	return Config{Module: module, Token: "sluice-test", PIN: "1234"}
}

func openToken(t testing.TB, cfg Config) *KMS {
	t.Helper()
	k, err := open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { k.Close() })
	return k
}

func TestKeyManager(t *testing.T) {
	kmstest.Run(t, func(t *testing.T) kms.KeyManager {
		return openToken(t, newToken(t))
	}, kmstest.Caps{DKGA02: false})
}

func TestOpenErrors(t *testing.T) {
	cfg := newToken(t)
	bad := cfg
	bad.PIN = "0000"
	if _, err := open(bad); err == nil || !isRV(errors.Unwrap(err), pkcs11.CKR_PIN_INCORRECT) {
		t.Errorf("wrong PIN: %v", err)
	}
	bad = cfg
	bad.Token = "no-such-token"
	if _, err := open(bad); !errors.Is(err, kms.ErrNotFound) {
		t.Errorf("missing token: %v", err)
	}
	bad = cfg
	bad.Module = filepath.Join(t.TempDir(), "missing.so")
	if _, err := open(bad); err == nil {
		t.Error("missing module opened")
	}
}

// TestKeysStayInToken: the keys are token objects, found again by a new
// session after the module is unloaded.
func TestKeysStayInToken(t *testing.T) {
	cfg := newToken(t)
	ctx := context.Background()
	k := openToken(t, cfg)
	k.CreateKey(ctx, "credit", kms.Ed25519)
	k.Rotate(ctx, "credit")
	pub, _ := k.PublicKey(ctx, kms.KeyRef{Name: "credit", Version: 1})
	k.Close()

	k2 := openToken(t, cfg)
	keys, err := k2.Keys(ctx)
	if err != nil || len(keys) != 2 {
		t.Fatalf("after reopening: %d keys, %v", len(keys), err)
	}
	got, _ := k2.PublicKey(ctx, kms.KeyRef{Name: "credit", Version: 1})
	if !got.(ed25519.PublicKey).Equal(pub) {
		t.Error("credit@1 public key changed")
	}
}

// TestRootKeyNotExportable proves the property the HSM backend exists for:
// neither the value of a root key nor of a signing or vending key can be
// read, wrapped out, or made extractable, by anyone holding the user PIN.
func TestRootKeyNotExportable(t *testing.T) {
	k := openToken(t, newToken(t))
	ctx := context.Background()
	k.CreateKey(ctx, "meter-root", kms.AES256)
	k.CreateKey(ctx, "credit", kms.Ed25519)
	k.CreateKey(ctx, "firmware", kms.ECDSAP256)
	k.ImportKey(ctx, "sts/600727/krn1", kms.STSDKGA04, []byte("0123456789abcdefghij"))

	// A wrapping key an attacker with the PIN could create.
	kek, err := k.p.GenerateKey(k.session, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_KEY_GEN, nil)},
		[]*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
			pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_AES),
			pkcs11.NewAttribute(pkcs11.CKA_VALUE_LEN, 32),
			pkcs11.NewAttribute(pkcs11.CKA_TOKEN, false),
			pkcs11.NewAttribute(pkcs11.CKA_WRAP, true),
			pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, true),
			pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, false),
		})
	if err != nil {
		t.Fatal(err)
	}

	for _, name := range []string{"meter-root", "credit", "firmware", "sts/600727/krn1"} {
		k.mu.Lock()
		o, err := k.lookup(kms.Ref(name))
		k.mu.Unlock()
		if err != nil {
			t.Fatal(err)
		}
		h := o.handle
		if _, err := k.p.GetAttributeValue(k.session, h, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_VALUE, nil)}); !isRV(err, pkcs11.CKR_ATTRIBUTE_SENSITIVE) {
			t.Errorf("%s: reading CKA_VALUE: %v, want CKR_ATTRIBUTE_SENSITIVE", name, err)
		}
		attrs, err := k.p.GetAttributeValue(k.session, h, []*pkcs11.Attribute{
			pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, nil),
			pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, nil),
			pkcs11.NewAttribute(pkcs11.CKA_NEVER_EXTRACTABLE, nil),
			pkcs11.NewAttribute(pkcs11.CKA_ALWAYS_SENSITIVE, nil),
		})
		if err != nil {
			t.Fatal(err)
		}
		want := []byte{0, 1, 1, 1}
		if o.info.Kind.Imported() {
			// An imported key was outside once: it is sensitive and not
			// extractable now, but the token truthfully says it was not
			// always so.
			want = []byte{0, 1, 0, 0}
		}
		for i, a := range attrs {
			if len(a.Value) != 1 || a.Value[0] != want[i] {
				t.Errorf("%s: attribute %#x = %v, want %d", name, a.Type, a.Value, want[i])
			}
		}
		for _, mech := range []uint{pkcs11.CKM_AES_KEY_WRAP, pkcs11.CKM_AES_KEY_WRAP_PAD} {
			if w, err := k.p.WrapKey(k.session, []*pkcs11.Mechanism{pkcs11.NewMechanism(mech, nil)}, kek, h); err == nil {
				t.Errorf("%s: wrapped out with mechanism %#x: %x", name, mech, w)
			}
		}
		err = k.p.SetAttributeValue(k.session, h, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, true)})
		if err == nil {
			t.Errorf("%s: CKA_EXTRACTABLE could be set to true", name)
		}
		err = k.p.SetAttributeValue(k.session, h, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, false)})
		if err == nil {
			t.Errorf("%s: CKA_SENSITIVE could be cleared", name)
		}
	}
}

// TestInTokenCMACMatchesSoftware: the in-token PRF is AES-CMAC exactly, so
// a meter key derived in the HSM equals the one derived in software from the
// same root. The root is planted with a known value only for this test.
func TestInTokenCMACMatchesSoftware(t *testing.T) {
	k := openToken(t, newToken(t))
	ctx := context.Background()
	root := []byte{0x2b, 0x7e, 0x15, 0x16, 0x28, 0xae, 0xd2, 0xa6, 0xab, 0xf7, 0x15, 0x88, 0x09, 0xcf, 0x4f, 0x3c}
	_, err := k.p.CreateObject(k.session, append(protect("kat", 1),
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_AES),
		pkcs11.NewAttribute(pkcs11.CKA_VALUE, root),
		pkcs11.NewAttribute(pkcs11.CKA_SIGN, true),
	))
	if err != nil {
		t.Fatal(err)
	}
	// RFC 4493 example 2.
	msg := []byte{0x6b, 0xc1, 0xbe, 0xe2, 0x2e, 0x40, 0x9f, 0x96, 0xe9, 0x3d, 0x7e, 0x11, 0x73, 0x93, 0x17, 0x2a}
	want := []byte{0x07, 0x0a, 0x16, 0xb4, 0x6b, 0x4d, 0x41, 0x44, 0xf7, 0x9b, 0xdd, 0x9d, 0xd0, 0x4a, 0x28, 0x7c}
	got, err := k.PRF(ctx, kms.Ref("kat"), msg)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("in-token CMAC = %x, %v; want %x", got, err, want)
	}
	for _, n := range []int{0, 1, 15, 16, 17, 40, 64} {
		m := bytes.Repeat([]byte{0xa5}, n)
		hsm, _ := k.PRF(ctx, kms.Ref("kat"), m)
		sw, _ := cmac.Sum(root, m)
		if !bytes.Equal(hsm, sw) {
			t.Errorf("%d-byte message: token %x, software %x", n, hsm, sw)
		}
	}
	hsmKey, _, err := kms.Derive(ctx, k, kms.Ref("kat"), []byte("card"), []byte("meter-42"), 256)
	if err != nil {
		t.Fatal(err)
	}
	prf, _ := kdf.CMAC(root)
	swKey, _ := kdf.Derive(ctx, prf, []byte("card"), []byte("meter-42"), 256)
	if !bytes.Equal(hsmKey, swKey) {
		t.Fatalf("derived in token %x, in software %x", hsmKey, swKey)
	}
}

// The benchmarks measure the operations the head-end runs per vend inside
// the token: one Ed25519 signature per voucher, one CMAC block per 128 bits
// of derived key.
func BenchmarkSignEd25519(b *testing.B) {
	k := openToken(b, newToken(b))
	ctx := context.Background()
	if _, err := k.CreateKey(ctx, "credit", kms.Ed25519); err != nil {
		b.Fatal(err)
	}
	ref := kms.KeyRef{Name: "credit", Version: 1}
	msg := make([]byte, 31+18)
	for b.Loop() {
		if _, err := k.Sign(ctx, ref, msg); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDeriveMeterKey(b *testing.B) {
	k := openToken(b, newToken(b))
	ctx := context.Background()
	if _, err := k.CreateKey(ctx, "meter-root", kms.AES256); err != nil {
		b.Fatal(err)
	}
	ref := kms.KeyRef{Name: "meter-root", Version: 1}
	for b.Loop() {
		if _, _, err := kms.Derive(ctx, k, ref, []byte("card"), []byte("31234567890"), 128); err != nil {
			b.Fatal(err)
		}
	}
}

// TestOneKMSPerModule: a second key manager on a module already in use is
// refused, and refusing it leaves the first one working.
func TestOneKMSPerModule(t *testing.T) {
	cfg := newToken(t)
	ctx := context.Background()
	k := openToken(t, cfg)
	k.CreateKey(ctx, "root", kms.AES128)
	if k2, err := open(cfg); err == nil {
		k2.Close()
		t.Fatal("second key manager on the same module opened")
	}
	if _, err := k.PRF(ctx, kms.Ref("root"), []byte("m")); err != nil {
		t.Fatalf("first key manager broken by the refused second: %v", err)
	}
	k.Close()
	k3 := openToken(t, cfg)
	if _, err := k3.PRF(ctx, kms.Ref("root"), []byte("m")); err != nil {
		t.Fatalf("reopening after Close: %v", err)
	}
}
