//go:build !cgo || nopkcs11

package pkcs11kms

import (
	"context"
	"errors"
	"testing"

	"sluice/kms"
)

// Without cgo the backend says so instead of failing obscurely.
func TestOpenUnsupported(t *testing.T) {
	_, err := Open(context.Background(), Config{Module: "/usr/lib/softhsm/libsofthsm2.so", Token: "t", PIN: "1"})
	if !errors.Is(err, kms.ErrUnsupported) {
		t.Fatalf("Open without cgo: %v, want kms.ErrUnsupported", err)
	}
}
