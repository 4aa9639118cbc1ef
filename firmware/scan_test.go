package firmware

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
)

func meterRoot(n int) []byte {
	h := sha256.Sum256([]byte(fmt.Sprintf("meter root %d", n)))
	return h[:16]
}

func TestScanFindsEveryEncoding(t *testing.T) {
	root := meterRoot(1)
	seed := testKey(1).Seed()
	secrets := []Secret{{"meter root", root}, {"firmware signing seed", seed}}
	rev := slices.Clone(root)
	slices.Reverse(rev)
	cases := map[string][]byte{
		"raw":                     root,
		"byte-reversed":           rev,
		"hex":                     []byte(hex.EncodeToString(root)),
		"HEX":                     []byte(strings.ToUpper(hex.EncodeToString(root))),
		"base64":                  []byte(base64.StdEncoding.EncodeToString(root)),
		"Ed25519 expanded scalar": testKey(1)[:0], // filled below
	}
	// The expanded scalar is what an Ed25519 library keeps in RAM and a
	// careless build might dump.
	enc := encodings(Secret{"", seed})
	cases["Ed25519 expanded scalar"] = enc[len(enc)-2].b
	for name, embed := range cases {
		t.Run(name, func(t *testing.T) {
			app := append(append(bytes.Repeat([]byte{0x11}, 100), embed...), bytes.Repeat([]byte{0x22}, 100)...)
			img := mustSign(t, app, testKey(1), goldenOpts)
			found := Scan(img, secrets)
			if len(found) == 0 {
				t.Fatalf("%s not found", name)
			}
			if found[0].Encoding != name || found[0].Offset != 32+100 {
				t.Errorf("found %v", found)
			}
		})
	}
}

func TestScanClean(t *testing.T) {
	// A clean image that embeds the public keys the meter trusts.
	pub := testKey(1).Public()
	der, _ := x509.MarshalPKIXPublicKey(pub)
	app := append(append([]byte("trust anchors:"), der...), []byte(pub.(ed25519.PublicKey))...)
	img := mustSign(t, app, testKey(1), goldenOpts)
	pemFile := append(pemOf(t, "PRIVATE KEY", testKey(1)), pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})...)
	secrets, err := ParseSecrets("firmware.pem", pemFile)
	if err != nil {
		t.Fatal(err)
	}
	for i := 2; i < 1000; i++ {
		secrets = append(secrets, Secret{fmt.Sprintf("meter %d", i), meterRoot(i)})
	}
	if f := Scan(img, secrets); len(f) != 0 {
		t.Fatalf("clean image flagged: %v", f)
	}
	// The same image with a PEM private key pasted in is flagged even
	// though that key is not one of the listed secrets.
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leaky := mustSign(t, append(app, pemOf(t, "PRIVATE KEY", other)...), testKey(1), goldenOpts)
	if f := Scan(leaky, secrets); len(f) != 1 || f[0].Secret != "PEM private key armour" {
		t.Fatalf("PEM armour: %v", f)
	}
}

func pemOf(t *testing.T, typ string, key any) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func TestParseSecrets(t *testing.T) {
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	d, _ := ec.Bytes()
	root := meterRoot(7)
	cases := []struct {
		name string
		data []byte
		want [][]byte // must be among the secrets
	}{
		{"ed25519.pem", pemOf(t, "PRIVATE KEY", testKey(1)), [][]byte{testKey(1).Seed()}},
		{"p256.pem", pemOf(t, "PRIVATE KEY", ec), [][]byte{d}},
		{"export.json", []byte(`{"keys":[{"name":"meter-root","material":"` + hex.EncodeToString(root) + `","public":"` + hex.EncodeToString(meterRoot(8)) + `"}]}`), [][]byte{root}},
		{"roots.txt", []byte("# meter roots\nroot-1: " + hex.EncodeToString(root) + "\nroot-2 = " + base64.StdEncoding.EncodeToString(meterRoot(9)) + "\npubkey: " + hex.EncodeToString(meterRoot(10)) + "\n"), [][]byte{root, meterRoot(9)}},
		{"key.bin", append([]byte{0, 1, 2}, root...), [][]byte{append([]byte{0, 1, 2}, root...)}},
	}
	for _, c := range cases {
		got, err := ParseSecrets(c.name, c.data)
		if err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		for _, w := range c.want {
			if !slices.ContainsFunc(got, func(s Secret) bool { return bytes.Equal(s.Value, w) }) {
				t.Errorf("%s: %x not extracted from %v", c.name, w, got)
			}
		}
		for _, s := range got {
			if bytes.Equal(s.Value, meterRoot(8)) || bytes.Equal(s.Value, meterRoot(10)) {
				t.Errorf("%s: public value taken for a secret", c.name)
			}
		}
	}
	for name, data := range map[string][]byte{
		"public only": pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: []byte("x")}),
		"empty":       nil,
		"short hex":   []byte("k: 00112233"),
		"prose":       []byte("hello world\n"),
	} {
		if _, err := ParseSecrets(name, data); !errors.Is(err, ErrNoSecrets) {
			t.Errorf("%s: %v, want ErrNoSecrets", name, err)
		}
	}
}

func BenchmarkScan1MiB10kSecrets(b *testing.B) {
	img := make([]byte, 1<<20)
	rand.Read(img)
	var secrets []Secret
	for i := range 10000 {
		secrets = append(secrets, Secret{fmt.Sprint(i), meterRoot(i)})
	}
	b.SetBytes(int64(len(img)))
	for b.Loop() {
		if f := Scan(img, secrets); len(f) != 0 {
			b.Fatal(f)
		}
	}
}
