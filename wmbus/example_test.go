package wmbus_test

import (
	"encoding/hex"
	"fmt"

	"sluice/wmbus"
)

func ExampleDecodeHex() {
	key, _ := hex.DecodeString("28F64A24988064A079AA2C807D6102AE")
	t, err := wmbus.DecodeHex("2A442D2C998734761B168D2091D37CAC21E1D68CDAFFCD3DC452BD802913FF7B1706CA9E355D6C2701CC24", key)
	if err != nil {
		panic(err)
	}
	m3, _ := t.TotalVolume()
	fmt.Println(t.ID(), t.Meter.Manufacturer, m3)
	// Output: 76348799 KAM 6.408
}
