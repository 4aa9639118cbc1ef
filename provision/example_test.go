package provision_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"

	"sluice/provision"
)

func Example() {
	// Head-end: the management key (in the KMS in production) and a key
	// derivation function (provision.KMSDerive in production).
	_, mgmt, _ := ed25519.GenerateKey(rand.Reader)
	credit, _, _ := ed25519.GenerateKey(rand.Reader)
	fw, _, _ := ed25519.GenerateKey(rand.Reader)
	derive := func(_ context.Context, id uint64) ([]provision.Key, error) {
		return []provision.Key{{Kind: provision.KeyCard, RootVersion: 1, Version: 1, Secret: make([]byte, 16)}}, nil
	}
	svc, _ := provision.NewService(mgmt, derive)
	trust := provision.Trust{Credit: credit, Management: mgmt.Public().(ed25519.PublicKey), Firmware: fw}

	// Factory station: the meter makes its keys and its request.
	dev, _ := provision.NewDevice(rand.Reader, 41234567890, "SLW-15")
	req, _ := provision.ParseRequest(dev.Request())
	record, _ := svc.Provision(context.Background(), req, provision.Params{Counter: 1, Trust: trust})

	// Meter: accepts the record once, from the factory trust anchor.
	st := provision.FactoryState(trust.Management)
	p, st, err := dev.Open(record, st)
	fmt.Println(p.MeterID, len(p.Keys), st.Counter, err)
	_, _, err = dev.Open(record, st)
	fmt.Println(err)
	// Output:
	// 41234567890 1 1 <nil>
	// provision: provisioning counter not above the last accepted: record counter 1, last accepted 1
}
