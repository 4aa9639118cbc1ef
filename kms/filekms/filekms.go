// Package filekms is the embedded key manager: keys held in memory and
// sealed at rest in one file under a passphrase.
//
// It is the default for a single head-end and for development; it gives
// confidentiality at rest, not the non-extractability of an HSM (use
// kms/pkcs11kms for that). The design choices:
//
//   - The passphrase is stretched with Argon2id (memory-hard, so guessing
//     costs memory as well as time; parameters stored in the file so they can
//     be raised later) into 64 bytes: an AES-256-GCM key for the contents and
//     a 32-byte verifier stored in the header.
//   - The verifier tells a wrong passphrase (ErrWrongPassphrase) apart from a
//     file altered on disk (ErrTampered, the GCM tag fails under the right
//     key). The whole header is the GCM associated data, so no header byte can
//     be changed undetected either: changing the salt or cost parameters
//     changes the derived key and shows up as a wrong passphrase.
//   - Every change rewrites the file atomically: a temporary file in the same
//     directory, written, fsynced, renamed over the old one, directory
//     fsynced. A crash leaves the old or the new store, never a mixture.
//   - The file is created with mode 0600 and a store whose file is readable
//     by group or others is refused (ErrPermissions), the way ssh treats
//     private keys.
//
// One process at a time may hold a store open for writing: there is no
// cross-process lock, so two writers would lose each other's changes.
package filekms

import (
	"bytes"
	"context"
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/des"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"golang.org/x/crypto/argon2"

	"sluice/cmac"
	"sluice/kms"
)

// Errors Open returns for a store it will not use.
var (
	ErrWrongPassphrase = errors.New("filekms: wrong passphrase")
	ErrTampered        = errors.New("filekms: key store altered or corrupt")
	ErrPermissions     = errors.New("filekms: key store readable by group or others")
)

// Options tune a store. The zero value is the production setting.
type Options struct {
	// Argon2id cost for a new store (Open reads it from the file). Zero
	// means the default: 3 passes over 64 MiB with 4 lanes. Tests lower it.
	Time      uint32
	MemoryKiB uint32
	Threads   uint8
	// Rand is the source of keys, salts and nonces; nil means crypto/rand.
	Rand io.Reader
	// Now stamps key creation times; nil means time.Now.
	Now func() time.Time
}

const (
	magic       = "SLUICEKS"
	fileVersion = 1
	kdfArgon2id = 1
	saltSize    = 16
	headerSize  = 8 + 1 + 1 + 4 + 4 + 1 + saltSize + 32 + 12 // 79
	maxMemKiB   = 4 << 20                                    // refuse a tampered header asking for more than 4 GiB
	maxTime     = 64
)

// Store is a sealed file key store. It implements kms.KeyManager.
type Store struct {
	path string
	rand io.Reader
	now  func() time.Time

	mu     sync.Mutex
	closed bool
	header []byte      // everything before the ciphertext except the nonce (the nonce changes per write)
	aead   cipher.AEAD // under the passphrase-derived key
	keys   map[string][]*entry
}

var _ kms.KeyManager = (*Store)(nil)

type entry struct {
	info   kms.KeyInfo
	secret []byte // raw secret, Ed25519 seed or ECDSA scalar

	aead  cipher.AEAD // AES kinds
	block cipher.Block
	ed    ed25519.PrivateKey
	ec    *ecdsa.PrivateKey
}

// fileKey is one key version as stored inside the sealed payload.
type fileKey struct {
	Name    string    `json:"name"`
	Version int       `json:"version"`
	Kind    kms.Kind  `json:"kind"`
	Created time.Time `json:"created"`
	Secret  []byte    `json:"secret"`
}

type payload struct {
	Keys []fileKey `json:"keys"`
}

