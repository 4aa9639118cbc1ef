//go:build cgo && !nopkcs11

package pkcs11kms

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/asn1"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/big"
	"sort"
	"strings"
	"sync"

	"github.com/miekg/pkcs11"

	"sluice/kms"
)

// PKCS#11 v3.0 values for Edwards curves, which miekg/pkcs11 v1.1.2 does
// not define yet (SoftHSM2 2.6 implements them).
const (
	ckkECEdwards           = 0x00000040
	ckmECEdwardsKeyPairGen = 0x00001055
	ckmEdDSA               = 0x00001057
)

var (
	oidEd25519 = []byte{0x06, 0x03, 0x2b, 0x65, 0x70}                               // 1.3.101.112
	oidP256    = []byte{0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07} // 1.2.840.10045.3.1.7
)

const labelPrefix = "sluice:"

// dkga04Stored is the stored length of a DKGA04 key (zero-padded to the
// SHA-256 block size, see the package comment).
const dkga04Stored = 64

// KMS is a key manager over one PKCS#11 token. It implements kms.KeyManager.
type KMS struct {
	mu      sync.Mutex
	p       *pkcs11.Ctx
	session pkcs11.SessionHandle
	closed  bool
	rand    io.Reader
	// cache holds the objects of exact versions already looked up. Object
	// handles stay valid for the session and Sluice never deletes or
	// changes a key object, so entries never go stale while the session
	// lives; references to the newest version are always resolved afresh.
	cache map[kms.KeyRef]object
}

var _ kms.KeyManager = (*KMS)(nil)

// Open loads the module, finds the token by label, opens a session and logs
// in. Close undoes all of it.
func Open(_ context.Context, cfg Config) (kms.KeyManager, error) {
	return open(cfg)
}

func open(cfg Config) (*KMS, error) {
	if cfg.Module == "" || cfg.Token == "" {
		return nil, fmt.Errorf("pkcs11kms: %w: module and token label are required", kms.ErrInvalid)
	}
	p := pkcs11.New(cfg.Module)
	if p == nil {
		return nil, fmt.Errorf("pkcs11kms: cannot load module %s", cfg.Module)
	}
	if err := p.Initialize(); err != nil {
		// Already initialised means another KMS of this process holds the
		// module; finalising it here would pull the module out from under
		// that one, so only the reference taken by New is released.
		p.Destroy()
		if isRV(err, pkcs11.CKR_CRYPTOKI_ALREADY_INITIALIZED) {
			return nil, fmt.Errorf("pkcs11kms: %s is already in use by another key manager of this process (open one per module and share it)", cfg.Module)
		}
		return nil, fmt.Errorf("pkcs11kms: initialize %s: %w", cfg.Module, err)
	}
	k := &KMS{p: p, rand: rand.Reader, cache: map[kms.KeyRef]object{}}
	fail := func(err error) (*KMS, error) {
		k.closed = true
		p.Finalize()
		p.Destroy()
		return nil, err
	}
	slot, err := findToken(p, cfg.Token)
	if err != nil {
		return fail(err)
	}
	k.session, err = p.OpenSession(slot, pkcs11.CKF_SERIAL_SESSION|pkcs11.CKF_RW_SESSION)
	if err != nil {
		return fail(fmt.Errorf("pkcs11kms: open session: %w", err))
	}
	if err := p.Login(k.session, pkcs11.CKU_USER, cfg.PIN); err != nil && !isRV(err, pkcs11.CKR_USER_ALREADY_LOGGED_IN) {
		return fail(fmt.Errorf("pkcs11kms: login to token %q: %w", cfg.Token, err))
	}
	return k, nil
}

func isRV(err error, rv uint) bool {
	var e pkcs11.Error
	return errors.As(err, &e) && uint(e) == rv
}

func findToken(p *pkcs11.Ctx, label string) (uint, error) {
	slots, err := p.GetSlotList(true)
	if err != nil {
		return 0, fmt.Errorf("pkcs11kms: slot list: %w", err)
	}
	var seen []string
	for _, s := range slots {
		ti, err := p.GetTokenInfo(s)
		if err != nil {
			continue
		}
		if strings.TrimRight(ti.Label, " \x00") == label {
			return s, nil
		}
		seen = append(seen, ti.Label)
	}
	return 0, fmt.Errorf("pkcs11kms: %w: no token labelled %q (tokens: %q)", kms.ErrNotFound, label, seen)
}

