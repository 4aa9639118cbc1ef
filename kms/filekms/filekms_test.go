package filekms

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ed25519"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"sluice/kms"
	"sluice/kms/kmstest"
)

// testOpts keeps Argon2id cheap so the suite stays fast; the cost is read
// back from the file, so the code paths are those of production.
var testOpts = Options{Time: 1, MemoryKiB: 64, Threads: 1}

var pass = []byte("correct horse battery staple")

func TestKeyManager(t *testing.T) {
	kmstest.Run(t, func(t *testing.T) kms.KeyManager {
		s, err := Create(filepath.Join(t.TempDir(), "keys.sealed"), pass, testOpts)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}, kmstest.Caps{DKGA02: true})
}

// TestKeyManagerReopened runs the suite on a store that is closed and
// reopened after every change, proving everything survives the file.
func TestKeyManagerReopened(t *testing.T) {
	kmstest.Run(t, func(t *testing.T) kms.KeyManager {
		path := filepath.Join(t.TempDir(), "keys.sealed")
		s, err := Create(path, pass, testOpts)
		if err != nil {
			t.Fatal(err)
		}
		s.Close()
		return &reopening{t: t, path: path}
	}, kmstest.Caps{DKGA02: true})
}

func create(t *testing.T) (*Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "keys.sealed")
	s, err := Create(path, pass, testOpts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, path
}

func TestFileMode(t *testing.T) {
	s, path := create(t)
	if _, err := s.CreateKey(context.Background(), "root", kms.AES256); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, want 0600", fi.Mode().Perm())
	}
	os.Chmod(path, 0o640)
	if _, err := Open(path, pass, testOpts); !errors.Is(err, ErrPermissions) {
		t.Fatalf("group-readable store: %v, want ErrPermissions", err)
	}
	// No temporary files are left beside the store.
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Errorf("%d files in the store's directory, want 1", len(entries))
	}
}

func TestCreateRefusesExisting(t *testing.T) {
	_, path := create(t)
	if _, err := Create(path, pass, testOpts); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("Create over an existing store: %v", err)
	}
	if _, err := Create(filepath.Join(t.TempDir(), "x"), nil, testOpts); !errors.Is(err, kms.ErrInvalid) {
		t.Fatalf("empty passphrase: %v", err)
	}
}

func TestWrongPassphrase(t *testing.T) {
	s, path := create(t)
	s.CreateKey(context.Background(), "root", kms.AES256)
	for _, p := range [][]byte{[]byte("correct horse battery stapler"), nil, pass[:5]} {
		if _, err := Open(path, p, testOpts); !errors.Is(err, ErrWrongPassphrase) {
			t.Errorf("passphrase %q: %v, want ErrWrongPassphrase", p, err)
		}
	}
	r, err := Open(path, pass, testOpts)
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
}

// TestTampered: changing any byte of the file, or cutting it short, makes
// Open refuse it; no change yields a working store with other keys.
func TestTampered(t *testing.T) {
	s, path := create(t)
	ctx := context.Background()
	s.CreateKey(ctx, "root", kms.AES128)
	s.CreateKey(ctx, "credit", kms.Ed25519)
	orig, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	try := func(b []byte) error {
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		r, err := Open(path, pass, testOpts)
		if err == nil {
			r.Close()
		}
		return err
	}
	for i := range orig {
		b := bytes.Clone(orig)
		b[i] ^= 0x01
		err := try(b)
		if err == nil {
			t.Fatalf("byte %d flipped: store opened", i)
		}
		// Header fields that feed the passphrase stretch (cost, salt,
		// verifier) show up as a wrong passphrase; everything else as
		// tampering.
		if !errors.Is(err, ErrTampered) && !(i >= 10 && i < headerSize-12 && errors.Is(err, ErrWrongPassphrase)) {
			t.Fatalf("byte %d flipped: %v", i, err)
		}
	}
	for _, n := range []int{0, 8, headerSize, len(orig) - 1} {
		if err := try(orig[:n]); !errors.Is(err, ErrTampered) {
			t.Errorf("truncated to %d: %v, want ErrTampered", n, err)
		}
	}
	if err := try(append(bytes.Clone(orig), 0)); !errors.Is(err, ErrTampered) {
		t.Errorf("byte appended: %v, want ErrTampered", err)
	}
	if err := try(orig); err != nil {
		t.Fatalf("original bytes: %v", err)
	}
}

