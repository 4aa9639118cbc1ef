package firmware

import (
	"encoding/binary"
	"fmt"
)

// Parse decodes an image file: the bytes must end exactly with the
// unprotected TLV area. It checks the structure (magics, lengths, the TLV
// allow-lists) but no hash or signature: use Verifier.Verify to trust an image.
func Parse(b []byte) (*Image, error) { return parse(b, false) }

// ParseSlot decodes the image at the start of a flash slot, ignoring what
// follows the unprotected TLV area (erased flash, the slot trailer).
func ParseSlot(b []byte) (*Image, error) { return parse(b, true) }

func parse(b []byte, slot bool) (*Image, error) {
	le := binary.LittleEndian
	if len(b) < HeaderSize {
		return nil, fmt.Errorf("firmware: %w: %d bytes, the header alone is %d", ErrTruncated, len(b), HeaderSize)
	}
	if m := le.Uint32(b[0:]); m != ImageMagic {
		return nil, fmt.Errorf("firmware: %w: header ih_magic is 0x%08x, want 0x%08x", ErrBadMagic, m, ImageMagic)
	}
	h := Header{
		LoadAddr:         le.Uint32(b[4:]),
		HeaderSize:       le.Uint16(b[8:]),
		ProtectedTLVSize: le.Uint16(b[10:]),
		ImageSize:        le.Uint32(b[12:]),
		Flags:            le.Uint32(b[16:]),
		Version: Version{
			Major:    b[20],
			Minor:    b[21],
			Revision: le.Uint16(b[22:]),
			Build:    le.Uint32(b[24:]),
		},
	}
	if h.HeaderSize < HeaderSize || h.HeaderSize > maxHeaderSize {
		return nil, fmt.Errorf("firmware: %w: ih_hdr_size %d outside [%d, %d]", ErrBadHeader, h.HeaderSize, HeaderSize, maxHeaderSize)
	}
	if pad := le.Uint32(b[28:]); pad != 0 {
		return nil, fmt.Errorf("firmware: %w: reserved word at offset 28 is 0x%08x, want 0", ErrBadHeader, pad)
	}
	if f := h.Flags &^ allowedFlags; f != 0 {
		return nil, fmt.Errorf("firmware: %w: ih_flags 0x%08x has unsupported bits 0x%08x (encrypted, PIC or non-bootable images are refused)", ErrBadHeader, h.Flags, f)
	}
	// 64-bit arithmetic: hdr_size + img_size cannot wrap.
	protAt := uint64(h.HeaderSize) + uint64(h.ImageSize)
	if protAt > uint64(len(b)) {
		return nil, fmt.Errorf("firmware: %w: header says the application ends at %d, image has %d bytes", ErrTruncated, protAt, len(b))
	}
	im := &Image{Header: h, protectedAt: int(protAt)}

	// The protected area is mandatory: it carries the security counter.
	if h.ProtectedTLVSize == 0 {
		return nil, fmt.Errorf("firmware: %w: no protected TLV area (ih_protect_tlv_size 0), so no SEC_CNT", ErrMissingTLV)
	}
	p := int(protAt)
	protEnd, err := areaBounds(b, p, ProtectedMagic, "protected")
	if err != nil {
		return nil, err
	}
	if protEnd-p != int(h.ProtectedTLVSize) {
		return nil, fmt.Errorf("firmware: %w: protected area at %d has it_tlv_tot %d, header ih_protect_tlv_size %d", ErrTLVLength, p, protEnd-p, h.ProtectedTLVSize)
	}
	if im.Protected, err = walk(b, p, protEnd, "protected"); err != nil {
		return nil, err
	}
	for _, t := range im.Protected {
		if t.Type != TLVSecCnt {
			if isUnprotectedType(t.Type) {
				return nil, fmt.Errorf("firmware: %w: %s at offset %d belongs in the unprotected area", ErrUnknownTLV, tlvName(t.Type), t.Offset)
			}
			return nil, fmt.Errorf("firmware: %w: %s at offset %d in the protected area (allowed: SEC_CNT)", ErrUnknownTLV, tlvName(t.Type), t.Offset)
		}
		if len(t.Value) != 4 {
			return nil, fmt.Errorf("firmware: %w: SEC_CNT at offset %d has length %d, want 4", ErrTLVLength, t.Offset, len(t.Value))
		}
	}
	if err := once(im.Protected, TLVSecCnt); err != nil {
		return nil, err
	}
	im.SecurityCounter = le.Uint32(find(im.Protected, TLVSecCnt).Value)

	u := protEnd
	end, err := areaBounds(b, u, UnprotectedMagic, "unprotected")
	if err != nil {
		return nil, err
	}
	// Walk before the trailing-data check: a shortened it_tlv_tot is a
	// length mismatch, which says more than "trailing data".
	if im.Unprotected, err = walk(b, u, end, "unprotected"); err != nil {
		return nil, err
	}
	if !slot && end != len(b) {
		return nil, fmt.Errorf("firmware: %w: %d bytes after the unprotected area ending at %d", ErrTrailingData, len(b)-end, end)
	}
	var sigs int
	for _, t := range im.Unprotected {
		want := 0
		switch t.Type {
		case TLVSHA256, TLVKeyHash:
			want = 32
		case TLVEd25519:
			want = ed25519SigSize
			sigs++
		case TLVECDSASig:
			if len(t.Value) < minECDSASigSize || len(t.Value) > maxECDSASigSize {
				return nil, fmt.Errorf("firmware: %w: ECDSA_SIG at offset %d has length %d, want %d..%d", ErrTLVLength, t.Offset, len(t.Value), minECDSASigSize, maxECDSASigSize)
			}
			want = len(t.Value)
			sigs++
		case TLVSecCnt:
			return nil, fmt.Errorf("firmware: %w: SEC_CNT at offset %d is in the unprotected area, where anyone could change it", ErrMisplacedTLV, t.Offset)
		default:
			return nil, fmt.Errorf("firmware: %w: %s at offset %d in the unprotected area (allowed: SHA256, KEYHASH, ED25519, ECDSA_SIG)", ErrUnknownTLV, tlvName(t.Type), t.Offset)
		}
		if len(t.Value) != want {
			return nil, fmt.Errorf("firmware: %w: %s at offset %d has length %d, want %d", ErrTLVLength, tlvName(t.Type), t.Offset, len(t.Value), want)
		}
	}
	for _, typ := range []uint16{TLVSHA256, TLVKeyHash} {
		if err := once(im.Unprotected, typ); err != nil {
			return nil, err
		}
	}
	switch {
	case sigs == 0:
		return nil, fmt.Errorf("firmware: %w: no ED25519 or ECDSA_SIG in the unprotected area", ErrMissingTLV)
	case sigs > 1:
		return nil, fmt.Errorf("firmware: %w: %d signature TLVs, want exactly one", ErrDuplicateTLV, sigs)
	}
	copy(im.Hash[:], find(im.Unprotected, TLVSHA256).Value)
	copy(im.KeyHash[:], find(im.Unprotected, TLVKeyHash).Value)
	for _, t := range im.Unprotected {
		if t.Type == TLVEd25519 || t.Type == TLVECDSASig {
			im.SigType, im.Signature = t.Type, t.Value
		}
	}
	im.raw = b[:end]
	return im, nil
}

