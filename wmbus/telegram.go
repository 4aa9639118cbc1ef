package wmbus

import (
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strings"

	"sluice/cmac"
)

// SecurityMode is the TPL security mode of the configuration field.
type SecurityMode byte

const (
	ModeNone SecurityMode = 0
	// Mode5 is AES-128-CBC under the meter key with an IV of M, A and 8 x ACC.
	Mode5 SecurityMode = 5
	// Mode7 is AES-128-CBC with a zero IV under a per-message key derived
	// from the meter key and the AFL message counter, plus an AFL CMAC.
	Mode7 SecurityMode = 7
)

// ELL is the extended link layer (EN 13757-4, CI 8C to 8F).
type ELL struct {
	CI  byte `json:"ci"`
	CC  byte `json:"cc"`
	ACC byte `json:"acc"`
	// SN is the session number (CI 8D, 8F); its top three bits select the
	// encryption, 1 being AES-128-CTR.
	SN        uint32   `json:"sn,omitempty"`
	Encrypted bool     `json:"encrypted"`
	Address   *Address `json:"address,omitempty"` // CI 8E, 8F
}

// AFL is the authentication and fragmentation layer (CI 90) that mode 7
// telegrams carry their message counter and MAC in.
type AFL struct {
	FCL     uint16 `json:"fcl"`
	MCL     byte   `json:"mcl"`
	KI      uint16 `json:"ki,omitempty"`
	Counter uint32 `json:"counter"`
	MAC     Hex    `json:"mac,omitempty"`
	ML      uint16 `json:"ml,omitempty"`

	hasCounter, hasML bool
}

// TPL is the transport layer header (CI 7A short, 72 long, 78 none).
type TPL struct {
	CI        byte         `json:"ci"`
	ACC       byte         `json:"acc"`
	Status    byte         `json:"status"`
	Config    uint16       `json:"config"`
	ConfigExt byte         `json:"config_ext,omitempty"` // mode 7 only
	Mode      SecurityMode `json:"mode"`
	Blocks    int          `json:"encrypted_blocks"`
	Address   *Address     `json:"address,omitempty"` // long header only
}

// Telegram is a decoded, decrypted wireless M-Bus telegram.
type Telegram struct {
	L    byte    `json:"l"`
	C    byte    `json:"c"`
	Link Address `json:"link"`
	// Meter is the address of the metering device: the long TPL header's
	// when present, else the ELL's, else the link layer's.
	Meter   Address  `json:"meter"`
	ELL     *ELL     `json:"ell,omitempty"`
	AFL     *AFL     `json:"afl,omitempty"`
	TPL     *TPL     `json:"tpl,omitempty"`
	Records []Record `json:"records"`
	// Mfct holds manufacturer-specific data after DIF 0F/1F.
	Mfct Hex  `json:"mfct,omitempty"`
	More bool `json:"more,omitempty"`
	// Format is the DIF/VIF bytes of Records: a caller that keeps it under
	// FormatSignature(Format) can expand this meter's compact frames.
	Format Hex `json:"format,omitempty"`
	// DefaultKey names the published manufacturer default key the telegram
	// was decrypted with, empty when the key is not a known default. A
	// meter with a default key has no confidentiality or authenticity.
	DefaultKey string `json:"default_key,omitempty"`
}

// ID returns the meter's eight-digit identification number.
func (t *Telegram) ID() string { return t.Meter.ID }

// TotalVolume returns the meter's current volume register in m3: the first
// instantaneous volume record of storage 0, tariff 0 and subunit 0 with no
// combinable VIFE (so not a backward-flow or per-period register), valid,
// and not from the clear tail of an encrypted telegram.
func (t *Telegram) TotalVolume() (m3 float64, ok bool) {
	for _, r := range t.Records {
		if r.Quantity == QuantityVolume && r.Function == Instantaneous &&
			r.Storage == 0 && r.Tariff == 0 && r.Subunit == 0 && len(r.VIFE) == 0 && !r.Invalid && !r.Plaintext {
			return r.Value, true
		}
	}
	return 0, false
}

// KeySize is the length of every wM-Bus key (AES-128).
const KeySize = 16

// DecodeHex decodes a telegram given as hex (spaces, colons and a 0x prefix
// are ignored). See Decode.
func DecodeHex(s string, key []byte) (*Telegram, error) {
	s = strings.NewReplacer(" ", "", ":", "", "\n", "", "\t", "").Replace(strings.TrimSpace(s))
	s = strings.TrimPrefix(strings.TrimPrefix(s, "0x"), "0X")
	b, err := hex.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("wmbus: telegram hex: %w", err)
	}
	return Decode(b, key)
}