func (o Options) withDefaults() Options {
	if o.Time == 0 {
		o.Time = 3
	}
	if o.MemoryKiB == 0 {
		o.MemoryKiB = 64 << 10
	}
	if o.Threads == 0 {
		o.Threads = 4
	}
	if o.Rand == nil {
		o.Rand = rand.Reader
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

// stretch derives the content key and the verifier from the passphrase.
func stretch(pass, salt []byte, t, m uint32, p uint8) (key, verifier []byte) {
	out := argon2.IDKey(pass, salt, t, m, p, 64)
	return out[:32], out[32:]
}

// Create makes a new, empty store at path, which must not exist.
func Create(path string, passphrase []byte, opts Options) (*Store, error) {
	if len(passphrase) == 0 {
		return nil, fmt.Errorf("filekms: %w: empty passphrase", kms.ErrInvalid)
	}
	o := opts.withDefaults()
	if _, err := os.Lstat(path); err == nil {
		return nil, fmt.Errorf("filekms: %s: %w", path, fs.ErrExist)
	}
	salt := make([]byte, saltSize)
	if _, err := io.ReadFull(o.Rand, salt); err != nil {
		return nil, fmt.Errorf("filekms: salt: %w", err)
	}
	key, verifier := stretch(passphrase, salt, o.Time, o.MemoryKiB, o.Threads)
	h := make([]byte, 0, headerSize)
	h = append(h, magic...)
	h = append(h, fileVersion, kdfArgon2id)
	h = binary.BigEndian.AppendUint32(h, o.Time)
	h = binary.BigEndian.AppendUint32(h, o.MemoryKiB)
	h = append(h, o.Threads)
	h = append(h, salt...)
	h = append(h, verifier...)
	s, err := newStore(path, h, key, o)
	if err != nil {
		return nil, err
	}
	if err := s.save(); err != nil {
		return nil, err
	}
	return s, nil
}

func newStore(path string, header, key []byte, o Options) (*Store, error) {
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("filekms: %w", err)
	}
	aead, err := cipher.NewGCM(b)
	if err != nil {
		return nil, fmt.Errorf("filekms: %w", err)
	}
	return &Store{path: path, rand: o.Rand, now: o.Now, header: header, aead: aead, keys: map[string][]*entry{}}, nil
}

// Open unseals the store at path. It refuses a wrong passphrase
// (ErrWrongPassphrase), a file altered or truncated (ErrTampered) and a file
// others may read (ErrPermissions).
func Open(path string, passphrase []byte, opts Options) (*Store, error) {
	o := opts.withDefaults()
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("filekms: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%w: %s has mode %v, want 0600", ErrPermissions, path, fi.Mode().Perm())
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("filekms: %w", err)
	}
	h, err := parseHeader(raw)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	key, verifier := stretch(passphrase, h.salt, h.time, h.memKiB, h.threads)
	if subtle.ConstantTimeCompare(verifier, h.verifier) != 1 {
		return nil, ErrWrongPassphrase
	}
	s, err := newStore(path, bytes.Clone(raw[:headerSize-12]), key, o)
	if err != nil {
		return nil, err
	}
	plain, err := s.aead.Open(nil, h.nonce, raw[headerSize:], raw[:headerSize])
	if err != nil {
		return nil, fmt.Errorf("%w: %s: contents fail authentication", ErrTampered, path)
	}
	defer clear(plain)
	if s.keys, err = decodePayload(plain); err != nil {
		return nil, err
	}
	return s, nil
}

// header is the parsed clear part of a store file.
type header struct {
	time, memKiB          uint32
	threads               uint8
	salt, verifier, nonce []byte
}

// parseHeader checks the clear header of a store file. Everything it
// accepts is still authenticated later, as GCM associated data; the checks
// here only keep a damaged file from asking for absurd Argon2id costs.
func parseHeader(raw []byte) (header, error) {
	if len(raw) < headerSize+16 || string(raw[:8]) != magic {
		return header{}, fmt.Errorf("%w: not a Sluice key store", ErrTampered)
	}
	if raw[8] != fileVersion || raw[9] != kdfArgon2id {
		return header{}, fmt.Errorf("%w: format %d, KDF %d unknown", ErrTampered, raw[8], raw[9])
	}
	h := header{
		time:     binary.BigEndian.Uint32(raw[10:]),
		memKiB:   binary.BigEndian.Uint32(raw[14:]),
		threads:  raw[18],
		salt:     raw[19 : 19+saltSize],
		verifier: raw[19+saltSize : 19+saltSize+32],
		nonce:    raw[headerSize-12 : headerSize],
	}
	if h.time == 0 || h.time > maxTime || h.threads == 0 || h.memKiB < 8*uint32(h.threads) || h.memKiB > maxMemKiB {
		return header{}, fmt.Errorf("%w: Argon2id cost t=%d m=%d p=%d out of range", ErrTampered, h.time, h.memKiB, h.threads)
	}
	return h, nil
}

