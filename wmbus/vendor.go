package wmbus

import (
	"encoding/binary"
	"fmt"
)

// vendorDecoder returns the decoder for meters known to wrap a proprietary
// payload in an OMS telegram instead of DIF/VIF records, or nil.
func vendorDecoder(a *Address) func([]byte) ([]Record, error) {
	if a.Manufacturer == "APA" && a.Version == 0x05 && (a.DeviceType == 0x06 || a.DeviceType == 0x07) {
		return apator162
	}
	return nil
}

// apator162 decodes the Apator AT-WMBUS-16-2 payload. After the 2F2F check
// bytes it sends 8 bytes of header (flags and a date) and then registers,
// each a one-byte register number followed by a fixed number of bytes.
// Register 10 is the total volume in litres (uint32, little-endian); FF
// starts the padding to the block boundary. The register sizes are those
// established by the wmbusmeters apator162 driver from real telegrams.
func apator162(p []byte) ([]Record, error) {
	for len(p) >= 2 && p[0] == 0x2F {
		p = p[1:]
	}
	if len(p) < 8 {
		return nil, fmt.Errorf("%w: apator162 header: %w", ErrRecord, ErrShort)
	}
	var recs []Record
	for i := 8; i < len(p); {
		reg := p[i]
		if reg == 0xFF {
			break
		}
		n, ok := apatorRegisterSize(reg)
		if !ok {
			return nil, fmt.Errorf("%w: apator162 register %02X of unknown size at offset %d", ErrRecord, reg, i)
		}
		i++
		if i+n > len(p) {
			return nil, fmt.Errorf("%w: apator162 register %02X (%d bytes) at offset %d: %w", ErrRecord, reg, n, i-1, ErrShort)
		}
		if reg == 0x10 {
			litres := binary.LittleEndian.Uint32(p[i:])
			recs = append(recs, Record{
				DIF: 0x04, VIF: 0x13, Quantity: QuantityVolume, Unit: "m3",
				Value: float64(litres) / 1000, Data: p[i : i+4], Vendor: "apator162 register 10",
			})
		}
		i += n
	}
	return recs, nil
}

func apatorRegisterSize(r byte) (int, bool) {
	switch {
	case r == 0x00, r == 0x10, r == 0xA1, r == 0x42, r == 0xA0, r == 0xA4, r == 0xF0:
		return 4, true
	case r == 0x01, r == 0x44, r == 0xA6:
		return 3, true
	case r == 0x11, r == 0x41, r == 0x43, r == 0xB4, r >= 0xA7 && r <= 0xAD && r != 0xA9:
		return 2, true
	case r == 0x40, r == 0x8B, r == 0x8C:
		return 6, true
	case r == 0x71:
		return 1 + 2*4, true
	case r == 0x72:
		return 1 + 3*4, true
	case r == 0x73:
		return 1 + 4*4, true
	case r == 0x75:
		return 1 + 6*4, true
	case r == 0x7B:
		return 1 + 12*4, true
	case r >= 0x80 && r <= 0x87 && r != 0x85:
		return 10, true
	case r == 0x85, r == 0x88, r == 0x8F:
		return 11, true
	case r == 0x8A:
		return 9, true
	case r == 0x8E, r == 0xA3:
		return 7, true
	case r == 0xA2, r == 0xA5, r == 0xA9, r == 0xAF:
		return 1, true
	case r == 0xB0:
		return 5, true
	case r == 0xB1, r == 0xB3:
		return 8, true
	case r == 0xB2, r == 0xB5:
		return 16, true
	case r >= 0xB6 && r <= 0xBF, r >= 0xC0 && r <= 0xC7, r == 0xD0, r == 0xD3:
		return 3, true
	}
	return 0, false
}
