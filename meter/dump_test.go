package meter

import (
	"bytes"
	"crypto/ed25519"
	"testing"
)

// TestDumpHoldsOnlyThisMetersKeys plays the firmware-readout attack from the
// defender's side: the dump holds this meter's own keys and the public
// verification keys, and no signing key.
func TestDumpHoldsOnlyThisMetersKeys(t *testing.T) {
	v := newVend(t, "supply group 600727")
	r := stsRig(t, DefaultParams(), v)
	r.load(t0, r.creditVoucher(1000))
	img, err := Dump(r.ee)
	if err != nil {
		t.Fatal(err)
	}
	k := testKeys()
	for name, b := range map[string][]byte{"meter key": k.MeterKey[:], "telemetry key": k.TelemetryKey[:],
		"decoder key": v.cfg.Key, "credit public key": k.Trusted[0].Public} {
		if !bytes.Contains(img, b) {
			t.Errorf("dump lacks the %s: the test's picture of the image is wrong", name)
		}
	}
	for name, priv := range map[string]ed25519.PrivateKey{"credit": r.credit, "management": r.manage} {
		if bytes.Contains(img, priv.Seed()) || bytes.Contains(img, priv[:32]) {
			t.Errorf("dump holds the %s signing key", name)
		}
	}
	im, err := ParseImage(img, DefaultPageSize)
	if err != nil {
		t.Fatal(err)
	}
	if im.ID != testMeterID || im.Keys.MeterKey != k.MeterKey || len(im.Keys.Trusted) != 2 || im.Credit != 1000 ||
		!bytes.Equal(im.Tokens[6:22], v.cfg.Key) {
		t.Errorf("ParseImage: %+v", im)
	}
}