// Close logs out and unloads the module. It is safe to call twice.
func (k *KMS) Close() error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.closed {
		return nil
	}
	k.closed = true
	k.p.Logout(k.session)
	k.p.CloseSession(k.session)
	err := k.p.Finalize()
	k.p.Destroy()
	if err != nil {
		return fmt.Errorf("pkcs11kms: finalize: %w", err)
	}
	return nil
}

// object is one key version found in the token.
type object struct {
	info   kms.KeyInfo
	handle pkcs11.ObjectHandle // secret or private key
}

func versionID(v int) []byte { return binary.BigEndian.AppendUint32(nil, uint32(v)) }

// find runs a search; k.mu is held.
func (k *KMS) find(tmpl []*pkcs11.Attribute) ([]pkcs11.ObjectHandle, error) {
	if err := k.p.FindObjectsInit(k.session, tmpl); err != nil {
		return nil, fmt.Errorf("pkcs11kms: find: %w", err)
	}
	defer k.p.FindObjectsFinal(k.session)
	var all []pkcs11.ObjectHandle
	for {
		hs, _, err := k.p.FindObjects(k.session, 64)
		if err != nil {
			return nil, fmt.Errorf("pkcs11kms: find: %w", err)
		}
		if len(hs) == 0 {
			return all, nil
		}
		all = append(all, hs...)
	}
}

// describe reads the name, version and kind of a secret or private key
// object; ok is false for objects that are not Sluice keys.
func (k *KMS) describe(h pkcs11.ObjectHandle) (object, bool, error) {
	attrs, err := k.p.GetAttributeValue(k.session, h, []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, nil),
		pkcs11.NewAttribute(pkcs11.CKA_ID, nil),
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, nil),
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, nil),
	})
	if err != nil {
		return object{}, false, fmt.Errorf("pkcs11kms: attributes: %w", err)
	}
	label, id := string(attrs[0].Value), attrs[1].Value
	if !strings.HasPrefix(label, labelPrefix) || len(id) != 4 {
		return object{}, false, nil
	}
	class, keyType := ulong(attrs[2].Value), ulong(attrs[3].Value)
	o := object{info: kms.KeyInfo{Name: strings.TrimPrefix(label, labelPrefix), Version: int(binary.BigEndian.Uint32(id))}, handle: h}
	switch {
	case class == pkcs11.CKO_SECRET_KEY && keyType == pkcs11.CKK_AES:
		a, err := k.p.GetAttributeValue(k.session, h, []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_VALUE_LEN, nil)})
		if err != nil {
			return object{}, false, fmt.Errorf("pkcs11kms: value length: %w", err)
		}
		switch ulong(a[0].Value) {
		case 16:
			o.info.Kind = kms.AES128
		case 32:
			o.info.Kind = kms.AES256
		default:
			return object{}, false, nil
		}
	case class == pkcs11.CKO_SECRET_KEY && keyType == pkcs11.CKK_GENERIC_SECRET:
		o.info.Kind = kms.STSDKGA04
	case class == pkcs11.CKO_PRIVATE_KEY && keyType == ckkECEdwards:
		o.info.Kind = kms.Ed25519
	case class == pkcs11.CKO_PRIVATE_KEY && keyType == pkcs11.CKK_EC:
		o.info.Kind = kms.ECDSAP256
	default:
		return object{}, false, nil
	}
	return o, true, nil
}

// withPublic fills in the public key of a signing key's description, once;
// k.mu is held.
func (k *KMS) withPublic(o object) (object, error) {
	if !o.info.Kind.Signing() || o.info.Public != nil {
		return o, nil
	}
	pub, err := k.publicKey(o.info)
	if err != nil {
		return object{}, err
	}
	o.info.Public = pub
	k.cache[o.info.Ref()] = o
	return o, nil
}