// Decode parses and, with key, decrypts one telegram that starts at the
// L-field. The frame may come with or without the DLL block CRCs of frame
// format A (see StripCRC); key may be nil for unencrypted telegrams. The
// input is not modified.
func Decode(frame []byte, key []byte) (*Telegram, error) {
	return DecodeWith(frame, key, Options{})
}

// DecodeWith is Decode with options, for compact frames whose formats the
// caller learned from full frames.
func DecodeWith(frame []byte, key []byte, opt Options) (*Telegram, error) {
	if key != nil && len(key) != KeySize {
		return nil, fmt.Errorf("wmbus: key is %d bytes, want %d: %w", len(key), KeySize, ErrBadKey)
	}
	b, err := StripCRC(frame)
	if err != nil {
		return nil, err
	}
	// Decryption works in place, so work on a copy.
	b = append([]byte(nil), b...)
	if len(b) < 11 {
		return nil, fmt.Errorf("wmbus: link layer needs 11 bytes, have %d: %w", len(b), ErrShort)
	}
	t := &Telegram{L: b[0], C: b[1], Link: newAddress(b[2:4], b[4:10])}
	t.Meter = t.Link
	d := decoder{t: t, key: key, b: b, opt: opt}
	if err := d.layers(10); err != nil {
		return nil, err
	}
	if key != nil && !d.encrypted {
		// A meter registered with a key that suddenly sends in clear is
		// being impersonated or downgraded: do not take its data.
		return nil, fmt.Errorf("wmbus: key given but the telegram is not encrypted: %w", ErrNotEncrypted)
	}
	if key != nil {
		t.DefaultKey = DefaultKeyName(key)
	}
	return t, nil
}

type decoder struct {
	t         *Telegram
	key       []byte
	b         []byte
	opt       Options
	encrypted bool // some layer was decrypted and checked
}

// layers walks the CI fields from offset i: ELL, then AFL, then TPL.
func (d *decoder) layers(i int) error {
	for {
		if i >= len(d.b) {
			return fmt.Errorf("wmbus: CI field at offset %d: %w", i, ErrShort)
		}
		ci := d.b[i]
		var err error
		switch {
		case ci >= 0x8C && ci <= 0x8F:
			if d.t.ELL != nil || d.t.AFL != nil {
				return fmt.Errorf("wmbus: ELL (CI %02X) at offset %d out of order: %w", ci, i, ErrUnsupported)
			}
			i, err = d.ell(i)
		case ci == 0x90:
			if d.t.AFL != nil {
				return fmt.Errorf("wmbus: second AFL at offset %d: %w", i, ErrUnsupported)
			}
			i, err = d.afl(i)
		case ci == 0x7A || ci == 0x72 || ci == 0x78:
			return d.tpl(i)
		case ci == 0x79:
			d.t.TPL = &TPL{CI: ci}
			return d.compact(d.b[i+1:])
		case ci >= 0xA0 && ci <= 0xB7:
			return fmt.Errorf("wmbus: manufacturer-specific CI %02X: %w", ci, ErrUnsupported)
		default:
			return fmt.Errorf("wmbus: CI %02X at offset %d: %w", ci, i, ErrUnsupported)
		}
		if err != nil {
			return err
		}
	}
}

