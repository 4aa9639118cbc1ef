package voucher

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite testdata/good_* and fail_* from the generators below")

// Test fixtures, documented in testdata/README.md.
const testMeter = 31234567890

var (
	testNow    = time.Date(2026, 11, 25, 8, 0, 0, 0, time.UTC)
	testIssued = time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	testExpiry = time.Date(2026, 12, 24, 10, 0, 0, 0, time.UTC)
)

func testKey(name string) ed25519.PrivateKey {
	seed := sha256.Sum256([]byte("sluice voucher test key: " + name))
	return ed25519.NewKeyFromSeed(seed[:])
}

var (
	creditKey = testKey("credit")
	mgmtKey   = testKey("management")
	otherKey  = testKey("untrusted")
	nextKey   = testKey("credit, next version")
)

func testRing() Keyring {
	return Keyring{
		{Role: RoleCredit, Public: creditKey.Public().(ed25519.PublicKey)},
		{Role: RoleManagement, Public: mgmtKey.Public().(ed25519.PublicKey)},
	}
}

func credit(seq uint32, qty uint32) *Voucher {
	return &Voucher{Kind: KindCredit, MeterID: testMeter, Sequence: seq, Issued: testIssued,
		Expires: testExpiry, Unit: UnitLitres, Quantity: qty}
}

func mustSign(t testing.TB, v *Voucher, k ed25519.PrivateKey) []byte {
	t.Helper()
	b, err := Sign(v, k)
	if err != nil {
		t.Fatalf("Sign(%+v): %v", v, err)
	}
	return b
}

// rawSign signs an arbitrary body the way Sign does, to build encodings Sign
// itself refuses to produce.
func rawSign(body []byte, k ed25519.PrivateKey) []byte {
	return append(body, ed25519.Sign(k, SignedMessage(body))...)
}

// goodVouchers are one valid voucher of each kind and unit.
func goodVouchers(t testing.TB) map[string][]byte {
	return map[string][]byte{
		"good_credit_litres.hex": mustSign(t, credit(1, 6000), creditKey),
		"good_credit_currency.hex": mustSign(t, &Voucher{Kind: KindCredit, MeterID: testMeter, Sequence: 2,
			Issued: testIssued, Expires: testExpiry, Unit: UnitMinor, Quantity: 15050}, creditKey),
		"good_clear_tamper.hex": mustSign(t, &Voucher{Kind: KindClearTamper, MeterID: testMeter, Sequence: 3,
			Issued: testIssued, Expires: testExpiry, TamperMask: 0x00000005}, mgmtKey),
		"good_set_parameter.hex": mustSign(t, &Voucher{Kind: KindSetParameter, MeterID: testMeter, Sequence: 4,
			Issued: testIssued, Expires: testExpiry, Param: 7, Value: 2000}, mgmtKey),
		"good_key_change.hex": mustSign(t, &Voucher{Kind: KindKeyChange, MeterID: testMeter, Sequence: 5,
			Issued: testIssued, Expires: testExpiry, Slot: RoleCredit,
			NewKey: nextKey.Public().(ed25519.PublicKey), Retire: 0}, mgmtKey),
	}
}

type failCase struct {
	b    []byte
	want error
}