func TestPersistence(t *testing.T) {
	s, path := create(t)
	ctx := context.Background()
	s.CreateKey(ctx, "credit", kms.Ed25519)
	s.Rotate(ctx, "credit")
	pub1, _ := s.PublicKey(ctx, kms.KeyRef{Name: "credit", Version: 1})
	prf, _ := s.CreateKey(ctx, "root", kms.AES256)
	before, _ := s.PRF(ctx, prf.Ref(), []byte("m"))
	s.Close()

	r, err := Open(path, pass, testOpts)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	keys, _ := r.Keys(ctx)
	if len(keys) != 3 {
		t.Fatalf("%d key versions after reopening, want 3", len(keys))
	}
	if got, _ := r.PublicKey(ctx, kms.KeyRef{Name: "credit", Version: 1}); !got.(ed25519.PublicKey).Equal(pub1) {
		t.Error("credit@1 changed across reopening")
	}
	if after, _ := r.PRF(ctx, kms.Ref("root"), []byte("m")); !bytes.Equal(before, after) {
		t.Error("root PRF changed across reopening")
	}
	if keys[0].Created.IsZero() {
		t.Error("creation time not kept")
	}
}

// TestFailedWriteChangesNothing: when the file cannot be rewritten, the key
// is not created in memory either.
func TestFailedWriteChangesNothing(t *testing.T) {
	s, path := create(t)
	ctx := context.Background()
	s.CreateKey(ctx, "root", kms.AES256)
	// With its directory gone the store cannot be rewritten, whoever runs
	// the test (permissions would not stop root).
	if err := os.RemoveAll(filepath.Dir(path)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateKey(ctx, "credit", kms.Ed25519); err == nil {
		t.Fatal("CreateKey succeeded without a place to write the store")
	}
	if _, err := s.Rotate(ctx, "root"); err == nil {
		t.Fatal("Rotate succeeded without a place to write the store")
	}
	keys, _ := s.Keys(ctx)
	if len(keys) != 1 || keys[0].Name != "root" || keys[0].Version != 1 {
		t.Fatalf("keys in memory after failed writes: %+v", keys)
	}
}

// reopening is a KeyManager that opens the store afresh for every call, so
// the behavioural suite also checks what reaches the file.
type reopening struct {
	t      *testing.T
	path   string
	closed bool
}

func (r *reopening) with(f func(s *Store) error) error {
	if r.closed {
		return kms.ErrClosed
	}
	s, err := Open(r.path, pass, testOpts)
	if err != nil {
		r.t.Fatalf("reopening: %v", err)
	}
	defer s.Close()
	return f(s)
}

func (r *reopening) CreateKey(ctx context.Context, name string, kind kms.Kind) (i kms.KeyInfo, err error) {
	err = r.with(func(s *Store) error { i, err = s.CreateKey(ctx, name, kind); return err })
	return
}
func (r *reopening) ImportKey(ctx context.Context, name string, kind kms.Kind, m []byte) (i kms.KeyInfo, err error) {
	err = r.with(func(s *Store) error { i, err = s.ImportKey(ctx, name, kind, m); return err })
	return
}
func (r *reopening) Rotate(ctx context.Context, name string) (i kms.KeyInfo, err error) {
	err = r.with(func(s *Store) error { i, err = s.Rotate(ctx, name); return err })
	return
}
func (r *reopening) Keys(ctx context.Context) (ks []kms.KeyInfo, err error) {
	err = r.with(func(s *Store) error { ks, err = s.Keys(ctx); return err })
	return
}
func (r *reopening) Key(ctx context.Context, ref kms.KeyRef) (i kms.KeyInfo, err error) {
	err = r.with(func(s *Store) error { i, err = s.Key(ctx, ref); return err })
	return
}
func (r *reopening) PublicKey(ctx context.Context, ref kms.KeyRef) (p crypto.PublicKey, err error) {
	err = r.with(func(s *Store) error { p, err = s.PublicKey(ctx, ref); return err })
	return
}
func (r *reopening) Sign(ctx context.Context, ref kms.KeyRef, m []byte) (b []byte, err error) {
	err = r.with(func(s *Store) error { b, err = s.Sign(ctx, ref, m); return err })
	return
}
func (r *reopening) PRF(ctx context.Context, ref kms.KeyRef, m []byte) (b []byte, err error) {
	err = r.with(func(s *Store) error { b, err = s.PRF(ctx, ref, m); return err })
	return
}
func (r *reopening) Wrap(ctx context.Context, ref kms.KeyRef, p, aad []byte) (b []byte, err error) {
	err = r.with(func(s *Store) error { b, err = s.Wrap(ctx, ref, p, aad); return err })
	return
}
func (r *reopening) Unwrap(ctx context.Context, ref kms.KeyRef, w, aad []byte) (b []byte, err error) {
	err = r.with(func(s *Store) error { b, err = s.Unwrap(ctx, ref, w, aad); return err })
	return
}
func (r *reopening) Close() error { r.closed = true; return nil }

// FuzzParseHeader: the clear header parser never panics, and what it
// accepts has every field in range.
func FuzzParseHeader(f *testing.F) {
	dir := f.TempDir()
	s, err := Create(filepath.Join(dir, "k"), pass, testOpts)
	if err != nil {
		f.Fatal(err)
	}
	s.CreateKey(context.Background(), "root", kms.AES128)
	s.Close()
	raw, _ := os.ReadFile(filepath.Join(dir, "k"))
	f.Add(raw)
	f.Add(raw[:headerSize])
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := parseHeader(b)
		if err != nil {
			if !errors.Is(err, ErrTampered) {
				t.Fatalf("error %v is not ErrTampered", err)
			}
			return
		}
		if h.time == 0 || h.time > maxTime || h.memKiB > maxMemKiB || h.threads == 0 ||
			len(h.salt) != saltSize || len(h.verifier) != 32 || len(h.nonce) != 12 {
			t.Fatalf("accepted %+v", h)
		}
	})
}

