package wmbus

import (
	"bytes"
	"encoding/hex"
)

// A DefaultKey is an AES key that many meters share because the manufacturer
// ships it (or a trivial key) to the field. Telegrams under such a key are
// readable and forgeable by anyone: a system must flag the meter and ask for
// a key change, never trust its readings for billing or revenue protection.
type DefaultKey struct {
	Name   string
	Key    [KeySize]byte
	Source string
}

// DefaultKeys returns the known default keys. The list is small on purpose:
// each entry is documented in the public source named. It is a copy, so no
// caller can change it for another.
func DefaultKeys() []DefaultKey { return append([]DefaultKey(nil), defaultKeys[:]...) }

// defaultKeys is never written after initialisation.
var defaultKeys = [...]DefaultKey{
	{
		Name:   "Diehl OMS default",
		Key:    mustKey("51728910E66D83F851728910E66D83F8"),
		Source: "Diehl Metering PRIOS/OMS default key (wmbusmeters manufacturer_specificities, PRIOS_DEFAULT_KEY2 repeated); Sluice vector Diehl Hydrus 64745666",
	},
	{
		Name:   "all-zero",
		Key:    [KeySize]byte{},
		Source: "factory and test key of many meters (e.g. the Apator AT-WMBUS-16-2 vector); no secret at all",
	},
	{
		Name:   "all-ones",
		Key:    mustKey("FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF"),
		Source: "erased-flash value; no secret at all",
	},
	{
		Name:   "sequence 00..0F",
		Key:    mustKey("000102030405060708090A0B0C0D0E0F"),
		Source: "example key of the OMS and EN 13757 documents, found configured in the field",
	},
}

// DefaultKeyName returns the name of the known default key equal to key, or
// "" when key is not one of them.
func DefaultKeyName(key []byte) string {
	for _, k := range defaultKeys {
		if bytes.Equal(k.Key[:], key) {
			return k.Name
		}
	}
	return ""
}

func mustKey(s string) (k [KeySize]byte) {
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != KeySize {
		panic("wmbus: bad built-in key " + s)
	}
	copy(k[:], b)
	return k
}