// failVouchers each break exactly one rule, named by the file.
func failVouchers(t testing.TB) map[string]failCase {
	good := mustSign(t, credit(9, 1000), creditKey)
	flip := func(b []byte, i int, x byte) []byte {
		c := bytes.Clone(b)
		c[i] ^= x
		return c
	}
	body := good[:len(good)-SignatureSize]
	set := func(off int, val ...byte) []byte {
		c := bytes.Clone(body)
		copy(c[off:], val)
		return rawSign(c, creditKey)
	}
	u32 := func(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }
	keyChange := mustSign(t, &Voucher{Kind: KindKeyChange, MeterID: testMeter, Sequence: 5,
		Issued: testIssued, Expires: testExpiry, Slot: RoleCredit,
		NewKey: nextKey.Public().(ed25519.PublicKey)}, mgmtKey)
	kcBody := bytes.Clone(keyChange[:len(keyChange)-SignatureSize])
	kcBody[HeaderSize+1] ^= 0x01 // the new key ID no longer matches the key

	return map[string]failCase{
		"fail_empty.hex":                    {nil, ErrMalformed},
		"fail_truncated.hex":                {good[:len(good)-1], ErrMalformed},
		"fail_trailing_byte.hex":            {append(bytes.Clone(good), 0), ErrMalformed},
		"fail_version_2.hex":                {set(0, 2), ErrVersion},
		"fail_unknown_kind.hex":             {set(1, 0x02), ErrMalformed},
		"fail_signature_bit_flipped.hex":    {flip(good, len(good)-1, 0x01), ErrSignature},
		"fail_quantity_raised.hex":          {flip(good, HeaderSize+1, 0x80), ErrSignature},
		"fail_wrong_meter.hex":              {mustSign(t, &Voucher{Kind: KindCredit, MeterID: testMeter + 1, Sequence: 9, Issued: testIssued, Expires: testExpiry, Unit: UnitLitres, Quantity: 1000}, creditKey), ErrWrongMeter},
		"fail_expired.hex":                  {mustSign(t, &Voucher{Kind: KindCredit, MeterID: testMeter, Sequence: 9, Issued: testIssued.AddDate(0, -2, 0), Expires: testNow, Unit: UnitLitres, Quantity: 1000}, creditKey), ErrExpired},
		"fail_untrusted_key.hex":            {mustSign(t, credit(9, 1000), otherKey), ErrUnknownKey},
		"fail_credit_by_management_key.hex": {mustSign(t, credit(9, 1000), mgmtKey), ErrWrongRole},
		"fail_engineering_by_credit_key.hex": {mustSign(t, &Voucher{Kind: KindClearTamper, MeterID: testMeter, Sequence: 9,
			Issued: testIssued, Expires: testExpiry, TamperMask: 1}, creditKey), ErrWrongRole},
		"fail_zero_quantity.hex":          {set(HeaderSize+1, 0, 0, 0, 0), ErrMalformed},
		"fail_unknown_unit.hex":           {set(HeaderSize, 0x03), ErrMalformed},
		"fail_zero_sequence.hex":          {set(10, 0, 0, 0, 0), ErrMalformed},
		"fail_zero_meter.hex":             {set(2, 0, 0, 0, 0, 0, 0, 0, 0), ErrMalformed},
		"fail_expiry_before_issue.hex":    {set(22, u32(uint32(testIssued.Unix())-1)...), ErrMalformed},
		"fail_key_change_id_mismatch.hex": {rawSign(kcBody, mgmtKey), ErrMalformed},
	}
}