// ulong decodes a CK_ULONG attribute value (native byte order and size).
func ulong(b []byte) uint {
	var v uint64
	switch len(b) {
	case 8:
		v = binary.NativeEndian.Uint64(b)
	case 4:
		v = uint64(binary.NativeEndian.Uint32(b))
	}
	return uint(v)
}

// keyObjects returns the Sluice keys among the token's secret and private
// key objects that also match the attributes in match; k.mu is held.
// Public key objects are left out: every key is found by its secret or
// private half.
func (k *KMS) keyObjects(match ...*pkcs11.Attribute) ([]object, error) {
	var out []object
	for _, class := range []uint{pkcs11.CKO_SECRET_KEY, pkcs11.CKO_PRIVATE_KEY} {
		hs, err := k.find(append([]*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_CLASS, class)}, match...))
		if err != nil {
			return nil, err
		}
		for _, h := range hs {
			o, ok, err := k.describe(h)
			if err != nil {
				return nil, err
			}
			if ok {
				out = append(out, o)
			}
		}
	}
	return out, nil
}

// versions returns the objects of one key name, oldest first; k.mu is held.
func (k *KMS) versions(name string) ([]object, error) {
	out, err := k.keyObjects(pkcs11.NewAttribute(pkcs11.CKA_LABEL, labelPrefix+name))
	if err != nil {
		return nil, err
	}
	for i, o := range out {
		if c, hit := k.cache[o.info.Ref()]; hit {
			out[i] = c
		}
		k.cache[o.info.Ref()] = out[i]
	}
	sort.Slice(out, func(i, j int) bool { return out[i].info.Version < out[j].info.Version })
	return out, nil
}

// lookup resolves ref; k.mu is held.
func (k *KMS) lookup(ref kms.KeyRef) (object, error) {
	if k.closed {
		return object{}, kms.ErrClosed
	}
	if o, ok := k.cache[ref]; ok && ref.Version != 0 {
		return o, nil
	}
	vs, err := k.versions(ref.Name)
	if err != nil {
		return object{}, err
	}
	if len(vs) == 0 {
		return object{}, fmt.Errorf("%w: %s", kms.ErrNotFound, ref)
	}
	if ref.Version == 0 {
		return vs[len(vs)-1], nil
	}
	for _, o := range vs {
		if o.info.Version == ref.Version {
			return o, nil
		}
	}
	return object{}, fmt.Errorf("%w: %s", kms.ErrNotFound, ref)
}

func (k *KMS) get(ref kms.KeyRef, op string, kinds ...kms.Kind) (object, error) {
	o, err := k.lookup(ref)
	if err != nil {
		return object{}, err
	}
	for _, kind := range kinds {
		if o.info.Kind == kind {
			return o, nil
		}
	}
	return object{}, fmt.Errorf("%w: %s with %s key %s", kms.ErrKind, op, o.info.Kind, ref)
}

// publicKey reads the public half of a signing key version; k.mu is held.
func (k *KMS) publicKey(info kms.KeyInfo) (crypto.PublicKey, error) {
	hs, err := k.find([]*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PUBLIC_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, labelPrefix+info.Name),
		pkcs11.NewAttribute(pkcs11.CKA_ID, versionID(info.Version)),
	})
	if err != nil {
		return nil, err
	}
	if len(hs) != 1 {
		return nil, fmt.Errorf("pkcs11kms: %d public keys for %s@%d", len(hs), info.Name, info.Version)
	}
	a, err := k.p.GetAttributeValue(k.session, hs[0], []*pkcs11.Attribute{pkcs11.NewAttribute(pkcs11.CKA_EC_POINT, nil)})
	if err != nil {
		return nil, fmt.Errorf("pkcs11kms: EC point: %w", err)
	}
	point := a[0].Value
	// CKA_EC_POINT is a DER OCTET STRING; some tokens return the raw point.
	var inner []byte
	if rest, err := asn1.Unmarshal(point, &inner); err == nil && len(rest) == 0 {
		point = inner
	}
	switch info.Kind {
	case kms.Ed25519:
		if len(point) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("pkcs11kms: Ed25519 point is %d bytes", len(point))
		}
		return ed25519.PublicKey(bytes.Clone(point)), nil
	case kms.ECDSAP256:
		pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), point)
		if err != nil {
			return nil, fmt.Errorf("pkcs11kms: P-256 point: %w", err)
		}
		return pub, nil
	}
	return nil, fmt.Errorf("%w: %s has no public key", kms.ErrKind, info.Kind)
}

