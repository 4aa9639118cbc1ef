package wmbus

// crc16 is the CRC of EN 13757-4: polynomial 0x3D65, initial value 0, no
// reflection, final complement. It protects DLL blocks (sent big-endian) and
// the ELL payload (sent little-endian, inside the ciphertext).
func crc16(p []byte) uint16 {
	var c uint16
	for _, b := range p {
		c = c<<8 ^ crcTable[byte(c>>8)^b]
	}
	return ^c
}

var crcTable = func() (t [256]uint16) {
	for i := range t {
		c := uint16(i) << 8
		for range 8 {
			if c&0x8000 != 0 {
				c = c<<1 ^ 0x3D65
			} else {
				c <<= 1
			}
		}
		t[i] = c
	}
	return t
}()
