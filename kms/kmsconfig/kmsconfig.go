// Package kmsconfig opens the key manager a configuration names. It is the
// one place that knows every backend, so package kms stays free of them and
// nothing registers itself globally: the head-end and the CLI pass a Config
// and get a kms.KeyManager.
package kmsconfig

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"sluice/kms"
	"sluice/kms/filekms"
	"sluice/kms/pkcs11kms"
)

// Backend names.
const (
	File   = "file"
	PKCS11 = "pkcs11"
)

// Config selects and locates a backend.
type Config struct {
	Backend string // File (the default when empty) or PKCS11

	// File backend.
	Path       string          // the sealed key store
	Passphrase []byte          // sealing passphrase
	Create     bool            // create an empty store when Path does not exist
	Options    filekms.Options // Argon2id cost and sources; zero for production

	// PKCS11 backend.
	PKCS11 pkcs11kms.Config
}

// Open returns the configured key manager. Errors name the setting at fault.
func Open(ctx context.Context, c Config) (kms.KeyManager, error) {
	switch c.Backend {
	case File, "":
		if c.Path == "" {
			return nil, fmt.Errorf("kms: %w: the file backend needs a key store path", kms.ErrInvalid)
		}
		if len(c.Passphrase) == 0 {
			return nil, fmt.Errorf("kms: %w: the file backend needs a passphrase", kms.ErrInvalid)
		}
		s, err := filekms.Open(c.Path, c.Passphrase, c.Options)
		if errors.Is(err, fs.ErrNotExist) && c.Create {
			s, err = filekms.Create(c.Path, c.Passphrase, c.Options)
		}
		if err != nil {
			return nil, err
		}
		return s, nil
	case PKCS11:
		return pkcs11kms.Open(ctx, c.PKCS11)
	}
	return nil, fmt.Errorf("kms: %w: backend %q is not one of file, pkcs11", kms.ErrInvalid, c.Backend)
}

// ReadSecret reads a passphrase or PIN file, dropping one trailing newline
// (editors add it) but nothing else, so a secret may end in spaces.
func ReadSecret(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("kms: %w", err)
	}
	b = bytes.TrimSuffix(b, []byte("\n"))
	b = bytes.TrimSuffix(b, []byte("\r"))
	if len(b) == 0 {
		return nil, fmt.Errorf("kms: %w: %s is empty", kms.ErrInvalid, path)
	}
	return b, nil
}