// protect returns the attributes every secret or private key gets: a
// private token object that never leaves the token in any form.
func protect(name string, version int) []*pkcs11.Attribute {
	return []*pkcs11.Attribute{
		pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
		pkcs11.NewAttribute(pkcs11.CKA_PRIVATE, true),
		pkcs11.NewAttribute(pkcs11.CKA_SENSITIVE, true),
		pkcs11.NewAttribute(pkcs11.CKA_EXTRACTABLE, false),
		pkcs11.NewAttribute(pkcs11.CKA_LABEL, labelPrefix+name),
		pkcs11.NewAttribute(pkcs11.CKA_ID, versionID(version)),
	}
}

// generate makes a new key version in the token; k.mu is held.
func (k *KMS) generate(name string, version int, kind kms.Kind) (kms.KeyInfo, error) {
	var err error
	switch kind {
	case kms.AES128, kms.AES256:
		_, err = k.p.GenerateKey(k.session, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_KEY_GEN, nil)},
			append(protect(name, version),
				pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
				pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_AES),
				pkcs11.NewAttribute(pkcs11.CKA_VALUE_LEN, kind.SecretSize()),
				pkcs11.NewAttribute(pkcs11.CKA_SIGN, true), // CMAC
				pkcs11.NewAttribute(pkcs11.CKA_ENCRYPT, true),
				pkcs11.NewAttribute(pkcs11.CKA_DECRYPT, true),
				pkcs11.NewAttribute(pkcs11.CKA_WRAP, false),
				pkcs11.NewAttribute(pkcs11.CKA_UNWRAP, false),
				pkcs11.NewAttribute(pkcs11.CKA_DERIVE, false),
			))
	case kms.Ed25519, kms.ECDSAP256:
		mech, keyType, params := uint(ckmECEdwardsKeyPairGen), uint(ckkECEdwards), oidEd25519
		if kind == kms.ECDSAP256 {
			mech, keyType, params = pkcs11.CKM_EC_KEY_PAIR_GEN, pkcs11.CKK_EC, oidP256
		}
		_, _, err = k.p.GenerateKeyPair(k.session, []*pkcs11.Mechanism{pkcs11.NewMechanism(mech, nil)},
			[]*pkcs11.Attribute{
				pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PUBLIC_KEY),
				pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, keyType),
				pkcs11.NewAttribute(pkcs11.CKA_TOKEN, true),
				pkcs11.NewAttribute(pkcs11.CKA_VERIFY, true),
				pkcs11.NewAttribute(pkcs11.CKA_EC_PARAMS, params),
				pkcs11.NewAttribute(pkcs11.CKA_LABEL, labelPrefix+name),
				pkcs11.NewAttribute(pkcs11.CKA_ID, versionID(version)),
			},
			append(protect(name, version),
				pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_PRIVATE_KEY),
				pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, keyType),
				pkcs11.NewAttribute(pkcs11.CKA_SIGN, true),
			))
	default:
		return kms.KeyInfo{}, fmt.Errorf("%w: cannot generate %s keys", kms.ErrKind, kind)
	}
	if err != nil {
		return kms.KeyInfo{}, fmt.Errorf("pkcs11kms: generate %s key %s@%d: %w", kind, name, version, err)
	}
	return k.info(kms.KeyRef{Name: name, Version: version})
}

