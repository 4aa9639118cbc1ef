package firmware

import (
	"context"
	"testing"

	"sluice/kms"
	"sluice/kms/filekms/filekmstest"
)

// TestSignThroughKMS signs with keys that live in the file KMS: Ed25519
// through kms.Signer (a crypto.Signer) and both kinds through
// KeyManager.Sign with SignMessages. The private keys never leave the KMS.
func TestSignThroughKMS(t *testing.T) {
	ctx := context.Background()
	km := filekmstest.New(t)
	for _, kind := range []kms.Kind{kms.Ed25519, kms.ECDSAP256} {
		info, err := km.CreateKey(ctx, "firmware-"+string(kind), kind)
		if err != nil {
			t.Fatal(err)
		}
		v := mustVerifier(t, info.Public)
		img, err := SignMessages(testApp(300), info.Public, func(msg []byte) ([]byte, error) {
			return km.Sign(ctx, info.Ref(), msg)
		}, goldenOpts)
		if err != nil {
			t.Fatalf("%s: %v", kind, err)
		}
		if _, err := v.Verify(img); err != nil {
			t.Errorf("%s via KeyManager.Sign: %v", kind, err)
		}
		if kind != kms.Ed25519 {
			continue
		}
		s, err := kms.Signer(ctx, km, info.Ref())
		if err != nil {
			t.Fatal(err)
		}
		img2 := mustSign(t, testApp(300), s, goldenOpts)
		if _, err := v.Verify(img2); err != nil {
			t.Errorf("via kms.Signer: %v", err)
		}
		if string(img2) != string(img) {
			t.Error("kms.Signer and KeyManager.Sign give different Ed25519 images")
		}
	}
}
