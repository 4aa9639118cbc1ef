//go:build !cgo || nopkcs11

package pkcs11kms

import (
	"context"
	"fmt"

	"sluice/kms"
)

// Open reports that this binary was built without PKCS#11 support.
func Open(_ context.Context, cfg Config) (kms.KeyManager, error) {
	return nil, fmt.Errorf("%w: PKCS#11 (this binary was built without cgo or with the nopkcs11 tag)", kms.ErrUnsupported)
}