// CreateKey implements kms.KeyManager.
func (k *KMS) CreateKey(_ context.Context, name string, kind kms.Kind) (kms.KeyInfo, error) {
	if err := kms.CheckCreate(name, kind); err != nil {
		return kms.KeyInfo{}, err
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.closed {
		return kms.KeyInfo{}, kms.ErrClosed
	}
	vs, err := k.versions(name)
	if err != nil {
		return kms.KeyInfo{}, err
	}
	if len(vs) > 0 {
		return kms.KeyInfo{}, fmt.Errorf("%w: %s", kms.ErrExists, name)
	}
	return k.generate(name, 1, kind)
}

// Rotate implements kms.KeyManager.
func (k *KMS) Rotate(_ context.Context, name string) (kms.KeyInfo, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	o, err := k.lookup(kms.Ref(name))
	if err != nil {
		return kms.KeyInfo{}, err
	}
	if o.info.Kind.Imported() {
		return kms.KeyInfo{}, fmt.Errorf("%w: %s keys are rotated by importing the next revision", kms.ErrKind, o.info.Kind)
	}
	return k.generate(name, o.info.Version+1, o.info.Kind)
}

// ImportKey implements kms.KeyManager.
func (k *KMS) ImportKey(_ context.Context, name string, kind kms.Kind, material []byte) (kms.KeyInfo, error) {
	if err := kms.CheckImport(name, kind, material); err != nil {
		return kms.KeyInfo{}, err
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.closed {
		return kms.KeyInfo{}, kms.ErrClosed
	}
	vs, err := k.versions(name)
	if err != nil {
		return kms.KeyInfo{}, err
	}
	if len(vs) > 0 && vs[0].info.Kind != kind {
		return kms.KeyInfo{}, fmt.Errorf("%w: %s holds %s keys, not %s", kms.ErrKind, name, vs[0].info.Kind, kind)
	}
	if kind == kms.STSDKGA02 {
		return kms.KeyInfo{}, fmt.Errorf("%w: DKGA02 vending keys in PKCS#11 (DKGA02 needs the key in the clear; use the file backend)", kms.ErrUnsupported)
	}
	version := len(vs) + 1
	if len(vs) > 0 {
		version = vs[len(vs)-1].info.Version + 1
	}
	padded := make([]byte, dkga04Stored)
	copy(padded, material)
	_, err = k.p.CreateObject(k.session, append(protect(name, version),
		pkcs11.NewAttribute(pkcs11.CKA_CLASS, pkcs11.CKO_SECRET_KEY),
		pkcs11.NewAttribute(pkcs11.CKA_KEY_TYPE, pkcs11.CKK_GENERIC_SECRET),
		pkcs11.NewAttribute(pkcs11.CKA_VALUE, padded),
		pkcs11.NewAttribute(pkcs11.CKA_SIGN, true),
		pkcs11.NewAttribute(pkcs11.CKA_DERIVE, false),
	))
	clear(padded)
	if err != nil {
		return kms.KeyInfo{}, fmt.Errorf("pkcs11kms: import %s: %w", name, err)
	}
	return k.info(kms.KeyRef{Name: name, Version: version})
}

// Keys implements kms.KeyManager.
func (k *KMS) Keys(context.Context) ([]kms.KeyInfo, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.closed {
		return nil, kms.ErrClosed
	}
	objs, err := k.keyObjects()
	if err != nil {
		return nil, err
	}
	var out []kms.KeyInfo
	for _, o := range objs {
		if o, err = k.withPublic(o); err != nil {
			return nil, err
		}
		out = append(out, o.info)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Name != out[j].Name {
			return out[i].Name < out[j].Name
		}
		return out[i].Version < out[j].Version
	})
	return out, nil
}

// info describes one key version, public key included; k.mu is held.
func (k *KMS) info(ref kms.KeyRef) (kms.KeyInfo, error) {
	o, err := k.lookup(ref)
	if err != nil {
		return kms.KeyInfo{}, err
	}
	o, err = k.withPublic(o)
	return o.info, err
}

// Key implements kms.KeyManager.
func (k *KMS) Key(_ context.Context, ref kms.KeyRef) (kms.KeyInfo, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.info(ref)
}

// PublicKey implements kms.KeyManager.
func (k *KMS) PublicKey(_ context.Context, ref kms.KeyRef) (crypto.PublicKey, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	o, err := k.get(ref, "public key", kms.Ed25519, kms.ECDSAP256)
	if err != nil {
		return nil, err
	}
	if o, err = k.withPublic(o); err != nil {
		return nil, err
	}
	return o.info.Public, nil
}

// sign runs one C_SignInit/C_Sign; k.mu is held.
func (k *KMS) sign(h pkcs11.ObjectHandle, mech uint, msg []byte) ([]byte, error) {
	if err := k.p.SignInit(k.session, []*pkcs11.Mechanism{pkcs11.NewMechanism(mech, nil)}, h); err != nil {
		return nil, fmt.Errorf("pkcs11kms: sign init: %w", err)
	}
	out, err := k.p.Sign(k.session, msg)
	if err != nil {
		return nil, fmt.Errorf("pkcs11kms: sign: %w", err)
	}
	return out, nil
}

// Sign implements kms.KeyManager.
func (k *KMS) Sign(_ context.Context, ref kms.KeyRef, msg []byte) ([]byte, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	o, err := k.get(ref, "sign", kms.Ed25519, kms.ECDSAP256)
	if err != nil {
		return nil, err
	}
	if o.info.Kind == kms.Ed25519 {
		return k.sign(o.handle, ckmEdDSA, msg)
	}
	h := sha256.Sum256(msg)
	rs, err := k.sign(o.handle, pkcs11.CKM_ECDSA, h[:])
	if err != nil {
		return nil, err
	}
	if len(rs) != 64 {
		return nil, fmt.Errorf("pkcs11kms: ECDSA signature is %d bytes, want 64", len(rs))
	}
	return asn1.Marshal(struct{ R, S *big.Int }{new(big.Int).SetBytes(rs[:32]), new(big.Int).SetBytes(rs[32:])})
}

// PRF implements kms.KeyManager.
func (k *KMS) PRF(_ context.Context, ref kms.KeyRef, msg []byte) ([]byte, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	o, err := k.get(ref, "PRF", kms.AES128, kms.AES256, kms.STSDKGA04)
	if err != nil {
		return nil, err
	}
	if o.info.Kind == kms.STSDKGA04 {
		return k.sign(o.handle, pkcs11.CKM_SHA256_HMAC, msg)
	}
	return k.sign(o.handle, pkcs11.CKM_AES_CMAC, msg)
}

// Wrap implements kms.KeyManager.
func (k *KMS) Wrap(_ context.Context, ref kms.KeyRef, plaintext, aad []byte) ([]byte, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	o, err := k.get(ref, "wrap", kms.AES128, kms.AES256)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, 12)
	if _, err := io.ReadFull(k.rand, nonce); err != nil {
		return nil, fmt.Errorf("pkcs11kms: nonce: %w", err)
	}
	params := pkcs11.NewGCMParams(nonce, aad, 128)
	defer params.Free()
	if err := k.p.EncryptInit(k.session, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_GCM, params)}, o.handle); err != nil {
		return nil, fmt.Errorf("pkcs11kms: encrypt init: %w", err)
	}
	ct, err := k.p.Encrypt(k.session, plaintext)
	if err != nil {
		return nil, fmt.Errorf("pkcs11kms: encrypt: %w", err)
	}
	return append(nonce, ct...), nil
}