// ell parses an extended link layer at i and decrypts the rest of the
// telegram when the session number says AES-CTR. It returns the offset of
// the next CI field.
func (d *decoder) ell(i int) (int, error) {
	ci := d.b[i]
	need := [4]int{3, 9, 11, 17}[ci-0x8C] // CI, CC, ACC [, M, A] [, SN, CRC]
	if i+need > len(d.b) {
		return 0, fmt.Errorf("wmbus: ELL CI %02X needs %d bytes at offset %d: %w", ci, need, i, ErrShort)
	}
	e := &ELL{CI: ci, CC: d.b[i+1], ACC: d.b[i+2]}
	d.t.ELL = e
	j := i + 3
	addr := &d.t.Link
	if ci == 0x8E || ci == 0x8F {
		a := newAddress(d.b[j:j+2], d.b[j+2:j+8])
		e.Address = &a
		addr = e.Address
		d.t.Meter = a
		j += 8
	}
	if ci == 0x8C || ci == 0x8E {
		return j, nil
	}
	e.SN = binary.LittleEndian.Uint32(d.b[j:])
	sn := d.b[j : j+4]
	j += 4
	// The payload CRC and everything after it are covered by the CRC, and
	// encrypted when the session number asks for it.
	payload := d.b[j:]
	switch enc := e.SN >> 29; enc {
	case 0:
	case 1:
		if d.key == nil {
			return 0, fmt.Errorf("wmbus: ELL AES-CTR: %w", ErrNoKey)
		}
		e.Encrypted = true
		d.encrypted = true
		// IV (EN 13757-4): M, A, CC, SN, FN (2 bytes, 0: unfragmented),
		// BC (block counter, counting up from 0 in the last byte). The
		// hop-count (H, 0x10) and repeated-access (R, 0x02) bits of CC are
		// cleared: a repeater or a retry changes them after the meter
		// encrypted. Some meters encrypt with the bits as sent, so when
		// either is set and the CRC fails the raw CC is tried once more.
		block, _ := aes.NewCipher(d.key)
		ct := append([]byte(nil), payload...)
		ctr := func(cc byte) bool {
			var iv [16]byte
			copy(iv[:8], addr.wire[:])
			iv[8] = cc
			copy(iv[9:13], sn)
			cipher.NewCTR(block, iv[:]).XORKeyStream(payload, ct)
			return binary.LittleEndian.Uint16(payload) == crc16(payload[2:])
		}
		if !ctr(e.CC&^0x12) && e.CC&0x12 != 0 {
			ctr(e.CC)
		}
	default:
		return 0, fmt.Errorf("wmbus: ELL session number encryption %d: %w", enc, ErrUnsupported)
	}
	if binary.LittleEndian.Uint16(payload) != crc16(payload[2:]) {
		if e.Encrypted {
			return 0, fmt.Errorf("wmbus: ELL payload CRC after AES-CTR: %w: %w", ErrBadKey, ErrCRC)
		}
		return 0, fmt.Errorf("wmbus: ELL payload CRC: %w", ErrCRC)
	}
	return j + 2, nil
}

// afl parses the authentication and fragmentation layer at i.
func (d *decoder) afl(i int) (int, error) {
	if i+2 > len(d.b) {
		return 0, fmt.Errorf("wmbus: AFL length at offset %d: %w", i, ErrShort)
	}
	end := i + 2 + int(d.b[i+1])
	if end > len(d.b) {
		return 0, fmt.Errorf("wmbus: AFL of %d bytes at offset %d: %w", d.b[i+1], i, ErrShort)
	}
	p := d.b[i+2 : end]
	a := &AFL{}
	d.t.AFL = a
	take := func(n int, field string) ([]byte, error) {
		if len(p) < n {
			return nil, fmt.Errorf("wmbus: AFL %s: %w", field, ErrShort)
		}
		v := p[:n]
		p = p[n:]
		return v, nil
	}
	v, err := take(2, "FCL")
	if err != nil {
		return 0, err
	}
	a.FCL = binary.LittleEndian.Uint16(v)
	// FCL: bit 14 more fragments, 13 MCL present, 12 ML present, 11 MCR
	// present, 10 MAC present, 9 KI present, 7..0 fragment id.
	if a.FCL&0x4000 != 0 || a.FCL&0xFF > 1 {
		return 0, fmt.Errorf("wmbus: AFL fragmented message (FCL %04X): %w", a.FCL, ErrUnsupported)
	}
	if a.FCL&0x2000 != 0 {
		if v, err = take(1, "MCL"); err != nil {
			return 0, err
		}
		a.MCL = v[0]
	}
	if a.FCL&0x0200 != 0 {
		if v, err = take(2, "KI"); err != nil {
			return 0, err
		}
		a.KI = binary.LittleEndian.Uint16(v)
	}
	if a.FCL&0x0800 != 0 {
		if v, err = take(4, "MCR"); err != nil {
			return 0, err
		}
		a.Counter, a.hasCounter = binary.LittleEndian.Uint32(v), true
	}
	if a.FCL&0x0400 != 0 {
		// MCL bits 3..0 are the authentication type; 5 is AES-CMAC-128
		// truncated to 8 bytes, the one OMS uses.
		at := int(a.MCL & 0x0F)
		if at < 4 || at > 7 {
			return 0, fmt.Errorf("wmbus: AFL authentication type %d: %w", a.MCL&0x0F, ErrUnsupported)
		}
		if v, err = take(4*(at-3), "MAC"); err != nil {
			return 0, err
		}
		a.MAC = v
	}
	if a.FCL&0x1000 != 0 {
		if v, err = take(2, "ML"); err != nil {
			return 0, err
		}
		a.ML, a.hasML = binary.LittleEndian.Uint16(v), true
	}
	return end, nil
}

