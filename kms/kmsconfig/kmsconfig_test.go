package kmsconfig

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"sluice/kms"
	"sluice/kms/filekms"
)

var cheap = filekms.Options{Time: 1, MemoryKiB: 64, Threads: 1}

func TestOpenFile(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "keys.sealed")
	c := Config{Path: path, Passphrase: []byte("pw"), Options: cheap}
	if _, err := Open(ctx, c); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing store without Create: %v", err)
	}
	c.Create = true
	km, err := Open(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	km.CreateKey(ctx, "root", kms.AES256)
	km.Close()
	c.Create = false
	km, err = Open(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	defer km.Close()
	if keys, _ := km.Keys(ctx); len(keys) != 1 {
		t.Fatalf("reopened store has %d keys", len(keys))
	}
	c.Passphrase = []byte("wrong")
	if _, err := Open(ctx, c); !errors.Is(err, filekms.ErrWrongPassphrase) {
		t.Fatalf("wrong passphrase: %v", err)
	}
}

func TestOpenErrors(t *testing.T) {
	ctx := context.Background()
	for name, c := range map[string]Config{
		"unknown backend": {Backend: "vault"},
		"no path":         {Passphrase: []byte("x")},
		"no passphrase":   {Path: "x"},
		"pkcs11 no token": {Backend: PKCS11},
	} {
		if _, err := Open(ctx, c); !errors.Is(err, kms.ErrInvalid) && !errors.Is(err, kms.ErrUnsupported) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestReadSecret(t *testing.T) {
	dir := t.TempDir()
	for content, want := range map[string]string{"pw\n": "pw", "pw \r\n": "pw ", "pw": "pw", "a\n\n": "a\n"} {
		p := filepath.Join(dir, "s")
		os.WriteFile(p, []byte(content), 0o600)
		got, err := ReadSecret(p)
		if err != nil || string(got) != want {
			t.Errorf("ReadSecret(%q) = %q, %v; want %q", content, got, err, want)
		}
	}
	p := filepath.Join(dir, "empty")
	os.WriteFile(p, []byte("\n"), 0o600)
	if _, err := ReadSecret(p); !errors.Is(err, kms.ErrInvalid) {
		t.Errorf("empty secret: %v", err)
	}
}
