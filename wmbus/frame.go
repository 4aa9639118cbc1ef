package wmbus

import (
	"encoding/binary"
	"fmt"
)

// StripCRC returns the telegram without DLL block CRCs. Gateways forward
// telegrams either as the radio sent them (frame format A: a CRC after the
// first 10 bytes and after every 16 bytes that follow) or with the CRCs
// already checked and removed. The L-field of format A counts neither, so
// the two are told apart by length alone, without guessing:
//
//   - len == L+1: no CRCs; b is returned as is.
//   - len == L+1 + 2 x (number of blocks): format A with CRCs; every CRC
//     is checked (ErrCRC names the first bad block) and the CRCs removed.
//   - anything else: ErrShort or ErrLength.
//
// Format B (L counts its CRCs) has the same length either way, so it cannot
// be detected reliably; callers that know their gateway sends it use
// StripFormatB.
func StripCRC(b []byte) ([]byte, error) {
	if len(b) == 0 {
		return nil, fmt.Errorf("wmbus: L-field: %w", ErrShort)
	}
	n := int(b[0]) + 1
	switch {
	case len(b) == n:
		return b, nil
	case n >= 10 && len(b) == formatALen(n):
		return stripFormatA(b, n)
	case len(b) < n:
		return nil, fmt.Errorf("wmbus: L-field says %d bytes, have %d: %w", n, len(b), ErrShort)
	}
	return nil, fmt.Errorf("wmbus: L-field says %d bytes (%d with format A CRCs), have %d: %w",
		n, formatALen(n), len(b), ErrLength)
}

// formatALen is the length on air of a format A frame whose L-field says n
// bytes (including L itself).
func formatALen(n int) int {
	rest := n - 10
	return n + 2 + 2*((rest+15)/16)
}

func stripFormatA(b []byte, n int) ([]byte, error) {
	out := make([]byte, 0, n)
	for blk, i := 0, 0; i < len(b); blk++ {
		size := 16
		if blk == 0 {
			size = 10
		}
		if rest := len(b) - i - 2; rest < size {
			size = rest
		}
		data := b[i : i+size]
		if binary.BigEndian.Uint16(b[i+size:]) != crc16(data) {
			return nil, fmt.Errorf("wmbus: DLL block %d CRC: %w", blk, ErrCRC)
		}
		out = append(out, data...)
		i += size + 2
	}
	return out, nil
}

// StripFormatB checks and removes the CRCs of a frame format B telegram
// (EN 13757-4: block 1 is the first 10 bytes, block 2 up to 115 more bytes
// and a CRC over blocks 1 and 2, an optional block 3 the rest and its own
// CRC) and returns it with an L-field that no longer counts them, the form
// Decode expects.
func StripFormatB(b []byte) ([]byte, error) {
	if len(b) == 0 || len(b) != int(b[0])+1 {
		return nil, fmt.Errorf("wmbus: format B L-field disagrees with %d bytes: %w", len(b), ErrLength)
	}
	if len(b) < 12 {
		return nil, fmt.Errorf("wmbus: format B needs 12 bytes: %w", ErrShort)
	}
	const block2End = 10 + 115 + 2 // L..A, CI + 114 data, CRC
	end2 := min(len(b), block2End)
	if binary.BigEndian.Uint16(b[end2-2:]) != crc16(b[:end2-2]) {
		return nil, fmt.Errorf("wmbus: format B block 2 CRC: %w", ErrCRC)
	}
	out := append([]byte(nil), b[:end2-2]...)
	if end2 < len(b) {
		if len(b)-end2 < 3 {
			return nil, fmt.Errorf("wmbus: format B block 3: %w", ErrShort)
		}
		if binary.BigEndian.Uint16(b[len(b)-2:]) != crc16(b[end2:len(b)-2]) {
			return nil, fmt.Errorf("wmbus: format B block 3 CRC: %w", ErrCRC)
		}
		out = append(out, b[end2:len(b)-2]...)
	}
	out[0] = byte(len(out) - 1)
	return out, nil
}
