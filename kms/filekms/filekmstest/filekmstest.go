// Package filekmstest makes throw-away file key stores for tests.
//
// A store lives in the test's temporary directory and is closed when the
// test ends. It uses the cheapest Argon2id parameters: a real store's
// Argon2id cost defends its passphrase, which a test's store does not need,
// and the default cost would make each test that opens a store take
// hundreds of milliseconds.
package filekmstest

import (
	"context"
	"path/filepath"
	"testing"

	"sluice/keys"
	"sluice/kms"
	"sluice/kms/filekms"
)

// Passphrase is the passphrase of every store New makes.
const Passphrase = "test passphrase"

// New returns an empty file key store.
func New(tb testing.TB) *filekms.Store {
	tb.Helper()
	km, err := filekms.Create(filepath.Join(tb.TempDir(), "keys.sealed"), []byte(Passphrase), filekms.Options{Time: 1, MemoryKiB: 64, Threads: 1})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { km.Close() })
	return km
}

// WithKeys returns a store holding the standard hierarchy (keys.Init, with
// an Ed25519 firmware key), as `sluice keys init` leaves it.
func WithKeys(tb testing.TB) *filekms.Store {
	tb.Helper()
	km := New(tb)
	if _, err := keys.Init(context.Background(), km, kms.Ed25519); err != nil {
		tb.Fatal(err)
	}
	return km
}

// WithVendingKey returns a store as WithKeys leaves it, plus the STS
// vending key (DKGA04) of supply group 123457 at key revision 1, the group
// the vending, channel, webhook and report tests register. Its value is
// fixed, the one other tests import by hand, so the meters' decoder keys are
// the same in every test.
func WithVendingKey(tb testing.TB) *filekms.Store {
	tb.Helper()
	km := WithKeys(tb)
	if _, err := keys.ImportVendingKeys(context.Background(), km, []keys.VendingKey{{SGC: 123457, KRN: 1, Kind: kms.STSDKGA04,
		Key: []byte("\xab\xab\xab\xab\xab\xab\xab\xab\x94\x94\x94\x94\x94\x94\x94\x94\x01\x23\x45\x67")}}); err != nil {
		tb.Fatal(err)
	}
	return km
}

// WithMeterRoot returns a store holding only the meter root, which is all
// that telemetry keys and audit anchors derive from.
func WithMeterRoot(tb testing.TB) *filekms.Store {
	tb.Helper()
	km := New(tb)
	if _, err := km.CreateKey(context.Background(), keys.MeterRoot, kms.AES256); err != nil {
		tb.Fatal(err)
	}
	return km
}
