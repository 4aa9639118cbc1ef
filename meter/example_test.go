package meter_test

import (
	"crypto/ed25519"
	"crypto/sha256"
	"fmt"
	"time"

	"sluice/meter"
	"sluice/voucher"
)

// A meter from the factory to its first litres: provision a blank EEPROM,
// boot, load a signed credit voucher, let water through, power-cycle.
func Example() {
	seed := sha256.Sum256([]byte("example credit key"))
	creditKey := ed25519.NewKeyFromSeed(seed[:]) // lives in the head-end's KMS, never in a meter
	now := time.Date(2026, time.March, 2, 10, 0, 0, 0, time.UTC)

	ee := meter.NewEEPROM(meter.DefaultEEPROMSize, meter.DefaultPageSize)
	err := meter.Format(ee, meter.Provision{ID: 4710001, Params: meter.DefaultParams(), Keys: meter.Keys{
		Trusted: voucher.Keyring{{Role: voucher.RoleCredit, Public: creditKey.Public().(ed25519.PublicKey)}},
	}})
	if err != nil {
		panic(err)
	}
	m, err := meter.Boot(ee, meter.Deps{})
	if err != nil {
		panic(err)
	}

	v := voucher.Voucher{Kind: voucher.KindCredit, MeterID: 4710001, Sequence: 1, Issued: now, Expires: now.Add(24 * time.Hour),
		Unit: voucher.UnitLitres, Quantity: 5000}
	b, _ := voucher.Sign(&v, creditKey)
	rc, err := m.LoadVoucher(now, b, meter.FromRemote)
	fmt.Println(rc.Status == meter.Loaded, rc.Amount, rc.Credit, err)

	_ = m.Tick(now.Add(time.Hour), 1200, 0) // 1,200 pulses of a litre
	_, err = m.LoadVoucher(now, b, meter.FromRemote)
	fmt.Println(err)

	m, _ = meter.Boot(ee, meter.Deps{}) // power cycle
	sn := m.Snapshot()
	fmt.Println(sn.Credit, sn.Forward, sn.StatusText(now))
	// Output:
	// true 5000 5000 <nil>
	// meter: already accepted: voucher 1
	// 3800 1200 valve open
}
