package provision

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"encoding/binary"
	"fmt"
)

// Domain separation of the three signatures and of HPKE.
var (
	requestContext = []byte("sluice provisioning request v1\x00")
	recordContext  = []byte("sluice provisioning record v1\x00")
	hpkeInfo       = []byte("sluice provisioning keys v1")
)

var (
	requestMagic = [4]byte{'S', 'L', 'R', 'Q'}
	recordMagic  = [4]byte{'S', 'L', 'P', 'R'}
	deviceMagic  = [4]byte{'S', 'L', 'D', 'V'}
)

// reader takes fields off a byte string, remembering the first error with
// the field it happened in.
type reader struct {
	b   []byte
	off int
	err error
}

func (r *reader) fail(field, format string, args ...any) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: %s at offset %d: %s", ErrMalformed, field, r.off, fmt.Sprintf(format, args...))
	}
}

func (r *reader) take(field string, n int) []byte {
	if r.err != nil {
		return make([]byte, n)
	}
	if n > len(r.b)-r.off {
		r.fail(field, "truncated (need %d bytes, %d left)", n, len(r.b)-r.off)
		return make([]byte, n)
	}
	v := r.b[r.off : r.off+n : r.off+n]
	r.off += n
	return v
}

func (r *reader) u8(field string) byte    { return r.take(field, 1)[0] }
func (r *reader) u16(field string) uint16 { return binary.BigEndian.Uint16(r.take(field, 2)) }
func (r *reader) u32(field string) uint32 { return binary.BigEndian.Uint32(r.take(field, 4)) }
func (r *reader) u64(field string) uint64 { return binary.BigEndian.Uint64(r.take(field, 8)) }

// header reads magic and version.
func (r *reader) header(magic [4]byte, what string) {
	if m := r.take("magic", 4); r.err == nil && [4]byte(m) != magic {
		r.fail("magic", "%q is not a %s", m, what)
	}
	if v := r.u8("version"); r.err == nil && v != Version {
		r.err = fmt.Errorf("%w: %s version %d, this reads %d", ErrVersion, what, v, Version)
	}
}

func (r *reader) meterID() uint64 {
	id := r.u64("meter_id")
	if r.err == nil && id == 0 {
		r.fail("meter_id", "zero")
	}
	return id
}

func (r *reader) model() string {
	n := int(r.u8("model_len"))
	m := r.take("model", n)
	if r.err == nil {
		if err := checkModel(string(m)); err != nil {
			r.fail("model", "%v", err)
		}
	}
	return string(m)
}

func (r *reader) end() {
	if r.err == nil && r.off != len(r.b) {
		r.fail("end", "%d trailing bytes", len(r.b)-r.off)
	}
}

func checkModel(m string) error {
	if len(m) == 0 || len(m) > MaxModelLen {
		return fmt.Errorf("length %d, want 1..%d", len(m), MaxModelLen)
	}
	for i := 0; i < len(m); i++ {
		if m[i] < 0x20 || m[i] > 0x7e {
			return fmt.Errorf("byte 0x%02x at %d is not printable ASCII", m[i], i)
		}
	}
	return nil
}

func appendModel(b []byte, m string) []byte {
	return append(append(b, byte(len(m))), m...)
}

// Request is what a meter hands the head-end at the factory station: who
// it is and the public halves of the keys it generated, self-signed with
// its identity key (proof that it holds that key).
type Request struct {
	MeterID   uint64
	Model     string
	DeviceKey [32]byte          // X25519 public key: keys are sealed to it
	Identity  ed25519.PublicKey // the meter's long-term identity

	raw []byte
}

// Bytes returns the encoded request.
func (q *Request) Bytes() []byte { return q.raw }

// request wire format:
//
//	0   4  "SLRQ"
//	4   1  version (1)
//	5   8  meter ID
//	13  1  model length m
//	14  m  model (printable ASCII)
//	.   32 device X25519 public key
//	.   32 identity Ed25519 public key
//	.   64 Ed25519(identity, requestContext || all bytes before)
const requestFixed = 4 + 1 + 8 + 1 + 32 + 32 + ed25519.SignatureSize

func encodeRequestBody(id uint64, model string, dev [32]byte, ident ed25519.PublicKey) []byte {
	b := append([]byte(nil), requestMagic[:]...)
	b = append(b, Version)
	b = binary.BigEndian.AppendUint64(b, id)
	b = appendModel(b, model)
	b = append(b, dev[:]...)
	return append(b, ident...)
}

// ParseRequest decodes a request and checks its self-signature.
func ParseRequest(b []byte) (*Request, error) {
	r := &reader{b: b}
	r.header(requestMagic, "provisioning request")
	q := &Request{MeterID: r.meterID(), Model: r.model()}
	copy(q.DeviceKey[:], r.take("device_key", 32))
	q.Identity = ed25519.PublicKey(r.take("identity_key", 32))
	bodyEnd := r.off
	sig := r.take("signature", ed25519.SignatureSize)
	r.end()
	if r.err != nil {
		return nil, r.err
	}
	if _, err := x25519Public(q.DeviceKey[:]); err != nil {
		return nil, fmt.Errorf("%w: device_key: %v", ErrMalformed, err)
	}
	if !ed25519.Verify(q.Identity, append(append([]byte(nil), requestContext...), b[:bodyEnd]...), sig) {
		return nil, fmt.Errorf("%w: request not signed by its identity key", ErrSignature)
	}
	q.raw = b
	return q, nil
}