// Unwrap implements kms.KeyManager.
func (k *KMS) Unwrap(_ context.Context, ref kms.KeyRef, wrapped, aad []byte) ([]byte, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	o, err := k.get(ref, "unwrap", kms.AES128, kms.AES256)
	if err != nil {
		return nil, err
	}
	if len(wrapped) < 12+16 {
		return nil, fmt.Errorf("%w: %d bytes is shorter than nonce and tag", kms.ErrUnwrap, len(wrapped))
	}
	params := pkcs11.NewGCMParams(bytes.Clone(wrapped[:12]), aad, 128)
	defer params.Free()
	if err := k.p.DecryptInit(k.session, []*pkcs11.Mechanism{pkcs11.NewMechanism(pkcs11.CKM_AES_GCM, params)}, o.handle); err != nil {
		return nil, fmt.Errorf("pkcs11kms: decrypt init: %w", err)
	}
	out, err := k.p.Decrypt(k.session, wrapped[12:])
	if err != nil {
		// A failed tag check is the expected failure; other return values
		// (device errors) also end the operation, and are reported as such.
		if isRV(err, pkcs11.CKR_ENCRYPTED_DATA_INVALID) || isRV(err, pkcs11.CKR_ENCRYPTED_DATA_LEN_RANGE) {
			return nil, kms.ErrUnwrap
		}
		return nil, fmt.Errorf("%w: %v", kms.ErrUnwrap, err)
	}
	return out, nil
}
