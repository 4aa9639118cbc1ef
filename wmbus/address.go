package wmbus

import (
	"encoding/binary"
	"fmt"
)

// Address identifies a device the way EN 13757-4 transmits it: a
// manufacturer code (M-field) and an A-field of a BCD identification number,
// a version and a device type. The link layer carries the address of the
// radio that sent the frame; a long TPL header (CI 72) or an ELL of type III
// or IV carries the address of the meter when the two differ (an add-on
// radio module, a repeater, a Diehl meter behind a HYD radio).
type Address struct {
	MField       uint16 `json:"m_field"`
	Manufacturer string `json:"manufacturer"` // three letters, e.g. "KAM"
	ID           string `json:"id"`           // eight BCD digits as printed on the meter
	Version      byte   `json:"version"`
	DeviceType   byte   `json:"device_type"` // 0x07 water, 0x06 warm water, 0x16 cold water...

	// wire is M (2 bytes) then A (6 bytes) exactly as transmitted, the
	// order every IV and KDF of the standard uses.
	wire [8]byte
}

// newAddress builds an Address from M (2 bytes, little-endian) and A (id 4
// bytes little-endian BCD, version, type).
func newAddress(m, a []byte) Address {
	var ad Address
	copy(ad.wire[:2], m)
	copy(ad.wire[2:], a)
	ad.MField = binary.LittleEndian.Uint16(m)
	ad.Manufacturer = ManufacturerCode(ad.MField)
	ad.ID = fmt.Sprintf("%02X%02X%02X%02X", a[3], a[2], a[1], a[0])
	ad.Version = a[4]
	ad.DeviceType = a[5]
	return ad
}

// idBytes returns the four identification bytes as transmitted.
func (a *Address) idBytes() []byte { return a.wire[2:6] }

// ManufacturerCode turns an M-field into its three-letter FLAG code: three
// 5-bit letters, 'A' being 1 (EN 13757-3 / EN 62056-21).
func ManufacturerCode(m uint16) string {
	b := [3]byte{
		byte(m>>10&0x1f) + 64,
		byte(m>>5&0x1f) + 64,
		byte(m&0x1f) + 64,
	}
	for _, c := range b {
		if c < 'A' || c > 'Z' {
			return fmt.Sprintf("0x%04X", m)
		}
	}
	return string(b[:])
}

// MField is the inverse of ManufacturerCode; ok is false unless code is
// three letters A-Z.
func MField(code string) (m uint16, ok bool) {
	if len(code) != 3 {
		return 0, false
	}
	for i := range 3 {
		c := code[i]
		if c >= 'a' && c <= 'z' {
			c -= 'a' - 'A'
		}
		if c < 'A' || c > 'Z' {
			return 0, false
		}
		m = m<<5 | uint16(c-64)
	}
	return m, true
}