func TestGoldenFiles(t *testing.T) {
	goods, fails := goodVouchers(t), failVouchers(t)
	if *update {
		old, _ := filepath.Glob("testdata/*_*.hex")
		for _, f := range old {
			os.Remove(f)
		}
		write := func(name string, b []byte) {
			if err := os.WriteFile(filepath.Join("testdata", name), []byte(hex.EncodeToString(b)+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		for n, b := range goods {
			write(n, b)
		}
		for n, c := range fails {
			write(n, c.b)
		}
	}
	files, _ := filepath.Glob("testdata/*.hex")
	sort.Strings(files)
	if len(files) != len(goods)+len(fails) {
		t.Errorf("%d files in testdata, %d cases defined (run go test -update)", len(files), len(goods)+len(fails))
	}
	for _, f := range files {
		name := filepath.Base(f)
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		b, err := hex.DecodeString(strings.TrimSpace(string(raw)))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		t.Run(name, func(t *testing.T) {
			v, err := Open(b, testRing(), testMeter, testNow)
			switch {
			case strings.HasPrefix(name, "good_"):
				if err != nil {
					t.Fatalf("Open: %v", err)
				}
				if !bytes.Equal(b, goods[name]) {
					t.Errorf("file differs from what Sign produces now")
				}
				if !bytes.Equal(v.Bytes(), b) {
					t.Errorf("Bytes() does not return the parsed encoding")
				}
			case strings.HasPrefix(name, "fail_"):
				c, ok := fails[name]
				if !ok {
					t.Fatalf("no case defined for this file")
				}
				if !errors.Is(err, c.want) {
					t.Fatalf("Open error = %v, want %v", err, c.want)
				}
				if !bytes.Equal(b, c.b) {
					t.Errorf("file differs from its generator")
				}
			default:
				t.Fatalf("test data must be named good_* or fail_*")
			}
		})
	}
}

func TestRoundTrip(t *testing.T) {
	for name, b := range goodVouchers(t) {
		v, err := Parse(b)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		again := *v
		again.raw = nil
		key := creditKey
		if v.Kind.Engineering() {
			key = mgmtKey
		}
		b2 := mustSign(t, &again, key)
		if !bytes.Equal(b, b2) {
			t.Errorf("%s: re-signing the parsed voucher gives other bytes", name)
		}
		again.raw = nil
		v.raw = nil
		if !reflect.DeepEqual(v, &again) {
			t.Errorf("%s: fields differ after a round trip:\n%+v\n%+v", name, v, &again)
		}
	}
}

func TestFields(t *testing.T) {
	v, err := Open(goodVouchers(t)["good_credit_litres.hex"], testRing(), testMeter, testNow)
	if err != nil {
		t.Fatal(err)
	}
	if v.Kind != KindCredit || v.Unit != UnitLitres || v.Quantity != 6000 || v.Sequence != 1 ||
		v.MeterID != testMeter || !v.Issued.Equal(testIssued) || !v.Expires.Equal(testExpiry) ||
		v.KeyID != KeyID(creditKey.Public().(ed25519.PublicKey)) {
		t.Errorf("unexpected fields %+v", v)
	}
	if len(v.Bytes()) != CreditSize {
		t.Errorf("credit voucher is %d bytes, want %d", len(v.Bytes()), CreditSize)
	}
}

// TestTamperEveryByte: changing any bit pattern of any byte of a voucher
// makes the meter refuse it.
func TestTamperEveryByte(t *testing.T) {
	for name, b := range goodVouchers(t) {
		for i := range b {
			for _, x := range []byte{0x01, 0x80, 0xff} {
				c := bytes.Clone(b)
				c[i] ^= x
				if _, err := Open(c, testRing(), testMeter, testNow); err == nil {
					t.Errorf("%s: byte %d ^ %02x accepted", name, i, x)
				}
			}
		}
		for n := range len(b) {
			if _, err := Open(b[:n], testRing(), testMeter, testNow); err == nil {
				t.Errorf("%s: truncated to %d bytes accepted", name, n)
			}
		}
	}
}

func TestWrongMeter(t *testing.T) {
	b := mustSign(t, credit(1, 10), creditKey)
	for _, m := range []uint64{testMeter - 1, testMeter + 1, 1, ^uint64(0)} {
		if _, err := Open(b, testRing(), m, testNow); !errors.Is(err, ErrWrongMeter) {
			t.Errorf("meter %d: error %v, want ErrWrongMeter", m, err)
		}
	}
}

func TestExpiryBoundary(t *testing.T) {
	b := mustSign(t, credit(1, 10), creditKey)
	if _, err := Open(b, testRing(), testMeter, testExpiry.Add(-time.Second)); err != nil {
		t.Errorf("one second before expiry: %v", err)
	}
	if _, err := Open(b, testRing(), testMeter, testExpiry); !errors.Is(err, ErrExpired) {
		t.Errorf("at expiry: %v, want ErrExpired", err)
	}
}

func TestCheckSequence(t *testing.T) {
	v, _ := Parse(mustSign(t, credit(7, 10), creditKey))
	for last, ok := range map[uint32]bool{0: true, 6: true, 7: false, 8: false, ^uint32(0): false} {
		err := v.CheckSequence(last)
		if ok != (err == nil) || (!ok && !errors.Is(err, ErrReplay)) {
			t.Errorf("sequence 7 after %d: %v", last, err)
		}
	}
}

// TestRotationRing: during a rotation the meter trusts the old and the new
// credit key; vouchers under either open, and a key-change voucher says
// which to add and which to retire.
func TestRotationRing(t *testing.T) {
	ring := append(testRing(), TrustedKey{Role: RoleCredit, Public: nextKey.Public().(ed25519.PublicKey)})
	for _, k := range []ed25519.PrivateKey{creditKey, nextKey} {
		if _, err := Open(mustSign(t, credit(1, 10), k), ring, testMeter, testNow); err != nil {
			t.Errorf("rotation ring: %v", err)
		}
	}
	v, err := Open(goodVouchers(t)["good_key_change.hex"], testRing(), testMeter, testNow)
	if err != nil {
		t.Fatal(err)
	}
	if v.Slot != RoleCredit || !v.NewKey.Equal(nextKey.Public()) || v.Retire != 0 {
		t.Errorf("key change fields %+v", v)
	}
}

func TestSignRefusesInvalid(t *testing.T) {
	pub := nextKey.Public().(ed25519.PublicKey)
	for name, v := range map[string]*Voucher{
		"zero meter":        {Kind: KindCredit, Sequence: 1, Issued: testIssued, Expires: testExpiry, Unit: UnitLitres, Quantity: 1},
		"zero sequence":     {Kind: KindCredit, MeterID: 1, Issued: testIssued, Expires: testExpiry, Unit: UnitLitres, Quantity: 1},
		"unknown kind":      {Kind: 0x7f, MeterID: 1, Sequence: 1, Issued: testIssued, Expires: testExpiry},
		"zero quantity":     {Kind: KindCredit, MeterID: 1, Sequence: 1, Issued: testIssued, Expires: testExpiry, Unit: UnitLitres},
		"no unit":           {Kind: KindCredit, MeterID: 1, Sequence: 1, Issued: testIssued, Expires: testExpiry, Quantity: 1},
		"expiry = issue":    {Kind: KindCredit, MeterID: 1, Sequence: 1, Issued: testIssued, Expires: testIssued, Unit: UnitLitres, Quantity: 1},
		"before 1970":       {Kind: KindCredit, MeterID: 1, Sequence: 1, Issued: time.Unix(-1, 0), Expires: testExpiry, Unit: UnitLitres, Quantity: 1},
		"after 2106":        {Kind: KindCredit, MeterID: 1, Sequence: 1, Issued: testIssued, Expires: time.Unix(1<<32, 0), Unit: UnitLitres, Quantity: 1},
		"credit with param": {Kind: KindCredit, MeterID: 1, Sequence: 1, Issued: testIssued, Expires: testExpiry, Unit: UnitLitres, Quantity: 1, Param: 3},
		"zero tamper mask":  {Kind: KindClearTamper, MeterID: 1, Sequence: 1, Issued: testIssued, Expires: testExpiry},
		"short new key":     {Kind: KindKeyChange, MeterID: 1, Sequence: 1, Issued: testIssued, Expires: testExpiry, Slot: RoleCredit, NewKey: pub[:31]},
		"unknown slot":      {Kind: KindKeyChange, MeterID: 1, Sequence: 1, Issued: testIssued, Expires: testExpiry, Slot: 9, NewKey: pub},
		"retire itself":     {Kind: KindKeyChange, MeterID: 1, Sequence: 1, Issued: testIssued, Expires: testExpiry, Slot: RoleCredit, NewKey: pub, Retire: KeyID(pub)},
	} {
		if _, err := Sign(v, creditKey); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: Sign error %v, want ErrInvalid", name, err)
		}
	}
}

func TestSignRefusesOtherKeyTypes(t *testing.T) {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if _, err := Sign(credit(1, 1), k); !errors.Is(err, ErrSignerType) {
		t.Fatalf("ECDSA signer: %v, want ErrSignerType", err)
	}
}

// lyingSigner returns signatures of another key, as a misconfigured KMS
// might.
type lyingSigner struct{ ed25519.PrivateKey }

func (l lyingSigner) Public() crypto.PublicKey { return creditKey.Public() }

func TestSignChecksItsSignature(t *testing.T) {
	if _, err := Sign(credit(1, 1), lyingSigner{otherKey}); !errors.Is(err, ErrSignature) {
		t.Fatalf("signer with the wrong key: %v, want ErrSignature", err)
	}
}

func TestVerifyNamesKey(t *testing.T) {
	v, _ := Parse(mustSign(t, credit(1, 1), creditKey))
	if err := v.Verify(creditKey.Public().(ed25519.PublicKey)); err != nil {
		t.Fatal(err)
	}
	if err := v.Verify(mgmtKey.Public().(ed25519.PublicKey)); !errors.Is(err, ErrSignature) {
		t.Fatalf("other key: %v", err)
	}
	if err := (&Voucher{}).Verify(creditKey.Public().(ed25519.PublicKey)); !errors.Is(err, ErrSignature) {
		t.Fatalf("unparsed voucher: %v", err)
	}
}

func FuzzParse(f *testing.F) {
	for _, b := range goodVouchers(f) {
		f.Add(b)
	}
	for _, c := range failVouchers(f) {
		f.Add(c.b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := Parse(b)
		if err != nil {
			if v != nil {
				t.Fatal("Parse returned a voucher with an error")
			}
			return
		}
		// One voucher, one encoding: what parses re-encodes to the same bytes.
		if body := v.body(); !bytes.Equal(body, b[:len(b)-SignatureSize]) {
			t.Fatalf("re-encoding differs:\n%x\n%x", body, b)
		}
		if len(b) < MinSize || len(b) > MaxSize {
			t.Fatalf("parsed a %d-byte voucher", len(b))
		}
		_, _ = Open(b, testRing(), v.MeterID, v.Issued)
	})
}

func BenchmarkSign(b *testing.B) {
	v := credit(1, 6000)
	for b.Loop() {
		v.raw = nil
		if _, err := Sign(v, creditKey); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "vouchers/s")
}

func BenchmarkOpen(b *testing.B) {
	vb := mustSign(b, credit(1, 6000), creditKey)
	ring := testRing()
	for b.Loop() {
		if _, err := Open(vb, ring, testMeter, testNow); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "vouchers/s")
}
