package firmware

import (
	"bytes"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha512"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"
)

// A leak check for release images: Sluice assumes a meter's flash can be
// read out, so an image must not contain any secret of the fleet (a meter
// root, a per-meter key, a signing private key). Scan searches an image for
// each secret in the encodings a build might leave it in: raw, byte
// reversed (little-endian scalars), hex in either case, base64, and for
// Ed25519 seeds the expanded signing scalar as well.

// MinSecretSize is the shortest secret Scan accepts: shorter strings would
// match by chance.
const MinSecretSize = 16

// ErrNoSecrets is returned by ParseSecrets for a file that holds no key
// material, so that a misconfigured release check cannot pass vacuously.
var ErrNoSecrets = errors.New("no key material found")

// Secret is one key that must never appear in an image.
type Secret struct {
	Name  string // where it came from, for the report
	Value []byte
}

// Finding is one occurrence of a secret in an image.
type Finding struct {
	Secret   string
	Encoding string
	Offset   int
}

func (f Finding) String() string {
	return fmt.Sprintf("%s (%s) at offset %d", f.Secret, f.Encoding, f.Offset)
}

// ParseSecrets reads key material from a file's contents: PEM private keys
// (PKCS#8, SEC 1 or PKCS#1; public keys are skipped, images may carry
// them), a JSON key-store export (every string value that is hex or base64
// of at least 16 bytes, except under names containing "pub"), text lines
// "[name[:=]] value" with hex or base64 values, or a raw binary key of 16
// to 64 bytes.
func ParseSecrets(name string, data []byte) ([]Secret, error) {
	var out []Secret
	add := func(label string, v []byte) {
		if len(v) >= MinSecretSize {
			out = append(out, Secret{Name: label, Value: bytes.Clone(v)})
		}
	}
	switch {
	case bytes.Contains(data, []byte("-----BEGIN ")):
		rest := data
		for i := 0; ; i++ {
			var blk *pem.Block
			blk, rest = pem.Decode(rest)
			if blk == nil {
				break
			}
			label := fmt.Sprintf("%s: PEM block %d (%s)", name, i+1, blk.Type)
			if strings.Contains(blk.Type, "PUBLIC KEY") || blk.Type == "CERTIFICATE" {
				continue
			}
			add(label+" DER", blk.Bytes)
			for _, s := range privateScalars(blk) {
				add(label+" "+s.Name, s.Value)
			}
		}
	case json.Valid(data):
		var v any
		if err := json.Unmarshal(data, &v); err != nil {
			return nil, fmt.Errorf("firmware: secrets %s: %w", name, err)
		}
		walkJSON(name, "", v, add)
	case isText(data):
		for n, line := range strings.Split(string(data), "\n") {
			line = strings.TrimSpace(line)
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			field, value := "", line
			if i := strings.IndexAny(line, ":="); i >= 0 {
				field, value = strings.TrimSpace(line[:i]), strings.TrimSpace(line[i+1:])
			}
			if strings.Contains(strings.ToLower(field), "pub") {
				continue
			}
			if b := decodeKeyString(value); b != nil {
				add(fmt.Sprintf("%s:%d %s", name, n+1, field), b)
			}
		}
	default:
		if len(data) <= 64 {
			add(name+" (raw)", data)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("firmware: secrets %s: %w (of at least %d bytes)", name, ErrNoSecrets, MinSecretSize)
	}
	return out, nil
}

// privateScalars extracts the bare secret of a PEM private key, which is
// what firmware would embed rather than the DER container.
func privateScalars(blk *pem.Block) []Secret {
	var key any
	var err error
	switch blk.Type {
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(blk.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(blk.Bytes)
	default:
		key, err = x509.ParsePKCS8PrivateKey(blk.Bytes)
	}
	if err != nil {
		return nil
	}
	switch k := key.(type) {
	case ed25519.PrivateKey:
		return []Secret{{Name: "Ed25519 seed", Value: k.Seed()}}
	case *ecdsa.PrivateKey:
		d, err := k.Bytes()
		if err != nil {
			return nil
		}
		return []Secret{{Name: "ECDSA scalar", Value: d}}
	case *ecdh.PrivateKey:
		return []Secret{{Name: "ECDH scalar", Value: k.Bytes()}}
	case *rsa.PrivateKey:
		s := []Secret{{Name: "RSA d", Value: k.D.Bytes()}}
		for i, p := range k.Primes {
			s = append(s, Secret{Name: fmt.Sprintf("RSA prime %d", i+1), Value: p.Bytes()})
		}
		return s
	}
	return nil
}

func walkJSON(file, path string, v any, add func(string, []byte)) {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			if strings.Contains(strings.ToLower(k), "pub") {
				continue
			}
			walkJSON(file, path+"."+k, e, add)
		}
	case []any:
		for i, e := range x {
			walkJSON(file, fmt.Sprintf("%s[%d]", path, i), e, add)
		}
	case string:
		if b := decodeKeyString(x); b != nil {
			add(file+" "+path, b)
		}
	}
}

