package firmware

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// testKey is the fixed Ed25519 key of the golden images: its seed is
// SHA-256("sluice firmware test key 1"). Ed25519 signatures are
// deterministic, so the golden image is reproducible byte for byte.
func testKey(n int) ed25519.PrivateKey {
	seed := sha256.Sum256([]byte("sluice firmware test key " + string(rune('0'+n))))
	return ed25519.NewKeyFromSeed(seed[:])
}

// testApp is a small recognisable application.
func testApp(n int) []byte {
	app := make([]byte, n)
	for i := range app {
		app[i] = byte(0xa0 + i)
	}
	return app
}

var goldenOpts = SignOptions{Version: Version{1, 2, 3, 4}, SecurityCounter: 7}

func mustSign(t testing.TB, app []byte, s crypto.Signer, o SignOptions) []byte {
	t.Helper()
	img, err := Sign(app, s, o)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func mustVerifier(t testing.TB, keys ...crypto.PublicKey) *Verifier {
	t.Helper()
	v, err := NewVerifier(keys...)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestGoldenLayout checks every field of an image built by Sign against
// the MCUboot layout (docs/design.md "Image Format", imgtool image.py):
//
//	offset  size  field                         value here
//	0       4     ih_magic (LE)                 3d b8 f3 96
//	4       4     ih_load_addr                  0
//	8       2     ih_hdr_size                   0x0020
//	10      2     ih_protect_tlv_size           0x000c (info 4 + SEC_CNT 4+4)
//	12      4     ih_img_size                   16
//	16      4     ih_flags                      0
//	20      1     iv_major                      1
//	21      1     iv_minor                      2
//	22      2     iv_revision                   3
//	24      4     iv_build_num                  4
//	28      4     _pad1                         0
//	32      16    application
//	P=48    2+2   it_magic 0x6908, it_tlv_tot 12
//	52      2+2   it_type 0x0050 SEC_CNT, it_len 4
//	56      4     security counter (LE)         7
//	U=60    2+2   it_magic 0x6907, it_tlv_tot 144
//	64      2+2   SHA256 0x0010, len 32;  68..99  SHA-256(bytes 0..59)
//	100     2+2   KEYHASH 0x0001, len 32; 104..135 SHA-256(DER SPKI of the key)
//	136     2+2   ED25519 0x0024, len 64; 140..203 Ed25519(key, digest)
//	204           end of image
func TestGoldenLayout(t *testing.T) {
	key := testKey(1)
	app := testApp(16)
	img := mustSign(t, app, key, goldenOpts)
	le := binary.LittleEndian

	if len(img) != 204 {
		t.Fatalf("image is %d bytes, want 204", len(img))
	}
	check := func(name string, got, want uint64) {
		t.Helper()
		if got != want {
			t.Errorf("%s = %#x, want %#x", name, got, want)
		}
	}
	if !bytes.Equal(img[0:4], []byte{0x3d, 0xb8, 0xf3, 0x96}) {
		t.Errorf("magic bytes % x", img[0:4])
	}
	check("ih_load_addr", uint64(le.Uint32(img[4:])), 0)
	check("ih_hdr_size", uint64(le.Uint16(img[8:])), 32)
	check("ih_protect_tlv_size", uint64(le.Uint16(img[10:])), 12)
	check("ih_img_size", uint64(le.Uint32(img[12:])), 16)
	check("ih_flags", uint64(le.Uint32(img[16:])), 0)
	check("iv_major", uint64(img[20]), 1)
	check("iv_minor", uint64(img[21]), 2)
	check("iv_revision", uint64(le.Uint16(img[22:])), 3)
	check("iv_build_num", uint64(le.Uint32(img[24:])), 4)
	check("_pad1", uint64(le.Uint32(img[28:])), 0)
	if !bytes.Equal(img[32:48], app) {
		t.Errorf("application not at offset 32")
	}
	check("protected it_magic", uint64(le.Uint16(img[48:])), 0x6908)
	check("protected it_tlv_tot", uint64(le.Uint16(img[50:])), 12)
	check("SEC_CNT it_type", uint64(le.Uint16(img[52:])), 0x50)
	check("SEC_CNT it_len", uint64(le.Uint16(img[54:])), 4)
	check("SEC_CNT value", uint64(le.Uint32(img[56:])), 7)
	check("unprotected it_magic", uint64(le.Uint16(img[60:])), 0x6907)
	check("unprotected it_tlv_tot", uint64(le.Uint16(img[62:])), 144)
	check("SHA256 it_type", uint64(le.Uint16(img[64:])), 0x10)
	check("SHA256 it_len", uint64(le.Uint16(img[66:])), 32)
	digest := sha256.Sum256(img[:60]) // header + application + protected area
	if !bytes.Equal(img[68:100], digest[:]) {
		t.Errorf("SHA256 TLV does not cover bytes 0..59")
	}
	check("KEYHASH it_type", uint64(le.Uint16(img[100:])), 0x01)
	check("KEYHASH it_len", uint64(le.Uint16(img[102:])), 32)
	der, _ := x509.MarshalPKIXPublicKey(key.Public())
	kh := sha256.Sum256(der)
	if !bytes.Equal(img[104:136], kh[:]) {
		t.Errorf("KEYHASH is not SHA-256 of the DER SubjectPublicKeyInfo")
	}
	check("ED25519 it_type", uint64(le.Uint16(img[136:])), 0x24)
	check("ED25519 it_len", uint64(le.Uint16(img[138:])), 64)
	if !ed25519.Verify(key.Public().(ed25519.PublicKey), digest[:], img[140:204]) {
		t.Errorf("Ed25519 signature is not over the 32-byte digest")
	}

	im, err := mustVerifier(t, key.Public()).Verify(img)
	if err != nil {
		t.Fatal(err)
	}
	if im.Header.Version != (Version{1, 2, 3, 4}) || im.SecurityCounter != 7 || !bytes.Equal(im.Payload(), app) {
		t.Errorf("parsed %+v counter %d", im.Header, im.SecurityCounter)
	}
}

// TestGoldenFile pins the writer's output: the stored image must be
// reproduced byte for byte and verify.
func TestGoldenFile(t *testing.T) {
	img := mustSign(t, testApp(16), testKey(1), goldenOpts)
	path := filepath.Join("testdata", "good_ed25519.img")
	if *update {
		if err := os.WriteFile(path, img, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(img, want) {
		t.Fatalf("Sign output differs from %s", path)
	}
	if _, err := mustVerifier(t, testKey(1).Public()).Verify(want); err != nil {
		t.Fatal(err)
	}
}

func TestECDSAP256(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	img := mustSign(t, testApp(100), key, SignOptions{Version: Version{2, 0, 0, 0}, SecurityCounter: 3, LoadAddr: 0x20000000})
	im, err := mustVerifier(t, &key.PublicKey).Verify(img)
	if err != nil {
		t.Fatal(err)
	}
	if im.SigType != TLVECDSASig || im.Header.Flags != FlagRAMLoad || im.Header.LoadAddr != 0x20000000 {
		t.Errorf("sig type %#x flags %#x load %#x", im.SigType, im.Header.Flags, im.Header.LoadAddr)
	}
	// The ECDSA signature is ASN.1 DER over the digest, unpadded.
	if im.Signature[0] != 0x30 || int(im.Signature[1])+2 != len(im.Signature) {
		t.Errorf("signature is not a bare DER SEQUENCE: % x", im.Signature[:4])
	}
	// A P-256 image does not verify under an Ed25519 verifier, and the
	// Ed25519 verifier does not even know its key.
	if _, err := mustVerifier(t, testKey(1).Public()).Verify(img); !errors.Is(err, ErrKeyHash) {
		t.Errorf("foreign key: %v", err)
	}
}

func TestLargeHeader(t *testing.T) {
	img := mustSign(t, testApp(10), testKey(1), SignOptions{HeaderSize: 0x200, SecurityCounter: 1})
	im, err := mustVerifier(t, testKey(1).Public()).Verify(img)
	if err != nil {
		t.Fatal(err)
	}
	if im.Header.HeaderSize != 0x200 || !bytes.Equal(im.Payload(), testApp(10)) {
		t.Errorf("header size %d", im.Header.HeaderSize)
	}
}

// TestByteFlip flips every bit pattern 0xff into every byte of a small
// image: not one modified image may verify.
func TestByteFlip(t *testing.T) {
	for _, name := range []string{"ed25519", "p256"} {
		var s crypto.Signer = testKey(1)
		if name == "p256" {
			k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			s = k
		}
		img := mustSign(t, testApp(16), s, goldenOpts)
		v := mustVerifier(t, s.Public())
		for i := range img {
			for _, mask := range []byte{0x01, 0x80, 0xff} {
				bad := bytes.Clone(img)
				bad[i] ^= mask
				if _, err := v.Verify(bad); err == nil {
					t.Errorf("%s: byte %d ^ %#x: modified image verified", name, i, mask)
				}
			}
		}
	}
}

func TestTruncation(t *testing.T) {
	img := mustSign(t, testApp(16), testKey(1), goldenOpts)
	v := mustVerifier(t, testKey(1).Public())
	for n := 0; n < len(img); n++ {
		if _, err := v.Verify(img[:n]); !errors.Is(err, ErrTruncated) {
			t.Errorf("prefix of %d bytes: got %v, want ErrTruncated", n, err)
		}
	}
	if _, err := v.Verify(append(bytes.Clone(img), 0xff)); !errors.Is(err, ErrTrailingData) {
		t.Errorf("trailing byte: %v", err)
	}
	// A slot has erased flash after the image: that is fine there.
	if _, err := v.VerifySlot(append(bytes.Clone(img), 0xff, 0xff, 0xff)); err != nil {
		t.Errorf("slot with trailing erased bytes: %v", err)
	}
}

func TestWrongKey(t *testing.T) {
	img := mustSign(t, testApp(16), testKey(1), goldenOpts)
	if _, err := mustVerifier(t, testKey(2).Public()).Verify(img); !errors.Is(err, ErrKeyHash) {
		t.Errorf("untrusted signer: %v", err)
	}
	// An attacker who swaps in the KEYHASH of a trusted key still needs
	// that key's signature.
	bad := bytes.Clone(img)
	kh, _ := KeyHash(testKey(2).Public())
	copy(bad[104:136], kh[:])
	if _, err := mustVerifier(t, testKey(2).Public()).Verify(bad); !errors.Is(err, ErrBadSignature) {
		t.Errorf("swapped key hash: %v", err)
	}
	// Rotation: a verifier trusting both keys accepts images of either.
	v := mustVerifier(t, testKey(2).Public(), testKey(1).Public())
	if _, err := v.Verify(img); err != nil {
		t.Errorf("rotation: %v", err)
	}
}

// tlv is a TLV for assemble.
type tlv struct {
	typ uint16
	val []byte
}

// assemble builds an image from parts, signing it with key unless sign is
// false, so that tests can make images the writer refuses to make. unprot
// is called with the digest and signature and returns the unprotected TLVs.
func assemble(t testing.TB, key ed25519.PrivateKey, hdr []byte, app []byte, prot []tlv, unprot func(digest, sig, keyHash []byte) []tlv) []byte {
	t.Helper()
	le := binary.LittleEndian
	img := bytes.Clone(hdr)
	img = append(img, app...)
	if prot != nil {
		area := le.AppendUint16(nil, ProtectedMagic)
		area = le.AppendUint16(area, 0)
		for _, x := range prot {
			area = appendTLV(area, x.typ, x.val)
		}
		le.PutUint16(area[2:], uint16(len(area)))
		le.PutUint16(img[10:], uint16(len(area)))
		img = append(img, area...)
	}
	le.PutUint32(img[12:], uint32(len(app)))
	digest := sha256.Sum256(img)
	sig := ed25519.Sign(key, digest[:])
	kh, _ := KeyHash(key.Public())
	area := le.AppendUint16(nil, UnprotectedMagic)
	area = le.AppendUint16(area, 0)
	for _, x := range unprot(digest[:], sig, kh[:]) {
		area = appendTLV(area, x.typ, x.val)
	}
	le.PutUint16(area[2:], uint16(len(area)))
	return append(img, area...)
}

func header(hdrSize uint16, flags uint32) []byte {
	h := make([]byte, hdrSize)
	le := binary.LittleEndian
	le.PutUint32(h[0:], ImageMagic)
	le.PutUint16(h[8:], hdrSize)
	le.PutUint32(h[16:], flags)
	h[20] = 1
	return h
}

var secCnt = tlv{TLVSecCnt, []byte{7, 0, 0, 0}}

func normal(d, s, k []byte) []tlv {
	return []tlv{{TLVSHA256, d}, {TLVKeyHash, k}, {TLVEd25519, s}}
}

// TestTLVInjection: a TLV in the wrong area, unknown, duplicated, missing
// or of a wrong length rejects the image, signed or not (CVE-2024-32883).
func TestTLVInjection(t *testing.T) {
	key := testKey(1)
	v := mustVerifier(t, key.Public())
	app := testApp(8)
	cases := []struct {
		name   string
		prot   []tlv
		unprot func(d, s, k []byte) []tlv
		want   error
	}{
		{"control", []tlv{secCnt}, normal, nil},
		{"SEC_CNT injected in unprotected area", []tlv{secCnt},
			func(d, s, k []byte) []tlv {
				return append(normal(d, s, k), tlv{TLVSecCnt, []byte{0xff, 0xff, 0xff, 0xff}})
			}, ErrMisplacedTLV},
		{"SEC_CNT only in unprotected area", nil,
			func(d, s, k []byte) []tlv { return append(normal(d, s, k), secCnt) }, ErrMissingTLV},
		{"DEPENDENCY injected in unprotected area", []tlv{secCnt},
			func(d, s, k []byte) []tlv { return append(normal(d, s, k), tlv{0x40, make([]byte, 12)}) }, ErrUnknownTLV},
		{"BOOT_RECORD injected in unprotected area", []tlv{secCnt},
			func(d, s, k []byte) []tlv { return append(normal(d, s, k), tlv{0x60, []byte("evil")}) }, ErrUnknownTLV},
		{"signed DEPENDENCY in protected area", []tlv{secCnt, {0x40, make([]byte, 12)}}, normal, ErrUnknownTLV},
		{"SHA256 in protected area", []tlv{secCnt, {TLVSHA256, make([]byte, 32)}}, normal, ErrUnknownTLV},
		{"duplicate SEC_CNT", []tlv{secCnt, {TLVSecCnt, []byte{9, 0, 0, 0}}}, normal, ErrDuplicateTLV},
		{"SEC_CNT of 3 bytes", []tlv{{TLVSecCnt, []byte{7, 0, 0}}}, normal, ErrTLVLength},
		{"duplicate SHA256", []tlv{secCnt},
			func(d, s, k []byte) []tlv { return append(normal(d, s, k), tlv{TLVSHA256, d}) }, ErrDuplicateTLV},
		{"second signature", []tlv{secCnt},
			func(d, s, k []byte) []tlv { return append(normal(d, s, k), tlv{TLVECDSASig, make([]byte, 70)}) }, ErrDuplicateTLV},
		{"PUBKEY instead of KEYHASH", []tlv{secCnt},
			func(d, s, k []byte) []tlv { return []tlv{{TLVSHA256, d}, {0x02, k}, {TLVEd25519, s}} }, ErrUnknownTLV},
		{"no KEYHASH", []tlv{secCnt},
			func(d, s, k []byte) []tlv { return []tlv{{TLVSHA256, d}, {TLVEd25519, s}} }, ErrMissingTLV},
		{"no SHA256", []tlv{secCnt},
			func(d, s, k []byte) []tlv { return []tlv{{TLVKeyHash, k}, {TLVEd25519, s}} }, ErrMissingTLV},
		{"no signature", []tlv{secCnt},
			func(d, s, k []byte) []tlv { return []tlv{{TLVSHA256, d}, {TLVKeyHash, k}} }, ErrMissingTLV},
		{"short SHA256", []tlv{secCnt},
			func(d, s, k []byte) []tlv { return []tlv{{TLVSHA256, d[:31]}, {TLVKeyHash, k}, {TLVEd25519, s}} }, ErrTLVLength},
		{"type with non-zero high byte", []tlv{secCnt},
			func(d, s, k []byte) []tlv { return append(normal(d, s, k), tlv{0x0110, d}) }, ErrUnknownTLV},
		{"RSA signature", []tlv{secCnt},
			func(d, s, k []byte) []tlv { return []tlv{{TLVSHA256, d}, {TLVKeyHash, k}, {0x20, make([]byte, 256)}} }, ErrUnknownTLV},
		{"order does not matter", []tlv{secCnt},
			func(d, s, k []byte) []tlv { return []tlv{{TLVEd25519, s}, {TLVKeyHash, k}, {TLVSHA256, d}} }, nil},
		{"signature from the wrong algorithm TLV", []tlv{secCnt},
			func(d, s, k []byte) []tlv { return []tlv{{TLVSHA256, d}, {TLVKeyHash, k}, {TLVECDSASig, s}} }, ErrBadSignature},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			img := assemble(t, key, header(32, 0), app, c.prot, c.unprot)
			_, err := v.Verify(img)
			if !errors.Is(err, c.want) || (c.want == nil) != (err == nil) {
				t.Fatalf("got %v, want %v", err, c.want)
			}
		})
	}
}

func TestHeaderChecks(t *testing.T) {
	key := testKey(1)
	v := mustVerifier(t, key.Public())
	good := mustSign(t, testApp(16), key, goldenOpts)
	le := binary.LittleEndian
	cases := []struct {
		name string
		mod  func(b []byte)
		want error
	}{
		{"magic", func(b []byte) { b[3] = 0x97 }, ErrBadMagic},
		{"hdr_size 31", func(b []byte) { le.PutUint16(b[8:], 31) }, ErrBadHeader},
		{"hdr_size huge", func(b []byte) { le.PutUint16(b[8:], 0xf000) }, ErrBadHeader},
		{"pad1", func(b []byte) { b[30] = 1 }, ErrBadHeader},
		{"encrypted flag", func(b []byte) { le.PutUint32(b[16:], FlagEncAES128) }, ErrBadHeader},
		{"non-bootable flag", func(b []byte) { le.PutUint32(b[16:], FlagNonBootable) }, ErrBadHeader},
		{"img_size past end", func(b []byte) { le.PutUint32(b[12:], 0xffffffff) }, ErrTruncated},
		{"img_size short", func(b []byte) { le.PutUint32(b[12:], 15) }, ErrBadMagic},
		{"protect_tlv_size 0", func(b []byte) { le.PutUint16(b[10:], 0) }, ErrMissingTLV},
		{"protect_tlv_size mismatch", func(b []byte) { le.PutUint16(b[10:], 16) }, ErrTLVLength},
		{"protected magic", func(b []byte) { b[48] = 0x07 }, ErrBadMagic},
		{"protected tot < 4", func(b []byte) { le.PutUint16(b[50:], 2) }, ErrTLVLength},
		{"SEC_CNT len past area", func(b []byte) { le.PutUint16(b[54:], 5) }, ErrTLVLength},
		{"unprotected magic", func(b []byte) { b[60] = 0x08 }, ErrBadMagic},
		{"unprotected tot short", func(b []byte) { le.PutUint16(b[62:], 143) }, ErrTLVLength},
		{"unprotected tot long", func(b []byte) { le.PutUint16(b[62:], 145) }, ErrTruncated},
		{"hash", func(b []byte) { b[32] ^= 1 }, ErrHashMismatch},
		{"signature", func(b []byte) { b[150] ^= 1 }, ErrBadSignature},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := bytes.Clone(good)
			c.mod(b)
			if _, err := v.Verify(b); !errors.Is(err, c.want) {
				t.Fatalf("got %v, want %v", err, c.want)
			}
		})
	}
}