// tpl parses the transport layer at i, decrypts the application data and
// decodes its records.
func (d *decoder) tpl(i int) error {
	start := i
	ci := d.b[i]
	h := &TPL{CI: ci}
	d.t.TPL = h
	i++
	if ci == 0x78 {
		return d.apl(d.b[i:])
	}
	need := 4
	if ci == 0x72 {
		need = 12
	}
	if i+need > len(d.b) {
		return fmt.Errorf("wmbus: TPL CI %02X header needs %d bytes: %w", ci, need, ErrShort)
	}
	addr := &d.t.Link
	if d.t.ELL != nil && d.t.ELL.Address != nil {
		addr = d.t.ELL.Address
	}
	if ci == 0x72 {
		// The long header puts the identification number before M.
		var a6 [6]byte
		copy(a6[:4], d.b[i:i+4])
		a6[4], a6[5] = d.b[i+6], d.b[i+7]
		a := newAddress(d.b[i+4:i+6], a6[:])
		h.Address = &a
		addr = h.Address
		d.t.Meter = a
		i += 8
	}
	h.ACC, h.Status = d.b[i], d.b[i+1]
	h.Config = binary.LittleEndian.Uint16(d.b[i+2:])
	i += 4
	h.Mode = SecurityMode(h.Config >> 8 & 0x1F)
	h.Blocks = int(h.Config >> 4 & 0x0F)
	switch h.Mode {
	case ModeNone:
		return d.apl(d.b[i:])
	case Mode5:
		if d.key == nil {
			return fmt.Errorf("wmbus: TPL mode 5: %w", ErrNoKey)
		}
		enc, err := encrypted(d.b[i:], h.Blocks)
		if err != nil {
			return fmt.Errorf("wmbus: TPL mode 5: %w", err)
		}
		var iv [16]byte
		copy(iv[:8], addr.wire[:])
		for k := 8; k < 16; k++ {
			iv[k] = h.ACC
		}
		block, _ := aes.NewCipher(d.key)
		cipher.NewCBCDecrypter(block, iv[:]).CryptBlocks(enc, enc)
	case Mode7:
		if i >= len(d.b) {
			return fmt.Errorf("wmbus: TPL mode 7 configuration extension: %w", ErrShort)
		}
		h.ConfigExt = d.b[i]
		i++
		if d.key == nil {
			return fmt.Errorf("wmbus: TPL mode 7: %w", ErrNoKey)
		}
		if err := d.mode7(start, i, addr); err != nil {
			return err
		}
	default:
		return fmt.Errorf("wmbus: TPL security mode %d: %w", h.Mode, ErrUnsupported)
	}
	if d.b[i] != 0x2F || d.b[i+1] != 0x2F {
		return fmt.Errorf("wmbus: TPL mode %d: plaintext does not start with 2F2F: %w", h.Mode, ErrBadKey)
	}
	d.encrypted = true
	apl := d.b[i:]
	if err := d.apl(apl); err != nil {
		return err
	}
	// Records after the encrypted blocks travelled in clear: mark them so
	// no reading is taken from bytes anyone on the air could have changed.
	enc, _ := encrypted(apl, h.Blocks)
	for k := range d.t.Records {
		r := &d.t.Records[k]
		if r.Vendor == "" && cap(apl)-cap(r.Data) >= len(enc) {
			r.Plaintext = true
		}
	}
	return nil
}

// encrypted returns the n encrypted blocks at the start of p (n = 0 means
// all of p, rounded down to whole blocks, as some meters send).
func encrypted(p []byte, n int) ([]byte, error) {
	l := 16 * n
	if n == 0 {
		l = len(p) &^ 15
	}
	if l == 0 || l > len(p) {
		return nil, fmt.Errorf("%d encrypted blocks, %d bytes left: %w", n, len(p), ErrShort)
	}
	return p[:l], nil
}