// FuzzDecodePayload: whatever decrypts, the key table built from it is
// consistent or refused as tampered, never a panic.
func FuzzDecodePayload(f *testing.F) {
	f.Add([]byte(`{"keys":[{"name":"root","version":1,"kind":"aes128","created":"2026-11-25T08:00:00Z","secret":"AAECAwQFBgcICQoLDA0ODw=="}]}`))
	f.Add([]byte(`{"keys":[{"name":"c","version":1,"kind":"ed25519","secret":"AAECAwQFBgcICQoLDA0ODwABAgMEBQYHCAkKCwwNDg8="},{"name":"c","version":2,"kind":"ed25519","secret":"AAECAwQFBgcICQoLDA0ODwABAgMEBQYHCAkKCwwNDg8="}]}`))
	f.Add([]byte(`{"keys":[{"name":"p","version":1,"kind":"ecdsa-p256","secret":"AAECAwQFBgcICQoLDA0ODwABAgMEBQYHCAkKCwwNDg8="}]}`))
	f.Add([]byte(`{"keys":[]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		keys, err := decodePayload(b)
		if err != nil {
			if !errors.Is(err, ErrTampered) {
				t.Fatalf("error %v is not ErrTampered", err)
			}
			return
		}
		for name, vs := range keys {
			for i, e := range vs {
				if e.info.Name != name || e.info.Version != i+1 || e.info.Kind != vs[0].info.Kind || !e.info.Kind.Valid() {
					t.Fatalf("inconsistent entry %+v", e.info)
				}
			}
		}
	})
}