// isText reports whether data is printable UTF-8 text; anything else is
// taken for a raw binary key.
func isText(data []byte) bool {
	if !utf8.Valid(data) {
		return false
	}
	for _, r := range string(data) {
		if !unicode.IsPrint(r) && r != '\n' && r != '\r' && r != '\t' {
			return false
		}
	}
	return true
}

// decodeKeyString decodes hex or base64 of at least MinSecretSize bytes.
func decodeKeyString(s string) []byte {
	s = strings.TrimPrefix(strings.TrimPrefix(s, "0x"), "0X")
	if b, err := hex.DecodeString(s); err == nil && len(b) >= MinSecretSize {
		return b
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(s); err == nil && len(b) >= MinSecretSize {
			return b
		}
	}
	return nil
}

type needle struct {
	secret, encoding string
	b                []byte
}

// encodings lists the forms of a secret Scan looks for. Every form is at
// least MinSecretSize bytes long, which the index relies on.
func encodings(s Secret) []needle {
	v := s.Value
	rev := slices.Clone(v)
	slices.Reverse(rev)
	// Base64 of a key inside a longer base64 text depends on alignment;
	// the first whole 3-byte groups are stable for the standalone key.
	b64 := base64.StdEncoding.EncodeToString(v[:len(v)/3*3])
	ns := []needle{
		{s.Name, "raw", v},
		{s.Name, "byte-reversed", rev},
		{s.Name, "hex", []byte(hex.EncodeToString(v))},
		{s.Name, "HEX", []byte(strings.ToUpper(hex.EncodeToString(v)))},
		{s.Name, "base64", []byte(b64)},
		{s.Name, "base64url", []byte(strings.NewReplacer("+", "-", "/", "_").Replace(b64))},
	}
	if len(v) == ed25519.SeedSize {
		// An Ed25519 seed may have been stored expanded: the clamped
		// scalar and the nonce prefix of SHA-512(seed).
		h := sha512.Sum512(v)
		h[0] &= 248
		h[31] &= 127
		h[31] |= 64
		ns = append(ns, needle{s.Name, "Ed25519 expanded scalar", h[:32]}, needle{s.Name, "Ed25519 nonce prefix", h[32:]})
	}
	return ns
}

// pemArmor is flagged even without a known secret: no private key in any
// PEM form belongs in an image.
var pemBegin, pemArmor = []byte("-----BEGIN "), []byte("PRIVATE KEY-----")

// Scan returns every occurrence in image of any secret, in any encoding of
// encodings, plus any PEM private-key armour. It indexes the first 16 bytes
// of every form, so the cost is one map probe per image byte whatever the
// number of secrets.
func Scan(image []byte, secrets []Secret) []Finding {
	index := make(map[[MinSecretSize]byte][]needle)
	for _, s := range secrets {
		if len(s.Value) < MinSecretSize {
			continue
		}
		for _, n := range encodings(s) {
			k := [MinSecretSize]byte(n.b)
			index[k] = append(index[k], n)
		}
	}
	var out []Finding
	for i := 0; i+MinSecretSize <= len(image); i++ {
		for _, n := range index[[MinSecretSize]byte(image[i:])] {
			if bytes.HasPrefix(image[i:], n.b) {
				out = append(out, Finding{Secret: n.secret, Encoding: n.encoding, Offset: i})
			}
		}
	}
	for off := 0; ; {
		i := bytes.Index(image[off:], pemBegin)
		if i < 0 {
			break
		}
		line := image[off+i:]
		if j := bytes.IndexByte(line, '\n'); j >= 0 {
			line = line[:j]
		}
		if bytes.HasSuffix(bytes.TrimRight(line, "\r"), pemArmor) {
			out = append(out, Finding{Secret: "PEM private key armour", Encoding: "text", Offset: off + i})
		}
		off += i + len(pemBegin)
	}
	return out
}
