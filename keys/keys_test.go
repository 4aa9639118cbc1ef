package keys

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"sluice/kdf"
	"sluice/kms"
	"sluice/kms/filekms"
	"sluice/voucher"
)

var bg = context.Background()

func newKM(t testing.TB) kms.KeyManager {
	t.Helper()
	s, err := filekms.Create(filepath.Join(t.TempDir(), "keys.sealed"), []byte("pw"),
		filekms.Options{Time: 1, MemoryKiB: 64, Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestLabelContextBytes(t *testing.T) {
	if got, want := Label(Card, 0x0102), append([]byte("sluice/meter/card"), 0x01, 0x02); !bytes.Equal(got, want) {
		t.Errorf("Label = %x, want %x", got, want)
	}
	if got, want := Context(0x0102030405060708), []byte{1, 2, 3, 4, 5, 6, 7, 8}; !bytes.Equal(got, want) {
		t.Errorf("Context = %x, want %x", got, want)
	}
}

// TestMeterKeyVectors pins the derivation to the examples in docs/keys.md,
// which were checked against an independent AES-CMAC.
func TestMeterKeyVectors(t *testing.T) {
	root := make([]byte, 32)
	for i := range root {
		root[i] = byte(i)
	}
	prf, _ := kdf.CMAC(root)
	f, err := os.Open("testdata/meter_keys.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	n := 0
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fs := strings.Fields(line)
		v, _ := strconv.Atoi(fs[1])
		p := Purpose(fs[0])
		fixed := kdf.FixedInput(Label(p, uint16(v)), Context(31234567890), DeviceKeyBits)
		if hex.EncodeToString(fixed) != fs[2] {
			t.Errorf("%s v%d: fixed input %x, want %s", p, v, fixed, fs[2])
		}
		k, err := kdf.Derive(bg, prf, Label(p, uint16(v)), Context(31234567890), DeviceKeyBits)
		if err != nil || hex.EncodeToString(k) != fs[3] {
			t.Errorf("%s v%d: key %x (%v), want %s", p, v, k, err, fs[3])
		}
		n++
	}
	if n != 6 {
		t.Fatalf("%d vectors", n)
	}
}

// TestMeterKeyThroughKMS: MeterKey is the documented profile run by the
// KMS PRF, and every input (meter, purpose, key version, root version)
// separates keys.
func TestMeterKeyThroughKMS(t *testing.T) {
	km := newKM(t)
	if _, err := Init(bg, km, ""); err != nil {
		t.Fatal(err)
	}
	k, info, err := MeterKey(bg, km, kms.Ref(MeterRoot), 42, Card, 1)
	if err != nil {
		t.Fatal(err)
	}
	first, _ := km.PRF(bg, info.Ref(), append([]byte{1}, kdf.FixedInput(Label(Card, 1), Context(42), 128)...))
	if len(k) != 16 || !bytes.Equal(k, first) || info.Version != 1 {
		t.Fatalf("MeterKey = %x (root v%d), want %x", k, info.Version, first)
	}
	seen := map[string]string{string(k): "meter 42 card v1"}
	add := func(what string, meter uint64, p Purpose, v uint16) {
		t.Helper()
		k, _, err := MeterKey(bg, km, kms.Ref(MeterRoot), meter, p, v)
		if err != nil {
			t.Fatal(err)
		}
		if prev, dup := seen[string(k)]; dup {
			t.Errorf("%s has the same key as %s", what, prev)
		}
		seen[string(k)] = what
	}
	add("meter 43 card v1", 43, Card, 1)
	add("meter 42 telemetry v1", 42, Telemetry, 1)
	add("meter 42 wmbus v1", 42, WMBus, 1)
	add("meter 42 card v2", 42, Card, 2)

	// Rotating the root changes every key; the old root still gives the
	// keys of meters not yet moved.
	km.Rotate(bg, MeterRoot)
	add("meter 42 card v1 under root v2", 42, Card, 1)
	old, info, _ := MeterKey(bg, km, kms.KeyRef{Name: MeterRoot, Version: 1}, 42, Card, 1)
	if !bytes.Equal(old, k) || info.Version != 1 {
		t.Error("root version 1 no longer gives the same meter key")
	}

	if _, _, err := MeterKey(bg, km, kms.Ref(MeterRoot), 0, Card, 1); !errors.Is(err, kms.ErrInvalid) {
		t.Errorf("meter 0: %v", err)
	}
	if _, _, err := MeterKey(bg, km, kms.Ref(MeterRoot), 1, "firmware", 1); !errors.Is(err, kms.ErrInvalid) {
		t.Errorf("unknown purpose: %v", err)
	}
	if _, _, err := MeterKey(bg, km, kms.Ref(CreditSigning), 1, Card, 1); !errors.Is(err, kms.ErrKind) {
		t.Errorf("derive under a signing key: %v", err)
	}
}

func TestDeriveMeter(t *testing.T) {
	km := newKM(t)
	Init(bg, km, "")
	km.Rotate(bg, MeterRoot)
	mk, err := DeriveMeter(bg, km, kms.Ref(MeterRoot), 7, 3)
	if err != nil {
		t.Fatal(err)
	}
	if mk.RootVersion != 2 || mk.Version != 3 || mk.MeterID != 7 {
		t.Errorf("DeriveMeter = %+v", mk)
	}
	for p, got := range map[Purpose][16]byte{Card: mk.Card, Telemetry: mk.Telemetry, WMBus: mk.WMBus} {
		want, _, _ := MeterKey(bg, km, kms.KeyRef{Name: MeterRoot, Version: 2}, 7, p, 3)
		if !bytes.Equal(got[:], want) {
			t.Errorf("%s key differs from MeterKey", p)
		}
	}
}

func TestInit(t *testing.T) {
	km := newKM(t)
	created, err := Init(bg, km, kms.ECDSAP256)
	if err != nil || len(created) != 4 {
		t.Fatalf("Init created %d keys: %v", len(created), err)
	}
	if info, _ := km.Key(bg, kms.Ref(FirmwareSigning)); info.Kind != kms.ECDSAP256 {
		t.Errorf("firmware key is %s", info.Kind)
	}
	again, err := Init(bg, km, kms.ECDSAP256)
	if err != nil || len(again) != 0 {
		t.Fatalf("second Init created %d keys: %v", len(again), err)
	}
	if _, err := Init(bg, km, kms.Ed25519); !errors.Is(err, kms.ErrKind) {
		t.Errorf("Init with another firmware kind over an existing key: %v", err)
	}
	if _, err := Init(bg, newKM(t), kms.AES128); !errors.Is(err, kms.ErrInvalid) {
		t.Errorf("AES firmware key: %v", err)
	}
}

// TestVoucherKeys: what the head-end signs with, a meter provisioned with
// TrustedKeys opens; credit and management keys are not interchangeable.
func TestVoucherKeys(t *testing.T) {
	km := newKM(t)
	Init(bg, km, "")
	ring, err := TrustedKeys(bg, km)
	if err != nil || len(ring) != 2 {
		t.Fatalf("TrustedKeys: %v, %v", ring, err)
	}
	now := time.Date(2026, 11, 25, 8, 0, 0, 0, time.UTC)
	for _, v := range []*voucher.Voucher{
		{Kind: voucher.KindCredit, Unit: voucher.UnitLitres, Quantity: 6000},
		{Kind: voucher.KindClearTamper, TamperMask: 1},
	} {
		v.MeterID, v.Sequence, v.Issued, v.Expires = 42, 1, now, now.Add(time.Hour)
		s, err := VoucherSigner(bg, km, v.Kind)
		if err != nil {
			t.Fatal(err)
		}
		b, err := voucher.Sign(v, s)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := voucher.Open(b, ring, 42, now); err != nil {
			t.Errorf("%v voucher: %v", v.Kind, err)
		}
	}
	// Credit signed with the management key is refused by the meter.
	s, _ := VoucherSigner(bg, km, voucher.KindSetParameter)
	b, _ := voucher.Sign(&voucher.Voucher{Kind: voucher.KindCredit, MeterID: 42, Sequence: 2, Issued: now,
		Expires: now.Add(time.Hour), Unit: voucher.UnitLitres, Quantity: 1}, s)
	if _, err := voucher.Open(b, ring, 42, now); !errors.Is(err, voucher.ErrWrongRole) {
		t.Errorf("credit under the management key: %v", err)
	}
	if !ring[0].Public.Equal(mustPub(t, km, CreditSigning)) {
		t.Error("ring's credit key is not the credit-signing key")
	}
}

func mustPub(t *testing.T, km kms.KeyManager, name string) ed25519.PublicKey {
	p, err := km.PublicKey(bg, kms.Ref(name))
	if err != nil {
		t.Fatal(err)
	}
	return p.(ed25519.PublicKey)
}

func TestParseVendingKeys(t *testing.T) {
	data, err := os.ReadFile("testdata/good_vending_keys.txt")
	if err != nil {
		t.Fatal(err)
	}
	vks, err := ParseVendingKeys(data)
	if err != nil {
		t.Fatal(err)
	}
	if len(vks) != 3 || vks[0].Name() != "sts/600727/krn1" || vks[1].Kind != kms.STSDKGA04 ||
		vks[2].Kind != kms.STSDKGA02 || vks[2].SGC != 123456 || len(vks[0].Key) != 20 {
		t.Fatalf("parsed %+v", vks)
	}
	const k04 = "00112233445566778899aabbccddeeff00112233"
	for name, in := range map[string]string{
		"empty":          "# nothing\n\n",
		"three fields":   "600727 1 dkga04\n",
		"five fields":    "600727 1 dkga04 " + k04 + " x\n",
		"short SGC":      "60072 1 dkga04 " + k04 + "\n",
		"SGC not digits": "60072a 1 dkga04 " + k04 + "\n",
		"KRN 0":          "600727 0 dkga04 " + k04 + "\n",
		"KRN 10":         "600727 10 dkga04 " + k04 + "\n",
		"algorithm":      "600727 1 dkga03 " + k04 + "\n",
		"not hex":        "600727 1 dkga04 " + k04[:38] + "zz\n",
		"short key":      "600727 1 dkga04 " + k04[:38] + "\n",
		"dkga02 length":  "600727 1 dkga02 " + k04 + "\n",
		"duplicate":      "600727 1 dkga04 " + k04 + "\n600727 1 dkga02 0011223344556677\n",
	} {
		if _, err := ParseVendingKeys([]byte(in)); !errors.Is(err, ErrKeyFile) {
			t.Errorf("%s: %v, want ErrKeyFile", name, err)
		}
	}
	_, err = ParseVendingKeys([]byte("\n\n600727 1 dkga04 00\n"))
	if err == nil || !strings.Contains(err.Error(), "line 3") {
		t.Errorf("error does not name the line: %v", err)
	}
}

func TestImportVendingKeys(t *testing.T) {
	km := newKM(t)
	data, _ := os.ReadFile("testdata/good_vending_keys.txt")
	vks, _ := ParseVendingKeys(data)
	done, err := ImportVendingKeys(bg, km, vks)
	if err != nil || len(done) != 3 {
		t.Fatalf("imported %d: %v", len(done), err)
	}
	m := hmac.New(sha256.New, vks[0].Key)
	m.Write([]byte("DKGA04 input"))
	if got, _ := km.PRF(bg, kms.Ref(vks[0].Name()), []byte("DKGA04 input")); !bytes.Equal(got, m.Sum(nil)) {
		t.Error("imported DKGA04 key does not compute HMAC-SHA-256 under the file's key")
	}
	// The same file again is a no-op.
	done, err = ImportVendingKeys(bg, km, vks)
	if err != nil || len(done) != 0 {
		t.Fatalf("re-import: %d, %v", len(done), err)
	}
	// Another key for an existing SGC and KRN is refused.
	other := vks[0]
	other.Key = bytes.Repeat([]byte{0x5a}, 20)
	if _, err := ImportVendingKeys(bg, km, []VendingKey{other}); !errors.Is(err, kms.ErrExists) {
		t.Fatalf("conflicting key: %v", err)
	}
	if keys, _ := km.Keys(bg); len(keys) != 3 {
		t.Errorf("%d keys after the refused import", len(keys))
	}
}

func FuzzParseVendingKeys(f *testing.F) {
	data, _ := os.ReadFile("testdata/good_vending_keys.txt")
	f.Add(data)
	f.Add([]byte("600727 1 dkga04 00112233445566778899aabbccddeeff00112233\n"))
	f.Add([]byte("123456\t9\tdkga02\t0123456789abcdef"))
	f.Fuzz(func(t *testing.T, b []byte) {
		vks, err := ParseVendingKeys(b)
		if err != nil {
			return
		}
		names := map[string]bool{}
		for _, v := range vks {
			if len(v.Key) != v.Kind.SecretSize() || v.KRN < 1 || v.KRN > 9 || v.SGC < 0 || v.SGC > 999999 || names[v.Name()] {
				t.Fatalf("accepted %+v", v)
			}
			names[v.Name()] = true
		}
	})
}

func BenchmarkDeriveMeterFileKMS(b *testing.B) {
	km := newKM(b)
	Init(bg, km, "")
	root := kms.KeyRef{Name: MeterRoot, Version: 1}
	for b.Loop() {
		if _, err := DeriveMeter(bg, km, root, 31234567890, 1); err != nil {
			b.Fatal(err)
		}
	}
}
