package sts

// crcTable is CRC-16 with the reflected polynomial 0xA001 (the CRC-16/MODBUS
// register), one entry per byte value. It is computed once and never written.
var crcTable = func() (t [256]uint16) {
	for i := range t {
		c := uint16(i)
		for range 8 {
			if c&1 != 0 {
				c = c>>1 ^ 0xA001
			} else {
				c >>= 1
			}
		}
		t[i] = c
	}
	return t
}()

// CRC16 returns the STS CRC of b: reflected polynomial 0xA001, initial value
// 0xFFFF, no final XOR, with the two result bytes swapped, so that the value
// written big-endian into the block is the register low byte first.
func CRC16(b []byte) uint16 {
	c := uint16(0xFFFF)
	for _, x := range b {
		c = c>>8 ^ crcTable[byte(c)^x]
	}
	return c<<8 | c>>8
}

// blockCRC is the CRC of a token: over class (2 bits), subclass (4) and the
// 44-bit payload, 50 bits left-padded to 7 bytes.
func blockCRC(class, subclass uint8, payload uint64) uint16 {
	v := uint64(class&3)<<48 | uint64(subclass&0xF)<<44 | payload&payloadMask
	c := uint16(0xFFFF)
	for i := 48; i >= 0; i -= 8 {
		c = c>>8 ^ crcTable[byte(c)^byte(v>>i)]
	}
	return c<<8 | c>>8
}