// decodePayload rebuilds the key table from the decrypted contents,
// checking every key against its kind and that versions run 1, 2, ... with
// one kind per name.
func decodePayload(plain []byte) (map[string][]*entry, error) {
	var pl payload
	if err := json.Unmarshal(plain, &pl); err != nil {
		return nil, fmt.Errorf("%w: contents: %v", ErrTampered, err)
	}
	keys := map[string][]*entry{}
	for _, fk := range pl.Keys {
		e, err := newEntry(kms.KeyInfo{Name: fk.Name, Version: fk.Version, Kind: fk.Kind, Created: fk.Created}, fk.Secret)
		if err != nil {
			return nil, fmt.Errorf("%w: key %s@%d: %v", ErrTampered, fk.Name, fk.Version, err)
		}
		if vs := keys[fk.Name]; fk.Version != len(vs)+1 || (len(vs) > 0 && vs[0].info.Kind != fk.Kind) {
			return nil, fmt.Errorf("%w: key %s@%d out of order", ErrTampered, fk.Name, fk.Version)
		}
		keys[fk.Name] = append(keys[fk.Name], e)
	}
	return keys, nil
}

// newEntry checks a secret against its kind and prepares its primitives.
func newEntry(info kms.KeyInfo, secret []byte) (*entry, error) {
	if err := kms.CheckName(info.Name); err != nil {
		return nil, err
	}
	e := &entry{info: info, secret: bytes.Clone(secret)}
	want := info.Kind.SecretSize()
	if info.Kind.Signing() {
		want = 32
	}
	if !info.Kind.Valid() {
		return nil, fmt.Errorf("%w: kind %q unknown", kms.ErrInvalid, info.Kind)
	}
	if len(secret) != want {
		return nil, fmt.Errorf("%w: %s secret is %d bytes, want %d", kms.ErrInvalid, info.Kind, len(secret), want)
	}
	var err error
	switch info.Kind {
	case kms.AES128, kms.AES256:
		if e.block, err = aes.NewCipher(e.secret); err == nil {
			e.aead, err = cipher.NewGCM(e.block)
		}
	case kms.Ed25519:
		e.ed = ed25519.NewKeyFromSeed(e.secret)
		e.info.Public = e.ed.Public()
	case kms.ECDSAP256:
		if e.ec, err = ecdsa.ParseRawPrivateKey(elliptic.P256(), e.secret); err == nil {
			e.info.Public = &e.ec.PublicKey
		}
	case kms.STSDKGA02:
		e.block, err = des.NewCipher(e.secret)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %v", kms.ErrInvalid, err)
	}
	return e, nil
}

// save seals the current keys and replaces the file atomically.
func (s *Store) save() error {
	var pl payload
	names := make([]string, 0, len(s.keys))
	for n := range s.keys {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		for _, e := range s.keys[n] {
			pl.Keys = append(pl.Keys, fileKey{Name: n, Version: e.info.Version, Kind: e.info.Kind, Created: e.info.Created, Secret: e.secret})
		}
	}
	plain, err := json.Marshal(pl)
	if err != nil {
		return fmt.Errorf("filekms: %w", err)
	}
	nonce := make([]byte, 12)
	if _, err := io.ReadFull(s.rand, nonce); err != nil {
		return fmt.Errorf("filekms: nonce: %w", err)
	}
	full := append(bytes.Clone(s.header), nonce...)
	out := s.aead.Seal(full, nonce, plain, full)
	clear(plain)
	return writeAtomic(s.path, out)
}

func writeAtomic(path string, data []byte) (err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("filekms: %w", err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if err = f.Chmod(0o600); err != nil {
		return fmt.Errorf("filekms: %w", err)
	}
	if _, err = f.Write(data); err != nil {
		return fmt.Errorf("filekms: writing %s: %w", f.Name(), err)
	}
	if err = f.Sync(); err != nil {
		return fmt.Errorf("filekms: fsync %s: %w", f.Name(), err)
	}
	if err = f.Close(); err != nil {
		return fmt.Errorf("filekms: %w", err)
	}
	if err = os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("filekms: %w", err)
	}
	// The rename is durable only once the directory entry is.
	d, derr := os.Open(dir)
	if derr != nil {
		return fmt.Errorf("filekms: %w", derr)
	}
	defer d.Close()
	if derr := d.Sync(); derr != nil {
		return fmt.Errorf("filekms: fsync %s: %w", dir, derr)
	}
	return nil
}

