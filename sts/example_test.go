package sts_test

import (
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"sluice/sts"
)

// A vending head-end derives a meter's decoder key once, keeps the Coder,
// and seals each purchase with the next TID for that meter.
func Example_vend() {
	vk, _ := hex.DecodeString("abababababababab949494949494949401234567")
	pan, _ := sts.ParsePAN("600727000000000009")
	id := sts.KeyID{KT: 2, SGC: 123457, TI: 1, KRN: 1}
	dk, _ := sts.DKGA04(vk, id, pan, sts.Base1993, sts.EA11)
	coder, _ := sts.NewEA11(dk)

	issued := time.Date(2004, 3, 1, 13, 5, 0, 0, time.UTC)
	tid, _ := sts.NextTID(sts.Base1993, -1, issued) // first token for this meter
	tok, _ := coder.Credit(sts.SubWater, 5, tid, 1) // 0.1 m3
	fmt.Println(hex.EncodeToString(dk))
	fmt.Println(tok)
	// Output:
	// f94b6ed353c3bfdb113e2d3a7ea3c41d
	// 47186281207955155808
}

// A meter accepts a token once; the second entry is refused as used and
// changes nothing.
func ExampleDecoder_Accept() {
	dk, _ := hex.DecodeString("f94b6ed353c3bfdb113e2d3a7ea3c41d")
	d, _ := sts.NewDecoder(sts.DecoderConfig{
		EA: sts.EA11, Key: dk, ID: sts.KeyID{KT: 2, SGC: 123457, TI: 1, KRN: 1},
		KEN: 255, Base: sts.Base1993,
		CreditSubclasses: 1<<sts.SubWater | 1<<sts.SubWaterCurrency,
	})
	res, err := d.AcceptDigits("47186281207955155808")
	fmt.Println(res.Kind, res.Amount, res.Issued.Format(time.RFC3339), err)
	_, err = d.AcceptDigits("47186281207955155808")
	fmt.Println(errors.Is(err, sts.ErrUsed))
	_, err = d.AcceptDigits("59386323472137426967") // an electricity token
	fmt.Println(errors.Is(err, sts.ErrUnsupported))
	// Output:
	// credit 1 2004-03-01T13:05:00Z <nil>
	// true
	// true
}

// Several tokens for one meter in the same minute get successive TIDs.
func ExampleNextTID() {
	at := time.Date(2025, 6, 1, 9, 30, 0, 0, time.UTC)
	last := int64(-1)
	for range 3 {
		tid, _ := sts.NextTID(sts.Base2014, last, at)
		fmt.Println(tid, sts.TIDTime(sts.Base2014, tid).Format("15:04"))
		last = int64(tid)
	}
	// Output:
	// 6003930 09:30
	// 6003931 09:31
	// 6003932 09:32
}