// TestFailFiles keeps a corpus of rejected images in testdata (also the
// fuzz seeds): fail_<reason>.img must fail with that reason.
func TestFailFiles(t *testing.T) {
	key := testKey(1)
	good := mustSign(t, testApp(16), key, goldenOpts)
	le := binary.LittleEndian
	mk := map[string]func() []byte{
		"fail_bad_magic.img":     func() []byte { b := bytes.Clone(good); b[0] = 0; return b },
		"fail_truncated.img":     func() []byte { return good[:150] },
		"fail_tlv_length.img":    func() []byte { b := bytes.Clone(good); le.PutUint16(b[62:], 140); return b },
		"fail_hash_mismatch.img": func() []byte { b := bytes.Clone(good); b[40] ^= 0x55; return b },
		"fail_bad_signature.img": func() []byte { b := bytes.Clone(good); b[203] ^= 0x01; return b },
		"fail_key_hash.img":      func() []byte { return mustSign(t, testApp(16), testKey(2), goldenOpts) },
		"fail_misplaced_tlv.img": func() []byte {
			return assemble(t, key, header(32, 0), testApp(16), []tlv{secCnt}, func(d, s, k []byte) []tlv { return append(normal(d, s, k), secCnt) })
		},
		"fail_unknown_tlv.img": func() []byte {
			return assemble(t, key, header(32, 0), testApp(16), []tlv{secCnt}, func(d, s, k []byte) []tlv { return append(normal(d, s, k), tlv{0x60, []byte("x")}) })
		},
		"fail_duplicate_tlv.img": func() []byte { return assemble(t, key, header(32, 0), testApp(16), []tlv{secCnt, secCnt}, normal) },
		"fail_missing_tlv.img":   func() []byte { return assemble(t, key, header(32, 0), testApp(16), nil, normal) },
		"fail_trailing_data.img": func() []byte { return append(bytes.Clone(good), 0) },
		"fail_bad_header.img":    func() []byte { b := bytes.Clone(good); le.PutUint32(b[16:], FlagEncAES256); return b },
	}
	want := map[string]error{
		"bad_magic": ErrBadMagic, "truncated": ErrTruncated, "tlv_length": ErrTLVLength,
		"hash_mismatch": ErrHashMismatch, "bad_signature": ErrBadSignature, "key_hash": ErrKeyHash,
		"misplaced_tlv": ErrMisplacedTLV, "unknown_tlv": ErrUnknownTLV, "duplicate_tlv": ErrDuplicateTLV,
		"missing_tlv": ErrMissingTLV, "trailing_data": ErrTrailingData, "bad_header": ErrBadHeader,
	}
	if *update {
		for name, f := range mk {
			if err := os.WriteFile(filepath.Join("testdata", name), f(), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	files, _ := filepath.Glob(filepath.Join("testdata", "fail_*.img"))
	if len(files) != len(want) {
		t.Fatalf("%d fail files, want %d (run with -update)", len(files), len(want))
	}
	v := mustVerifier(t, key.Public())
	for _, f := range files {
		reason := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(f), "fail_"), ".img")
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := v.Verify(b); !errors.Is(err, want[reason]) {
			t.Errorf("%s: got %v, want %v", f, err, want[reason])
		}
	}
}

func TestSignRejects(t *testing.T) {
	k384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if _, err := Sign(nil, k384, goldenOpts); !errors.Is(err, ErrUnsupportedKey) {
		t.Errorf("P-384: %v", err)
	}
	if _, err := Sign(nil, testKey(1), SignOptions{HeaderSize: 16}); !errors.Is(err, ErrBadHeader) {
		t.Errorf("header 16: %v", err)
	}
	if _, err := Sign(nil, badSigner{testKey(1)}, goldenOpts); !errors.Is(err, ErrBadSignature) {
		t.Errorf("faulty signer: %v", err)
	}
}

// badSigner returns a signature by another key, as a misconfigured KMS might.
type badSigner struct{ ed25519.PrivateKey }

func (b badSigner) Sign(r io.Reader, d []byte, o crypto.SignerOpts) ([]byte, error) {
	return testKey(2).Sign(r, d, o)
}

func TestVersion(t *testing.T) {
	for _, c := range []struct {
		in   string
		want Version
		ok   bool
	}{
		{"1.2.3", Version{1, 2, 3, 0}, true},
		{"1.2.3+77", Version{1, 2, 3, 77}, true},
		{"4", Version{4, 0, 0, 0}, true},
		{"255.255.65535+4294967295", Version{255, 255, 65535, 4294967295}, true},
		{"256.0.0", Version{}, false},
		{"1.2.3.4", Version{}, false},
		{"", Version{}, false},
		{"1.x", Version{}, false},
	} {
		v, err := ParseVersion(c.in)
		if (err == nil) != c.ok || (c.ok && v != c.want) {
			t.Errorf("ParseVersion(%q) = %v, %v", c.in, v, err)
		}
		if c.ok {
			if back, _ := ParseVersion(v.String()); back != v {
				t.Errorf("%v does not round-trip", v)
			}
		}
	}
	if (Version{1, 2, 3, 0}).Compare(Version{1, 10, 0, 0}) != -1 {
		t.Error("1.2.3 should be older than 1.10.0")
	}
}

// TestSignMessages signs through a message-signing API shaped like
// kms.KeyManager.Sign (pure Ed25519 of msg; ECDSA P-256 over SHA-256(msg)).
func TestSignMessages(t *testing.T) {
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ed := testKey(3)
	for name, c := range map[string]struct {
		pub  crypto.PublicKey
		sign MessageSigner
	}{
		"ed25519": {ed.Public(), func(msg []byte) ([]byte, error) { return ed25519.Sign(ed, msg), nil }},
		"p256": {&ec.PublicKey, func(msg []byte) ([]byte, error) {
			h := sha256.Sum256(msg)
			return ecdsa.SignASN1(rand.Reader, ec, h[:])
		}},
	} {
		img, err := SignMessages(testApp(40), c.pub, c.sign, goldenOpts)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if _, err := mustVerifier(t, c.pub).Verify(img); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	// The Ed25519 image is the same whichever API signed it.
	a, _ := SignMessages(testApp(40), ed.Public(), func(msg []byte) ([]byte, error) { return ed25519.Sign(ed, msg), nil }, goldenOpts)
	if b := mustSign(t, testApp(40), ed, goldenOpts); !bytes.Equal(a, b) {
		t.Error("SignMessages and Sign differ for Ed25519")
	}
}