// KeyInfo describes a sealed key without its secret.
type KeyInfo struct {
	Kind        KeyKind
	RootVersion uint16
	Version     uint16
	Len         int
}

// Record is a parsed provisioning record. ParseRecord only checks its
// structure; Device.Open verifies and opens it.
type Record struct {
	MeterID   uint64
	Model     string
	Counter   uint32
	DeviceKey [32]byte
	Identity  ed25519.PublicKey
	Trust     Trust
	Keys      []KeyInfo

	enc, sealed []byte
	aadEnd      int // the associated data of the sealed keys: bytes [0, aadEnd)
	bodyEnd     int // the signed bytes: [0, bodyEnd)
	sig         []byte
	raw         []byte
}

// Bytes returns the encoded record.
func (rec *Record) Bytes() []byte { return rec.raw }

// record wire format:
//
//	0   4   "SLPR"
//	4   1   version (1)
//	5   8   meter ID (not 0)
//	13  1   model length m (1..32)
//	14  m   model (printable ASCII)
//	.   4   provisioning counter (>= 1)
//	.   32  device X25519 public key
//	.   32  device identity Ed25519 public key
//	.   32  credit verification key (Ed25519)
//	.   32  management verification key (Ed25519)
//	.   1   firmware key type: 1 Ed25519, 2 ECDSA P-256
//	.   32|65 firmware key (raw Ed25519, or uncompressed SEC 1 point)
//	.   1   key count n (1..8)
//	.   6n  per key: kind (1), length (1, 8..32), root version (2, >= 1), key version (2)
//	.   32  HPKE encapsulated key
//	.   L   AES-256-GCM ciphertext of the secrets in entry order, L = sum of lengths + 16
//	.   64  Ed25519(management, recordContext || all bytes before)

// ParseRecord decodes a record's structure (no signature or key check).
func ParseRecord(b []byte) (*Record, error) {
	r := &reader{b: b}
	r.header(recordMagic, "provisioning record")
	rec := &Record{MeterID: r.meterID(), Model: r.model()}
	rec.Counter = r.u32("counter")
	if r.err == nil && rec.Counter == 0 {
		r.fail("counter", "zero")
	}
	copy(rec.DeviceKey[:], r.take("device_key", 32))
	rec.Identity = ed25519.PublicKey(r.take("identity_key", 32))
	rec.Trust.Credit = ed25519.PublicKey(r.take("credit_key", 32))
	rec.Trust.Management = ed25519.PublicKey(r.take("management_key", 32))
	switch t := r.u8("firmware_key_type"); {
	case r.err != nil:
	case t == fwEd25519:
		rec.Trust.Firmware = ed25519.PublicKey(r.take("firmware_key", 32))
	case t == fwP256:
		pt := r.take("firmware_key", p256PointLen)
		if r.err == nil {
			k, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), pt)
			if err != nil {
				r.fail("firmware_key", "not a P-256 point: %v", err)
			}
			rec.Trust.Firmware = k
		}
	default:
		r.fail("firmware_key_type", "%d, want 1 (Ed25519) or 2 (ECDSA P-256)", t)
	}
	n := int(r.u8("key_count"))
	if r.err == nil && (n == 0 || n > MaxKeys) {
		r.fail("key_count", "%d, want 1..%d", n, MaxKeys)
	}
	total := 0
	seen := map[KeyKind]bool{}
	for i := 0; i < n && r.err == nil; i++ {
		field := fmt.Sprintf("key[%d]", i)
		k := KeyInfo{Kind: KeyKind(r.u8(field + ".kind")), Len: int(r.u8(field + ".length"))}
		k.RootVersion = r.u16(field + ".root_version")
		k.Version = r.u16(field + ".key_version")
		switch {
		case r.err != nil:
		case !k.Kind.valid():
			r.fail(field+".kind", "unknown kind %d", k.Kind)
		case seen[k.Kind]:
			r.fail(field+".kind", "%v appears twice", k.Kind)
		case k.Len < MinKeyLen || k.Len > MaxKeyLen:
			r.fail(field+".length", "%d, want %d..%d", k.Len, MinKeyLen, MaxKeyLen)
		case k.RootVersion == 0:
			r.fail(field+".root_version", "zero")
		}
		seen[k.Kind] = true
		total += k.Len
		rec.Keys = append(rec.Keys, k)
	}
	rec.aadEnd = r.off
	rec.enc = r.take("hpke_enc", encLen)
	rec.sealed = r.take("sealed_keys", total+gcmTagLen)
	rec.bodyEnd = r.off
	rec.sig = r.take("signature", ed25519.SignatureSize)
	r.end()
	if r.err != nil {
		return nil, r.err
	}
	if _, err := x25519Public(rec.DeviceKey[:]); err != nil {
		return nil, fmt.Errorf("%w: device_key: %v", ErrMalformed, err)
	}
	rec.raw = b
	return rec, nil
}

// Verify checks the record's signature under the management key anchor.
func (rec *Record) Verify(anchor ed25519.PublicKey) error {
	if len(anchor) != ed25519.PublicKeySize {
		return fmt.Errorf("%w: trust anchor is not an Ed25519 public key", ErrSignature)
	}
	msg := append(append([]byte(nil), recordContext...), rec.raw[:rec.bodyEnd]...)
	if !ed25519.Verify(anchor, msg, rec.sig) {
		return fmt.Errorf("%w: record not signed by the trusted management key", ErrSignature)
	}
	return nil
}
