package wmbus

import (
	"encoding/binary"
	"fmt"
)

// Compact frames (CI 79) save radio time: a meter that has sent a full frame
// (CI 78) later sends only the data bytes, with a 2-byte format signature
// (the CRC-16 of the full frame's DIF/VIF bytes) and a CRC-16 of the full
// record list the receiver must rebuild. Kamstrup meters send seven compact
// frames for every full one, so a head-end that cannot expand them loses
// most readings.
//
// Expanding needs the format. A caller learns it from full frames
// (Telegram.Format) and hands it back through Options.Formats; a few
// formats that meters are known to use are built in.

// Formats supplies compact-frame formats learned from earlier full frames.
// Learned formats are per meter in practice, but a signature is a CRC of the
// format itself, so a store may be shared: a format is only used when its
// signature matches and the rebuilt records pass the frame's CRC.
type Formats interface {
	Format(signature uint16) (difvif []byte, ok bool)
}

// Options tunes DecodeWith.
type Options struct {
	// Formats resolves compact-frame signatures; nil means the built-in
	// formats only.
	Formats Formats
}

// FormatSignature is the signature compact frames carry for a format.
func FormatSignature(difvif []byte) uint16 { return crc16(difvif) }

// builtinFormats are formats real meters announce in their full frames
// (Kamstrup Multical 21 and flowIQ: info code, volume, target volume, max
// flow, flow and external temperature), as documented by the open-source
// readers wmbusmeters and ioBroker.wmbus.
var builtinFormats = [...]string{
	"\x02\xFF\x20\x04\x13\x44\x13",
	"\x02\xFF\x20\x04\x13\x52\x3B",
	"\x02\xFF\x20\x04\x13\x44\x13\x61\x5B\x61\x67",
}

func (d *decoder) format(sig uint16) ([]byte, bool) {
	if d.opt.Formats != nil {
		if f, ok := d.opt.Formats.Format(sig); ok && FormatSignature(f) == sig {
			return f, true
		}
	}
	for _, f := range builtinFormats {
		if FormatSignature([]byte(f)) == sig {
			return []byte(f), true
		}
	}
	return nil, false
}

// compact expands and decodes a compact frame whose signature starts at p.
func (d *decoder) compact(p []byte) error {
	if len(p) < 4 {
		return fmt.Errorf("wmbus: compact frame header: %w", ErrShort)
	}
	sig := binary.LittleEndian.Uint16(p)
	sum := binary.LittleEndian.Uint16(p[2:])
	format, ok := d.format(sig)
	if !ok {
		return fmt.Errorf("wmbus: compact frame format %04X not known yet (decode a full frame of this meter first): %w", sig, ErrUnsupported)
	}
	full, err := expandCompact(format, p[4:])
	if err != nil {
		return fmt.Errorf("wmbus: compact frame %04X: %w", sig, err)
	}
	if crc16(full) != sum {
		return fmt.Errorf("wmbus: compact frame %04X: rebuilt records: %w", sig, ErrCRC)
	}
	return d.apl(full)
}