// mode7 verifies the AFL MAC and decrypts the data at i in place (OMS
// volume 2, security profile B; EN 13757-7). start is the offset of the
// TPL CI field.
func (d *decoder) mode7(start, i int, addr *Address) error {
	h, a := d.t.TPL, d.t.AFL
	if kdf := h.ConfigExt >> 4 & 3; kdf != 1 {
		return fmt.Errorf("wmbus: TPL mode 7 KDF selection %d: %w", kdf, ErrUnsupported)
	}
	if a == nil || !a.hasCounter {
		return fmt.Errorf("wmbus: TPL mode 7 without an AFL message counter: %w", ErrUnsupported)
	}
	if len(a.MAC) == 0 {
		return fmt.Errorf("wmbus: TPL mode 7 without an AFL MAC: %w", ErrMAC)
	}
	kenc, kmac := Mode7Keys(d.key, a.Counter, addr.idBytes())
	mac := mode7MAC(kmac, a, d.b[start:])
	if !cmac.Equal(mac[:len(a.MAC)], a.MAC) {
		return fmt.Errorf("wmbus: AFL MAC (counter %d): %w", a.Counter, ErrMAC)
	}
	enc, err := encrypted(d.b[i:], h.Blocks)
	if err != nil {
		return fmt.Errorf("wmbus: TPL mode 7: %w", err)
	}
	block, _ := aes.NewCipher(kenc[:])
	var iv [16]byte // mode 7 uses a zero IV: every message has its own key
	cipher.NewCBCDecrypter(block, iv[:]).CryptBlocks(enc, enc)
	return nil
}

// Mode7Keys derives the per-message keys of security mode 7 from the meter
// key: K = AES-CMAC(key, DC || counter || id || 07 x 7), with the derivation
// constant DC 00 for Kenc and 01 for Kmac (messages from the meter), the
// AFL message counter little-endian and the meter's four identification
// bytes as transmitted.
func Mode7Keys(key []byte, counter uint32, id []byte) (kenc, kmac [16]byte) {
	var in [16]byte
	binary.LittleEndian.PutUint32(in[1:5], counter)
	copy(in[5:9], id)
	for k := 9; k < 16; k++ {
		in[k] = 0x07
	}
	m, _ := cmac.New(key)
	m.Write(in[:])
	m.Sum(kenc[:0])
	m.Reset()
	in[0] = 0x01
	m.Write(in[:])
	m.Sum(kmac[:0])
	return kenc, kmac
}

// mode7MAC computes the AFL MAC: AES-CMAC(Kmac, MCL || MCR || [ML] || every
// byte from the TPL CI field to the end of the message).
func mode7MAC(kmac [16]byte, a *AFL, rest []byte) []byte {
	m, _ := cmac.New(kmac[:])
	var hdr [7]byte
	hdr[0] = a.MCL
	binary.LittleEndian.PutUint32(hdr[1:5], a.Counter)
	n := 5
	if a.hasML {
		binary.LittleEndian.PutUint16(hdr[5:7], a.ML)
		n = 7
	}
	m.Write(hdr[:n])
	m.Write(rest)
	return m.Sum(nil)
}

// apl decodes the application layer, through a manufacturer decoder when the
// meter is known to send proprietary data instead of DIF/VIF records.
func (d *decoder) apl(p []byte) error {
	if dec := vendorDecoder(&d.t.Meter); dec != nil {
		recs, err := dec(p)
		if err != nil {
			return fmt.Errorf("wmbus: application layer: %w", err)
		}
		d.t.Records = recs
		return nil
	}
	rs, err := ParseRecords(p)
	if err != nil {
		return fmt.Errorf("wmbus: application layer: %w", err)
	}
	d.t.Records, d.t.Mfct, d.t.More, d.t.Format = rs.List, rs.Mfct, rs.More, rs.Format
	return nil
}

// StatusFlags names the standard bits of the TPL status byte (EN 13757-3):
// bits 1..0 application state (busy, error, alarm), bit 2 power low, bit 3
// permanent error, bit 4 temporary error. Bits 7..5 are manufacturer
// specific and not named. A nil result means no flag is set.
func (h *TPL) StatusFlags() []string {
	var s []string
	switch h.Status & 0x03 {
	case 1:
		s = append(s, "busy")
	case 2:
		s = append(s, "error")
	case 3:
		s = append(s, "alarm")
	}
	if h.Status&0x08 != 0 {
		s = append(s, "permanent_error")
	}
	if h.Status&0x04 != 0 {
		s = append(s, "power_low")
	}
	if h.Status&0x10 != 0 {
		s = append(s, "temporary_error")
	}
	return s
}