// areaBounds reads the TLV info header at off and returns the end of the area.
func areaBounds(b []byte, off int, magic uint16, name string) (int, error) {
	le := binary.LittleEndian
	if off+TLVInfoSize > len(b) {
		return 0, fmt.Errorf("firmware: %w: %s TLV info header at %d needs %d bytes, %d left", ErrTruncated, name, off, TLVInfoSize, len(b)-off)
	}
	if m := le.Uint16(b[off:]); m != magic {
		return 0, fmt.Errorf("firmware: %w: %s TLV area at %d has it_magic 0x%04x, want 0x%04x", ErrBadMagic, name, off, m, magic)
	}
	tot := int(le.Uint16(b[off+2:]))
	if tot < TLVInfoSize {
		return 0, fmt.Errorf("firmware: %w: %s area at %d has it_tlv_tot %d, less than its own info header", ErrTLVLength, name, off, tot)
	}
	if off+tot > len(b) {
		return 0, fmt.Errorf("firmware: %w: %s area at %d claims %d bytes, %d left", ErrTruncated, name, off, tot, len(b)-off)
	}
	return off + tot, nil
}

// walk splits the area [off, end) into TLVs; every TLV must end inside it
// and the last one exactly at its end.
func walk(b []byte, off, end int, name string) ([]TLV, error) {
	le := binary.LittleEndian
	var out []TLV
	for p := off + TLVInfoSize; p < end; {
		if p+TLVHeaderSize > end {
			return nil, fmt.Errorf("firmware: %w: %s area: TLV header at %d crosses the area end %d", ErrTLVLength, name, p, end)
		}
		typ := le.Uint16(b[p:])
		n := int(le.Uint16(b[p+2:]))
		if p+TLVHeaderSize+n > end {
			return nil, fmt.Errorf("firmware: %w: %s area: %s at %d with length %d crosses the area end %d", ErrTLVLength, name, tlvName(typ), p, n, end)
		}
		out = append(out, TLV{Type: typ, Offset: p, Value: b[p+TLVHeaderSize : p+TLVHeaderSize+n : p+TLVHeaderSize+n]})
		p += TLVHeaderSize + n
	}
	return out, nil
}

// once checks that typ occurs exactly once in tlvs.
func once(tlvs []TLV, typ uint16) error {
	var seen []int
	for _, t := range tlvs {
		if t.Type == typ {
			seen = append(seen, t.Offset)
		}
	}
	switch len(seen) {
	case 0:
		return fmt.Errorf("firmware: %w: %s", ErrMissingTLV, tlvName(typ))
	case 1:
		return nil
	}
	return fmt.Errorf("firmware: %w: %s at offsets %v", ErrDuplicateTLV, tlvName(typ), seen)
}

func find(tlvs []TLV, typ uint16) TLV {
	for _, t := range tlvs {
		if t.Type == typ {
			return t
		}
	}
	return TLV{}
}

func isUnprotectedType(t uint16) bool {
	return t == TLVSHA256 || t == TLVKeyHash || t == TLVEd25519 || t == TLVECDSASig
}
