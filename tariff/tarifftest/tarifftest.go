// Package tarifftest holds the tariff that tests register on a head-end,
// so that every package's tests price water by the same definition rather
// than by copies of it that drift apart.
package tarifftest

import (
	_ "embed"
	"encoding/json"
)

//go:embed domestic.json
var domestic []byte

// Domestic returns the definition of DOM-2026, a municipality's prepaid
// tariff for indigent-registered households, in rand with VAT-inclusive
// prices. From July 2026: five rising blocks of the month's litres, from
// R25.00 to R89.95 a kilolitre (the last unbounded), 6 kl of free basic
// water a month, a R115.00 basic charge, 15% VAT, and 20% of every amount
// tendered taken towards arrears. From July 2027 the blocks are dearer and
// a meter maintenance charge joins the basic charge. It is the tariff of
// docs/tariffs.md's worked examples, which the tariff package's own tests
// read as testdata/good_domestic.json.
//
// Each call returns a fresh copy, so a test that edits it changes no other
// test's tariff. It is a json.RawMessage so that a client marshalling it
// sends the JSON itself, not a base64 string.
func Domestic() json.RawMessage {
	return json.RawMessage(append([]byte(nil), domestic...))
}