// lookup resolves ref; s.mu is held.
func (s *Store) lookup(ref kms.KeyRef) (*entry, error) {
	if s.closed {
		return nil, kms.ErrClosed
	}
	vs := s.keys[ref.Name]
	if len(vs) == 0 {
		return nil, fmt.Errorf("%w: %s", kms.ErrNotFound, ref)
	}
	if ref.Version == 0 {
		return vs[len(vs)-1], nil
	}
	if ref.Version < 0 || ref.Version > len(vs) {
		return nil, fmt.Errorf("%w: %s (newest is version %d)", kms.ErrNotFound, ref, len(vs))
	}
	return vs[ref.Version-1], nil
}

// add appends a version and persists it, undoing the change if the write
// fails so memory never runs ahead of the file.
func (s *Store) add(name string, kind kms.Kind, secret []byte) (kms.KeyInfo, error) {
	info := kms.KeyInfo{Name: name, Version: len(s.keys[name]) + 1, Kind: kind, Created: s.now().UTC().Truncate(time.Second)}
	e, err := newEntry(info, secret)
	if err != nil {
		return kms.KeyInfo{}, err
	}
	s.keys[name] = append(s.keys[name], e)
	if err := s.save(); err != nil {
		s.keys[name] = s.keys[name][:len(s.keys[name])-1]
		if len(s.keys[name]) == 0 {
			delete(s.keys, name)
		}
		return kms.KeyInfo{}, err
	}
	return e.info, nil
}

