package firmware_test

import (
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"fmt"

	"sluice/firmware"
)

func Example() {
	seed := sha256.Sum256([]byte("example firmware key"))
	key := ed25519.NewKeyFromSeed(seed[:])

	img, err := firmware.Sign([]byte("application code"), key, firmware.SignOptions{
		Version:         firmware.Version{Major: 1, Minor: 4, Revision: 2},
		SecurityCounter: 3,
	})
	if err != nil {
		panic(err)
	}
	v, err := firmware.NewVerifier(key.Public())
	if err != nil {
		panic(err)
	}
	im, err := v.Verify(img)
	fmt.Println(im.Header.Version, im.SecurityCounter, len(img), err)

	img[40] ^= 1 // one bit of the application
	_, err = v.Verify(img)
	fmt.Println(errors.Is(err, firmware.ErrHashMismatch))
	// Output:
	// 1.4.2 3 204 <nil>
	// true
}
