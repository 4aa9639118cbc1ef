package boot_test

import (
	"crypto/ed25519"
	"crypto/sha256"
	"fmt"

	"sluice/firmware"
	"sluice/firmware/boot"
)

func Example() {
	seed := sha256.Sum256([]byte("example firmware key"))
	key := ed25519.NewKeyFromSeed(seed[:])
	sign := func(major uint8, counter uint32) []byte {
		img, _ := firmware.Sign([]byte("app"), key, firmware.SignOptions{Version: firmware.Version{Major: major}, SecurityCounter: counter})
		return img
	}
	v, _ := firmware.NewVerifier(key.Public())
	l := boot.New(boot.NewMemFlash(4096, 64), v)

	l.Install(sign(1, 1)) // factory image
	b, _ := l.Boot()
	fmt.Println("running", b.Image.Header.Version, "from slot", b.Slot)

	l.Install(sign(2, 2)) // field update: into the other slot, pending
	b, _ = l.Boot()
	fmt.Println("running", b.Image.Header.Version, "from slot", b.Slot, "updated:", b.Updated)

	_, err := l.Install(sign(3, 1)) // newer version, older security counter
	fmt.Println(err)
	// Output:
	// running 1.0.0 from slot B
	// running 2.0.0 from slot A updated: true
	// boot: install: security counter lower than the stored one: image 1, stored 2
}