func (s *Store) generate(kind kms.Kind) ([]byte, error) {
	n := kind.SecretSize()
	if kind.Signing() {
		n = 32
	}
	if kind == kms.ECDSAP256 {
		k, err := ecdsa.GenerateKey(elliptic.P256(), s.rand)
		if err != nil {
			return nil, fmt.Errorf("filekms: %w", err)
		}
		return k.Bytes()
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(s.rand, b); err != nil {
		return nil, fmt.Errorf("filekms: %w", err)
	}
	return b, nil
}

// CreateKey implements kms.KeyManager.
func (s *Store) CreateKey(_ context.Context, name string, kind kms.Kind) (kms.KeyInfo, error) {
	if err := kms.CheckCreate(name, kind); err != nil {
		return kms.KeyInfo{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return kms.KeyInfo{}, kms.ErrClosed
	}
	if len(s.keys[name]) > 0 {
		return kms.KeyInfo{}, fmt.Errorf("%w: %s", kms.ErrExists, name)
	}
	secret, err := s.generate(kind)
	if err != nil {
		return kms.KeyInfo{}, err
	}
	return s.add(name, kind, secret)
}

// ImportKey implements kms.KeyManager.
func (s *Store) ImportKey(_ context.Context, name string, kind kms.Kind, material []byte) (kms.KeyInfo, error) {
	if err := kms.CheckImport(name, kind, material); err != nil {
		return kms.KeyInfo{}, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return kms.KeyInfo{}, kms.ErrClosed
	}
	if vs := s.keys[name]; len(vs) > 0 && vs[0].info.Kind != kind {
		return kms.KeyInfo{}, fmt.Errorf("%w: %s holds %s keys, not %s", kms.ErrKind, name, vs[0].info.Kind, kind)
	}
	return s.add(name, kind, material)
}

// Rotate implements kms.KeyManager.
func (s *Store) Rotate(_ context.Context, name string) (kms.KeyInfo, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, err := s.lookup(kms.Ref(name))
	if err != nil {
		return kms.KeyInfo{}, err
	}
	if e.info.Kind.Imported() {
		return kms.KeyInfo{}, fmt.Errorf("%w: %s keys are rotated by importing the next revision", kms.ErrKind, e.info.Kind)
	}
	secret, err := s.generate(e.info.Kind)
	if err != nil {
		return kms.KeyInfo{}, err
	}
	return s.add(name, e.info.Kind, secret)
}

// Keys implements kms.KeyManager.
func (s *Store) Keys(context.Context) ([]kms.KeyInfo, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, kms.ErrClosed
	}
	var out []kms.KeyInfo
	for _, vs := range s.keys {
		for _, e := range vs {
			out = append(out, e.info)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Name != out[j].Name {
			return out[i].Name < out[j].Name
		}
		return out[i].Version < out[j].Version
	})
	return out, nil
}

// Key implements kms.KeyManager.
func (s *Store) Key(_ context.Context, ref kms.KeyRef) (kms.KeyInfo, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, err := s.lookup(ref)
	if err != nil {
		return kms.KeyInfo{}, err
	}
	return e.info, nil
}

// get resolves ref under the lock and checks its kind allows op. Entries
// are immutable once added, so the caller uses it after unlocking.
func (s *Store) get(ref kms.KeyRef, op string, kinds ...kms.Kind) (*entry, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, err := s.lookup(ref)
	if err != nil {
		return nil, err
	}
	for _, k := range kinds {
		if e.info.Kind == k {
			return e, nil
		}
	}
	return nil, fmt.Errorf("%w: %s with %s key %s", kms.ErrKind, op, e.info.Kind, ref)
}

// PublicKey implements kms.KeyManager.
func (s *Store) PublicKey(_ context.Context, ref kms.KeyRef) (crypto.PublicKey, error) {
	e, err := s.get(ref, "public key", kms.Ed25519, kms.ECDSAP256)
	if err != nil {
		return nil, err
	}
	return e.info.Public, nil
}

// Sign implements kms.KeyManager.
func (s *Store) Sign(_ context.Context, ref kms.KeyRef, msg []byte) ([]byte, error) {
	e, err := s.get(ref, "sign", kms.Ed25519, kms.ECDSAP256)
	if err != nil {
		return nil, err
	}
	if e.ed != nil {
		return ed25519.Sign(e.ed, msg), nil
	}
	h := sha256.Sum256(msg)
	return ecdsa.SignASN1(s.rand, e.ec, h[:])
}

// PRF implements kms.KeyManager.
func (s *Store) PRF(_ context.Context, ref kms.KeyRef, msg []byte) ([]byte, error) {
	e, err := s.get(ref, "PRF", kms.AES128, kms.AES256, kms.STSDKGA04, kms.STSDKGA02)
	if err != nil {
		return nil, err
	}
	switch e.info.Kind {
	case kms.STSDKGA04:
		m := hmac.New(sha256.New, e.secret)
		m.Write(msg)
		return m.Sum(nil), nil
	case kms.STSDKGA02:
		if len(msg) != 8 {
			return nil, fmt.Errorf("%w: DKGA02 PRF takes one 8-byte block, got %d bytes", kms.ErrInvalid, len(msg))
		}
		out := make([]byte, 8)
		e.block.Encrypt(out, msg)
		subtle.XORBytes(out, out, msg)
		subtle.XORBytes(out, out, e.secret)
		return out, nil
	}
	m := cmac.NewWithCipher(e.block)
	m.Write(msg)
	return m.Sum(nil), nil
}

// Wrap implements kms.KeyManager.
func (s *Store) Wrap(_ context.Context, ref kms.KeyRef, plaintext, aad []byte) ([]byte, error) {
	e, err := s.get(ref, "wrap", kms.AES128, kms.AES256)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, 12, 12+len(plaintext)+16)
	if _, err := io.ReadFull(s.rand, nonce); err != nil {
		return nil, fmt.Errorf("filekms: nonce: %w", err)
	}
	return e.aead.Seal(nonce, nonce, plaintext, aad), nil
}

// Unwrap implements kms.KeyManager.
func (s *Store) Unwrap(_ context.Context, ref kms.KeyRef, wrapped, aad []byte) ([]byte, error) {
	e, err := s.get(ref, "unwrap", kms.AES128, kms.AES256)
	if err != nil {
		return nil, err
	}
	if len(wrapped) < 12+16 {
		return nil, fmt.Errorf("%w: %d bytes is shorter than nonce and tag", kms.ErrUnwrap, len(wrapped))
	}
	out, err := e.aead.Open(nil, wrapped[:12], wrapped[12:], aad)
	if err != nil {
		return nil, kms.ErrUnwrap
	}
	return out, nil
}

// Close forgets the keys held in memory. It is safe to call twice.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, vs := range s.keys {
		for _, e := range vs {
			clear(e.secret)
		}
	}
	s.keys = nil
	s.closed = true
	return nil
}
