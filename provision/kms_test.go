package provision

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"testing"

	"sluice/keys"
	"sluice/kms"
	"sluice/kms/filekms/filekmstest"
)

// TestThroughKMS runs the whole flow on a real KMS (the file backend): keys
// derived in the KMS under the meter root, the record signed by the
// management key the KMS holds, trust keys read from it; the meter ends up
// with exactly the keys package keys derives for it.
func TestThroughKMS(t *testing.T) {
	ctx := context.Background()
	km := filekmstest.WithKeys(t)
	trust, err := KMSTrust(ctx, km)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := kms.Signer(ctx, km, kms.Ref(keys.ManagementSigning))
	if err != nil {
		t.Fatal(err)
	}
	s, err := NewService(signer, KMSDerive(km, kms.Ref(keys.MeterRoot), func(uint64) uint16 { return 1 }))
	if err != nil {
		t.Fatal(err)
	}
	d, err := NewDevice(rand.Reader, testMeter, "SLW-15")
	if err != nil {
		t.Fatal(err)
	}
	req, err := ParseRequest(d.Request())
	if err != nil {
		t.Fatal(err)
	}
	rec, err := s.Provision(ctx, req, Params{Counter: 1, Trust: trust})
	if err != nil {
		t.Fatal(err)
	}
	p, st, err := d.Open(rec, FactoryState(trust.Management))
	if err != nil {
		t.Fatal(err)
	}
	want, err := keys.DeriveMeter(ctx, km, kms.Ref(keys.MeterRoot), testMeter, 1)
	if err != nil {
		t.Fatal(err)
	}
	for kind, w := range map[KeyKind][]byte{KeyCard: want.Card[:], KeyTelemetry: want.Telemetry[:], KeyWMBus: want.WMBus[:]} {
		k, ok := p.Key(kind)
		if !ok || !bytes.Equal(k.Secret, w) || k.RootVersion != 1 || k.Version != 1 {
			t.Errorf("%v: %+v", kind, k)
		}
	}
	if !st.Management.Equal(trust.Management) || !p.Trust.Firmware.(ed25519.PublicKey).Equal(trust.Firmware) {
		t.Error("trust keys not installed")
	}
}
