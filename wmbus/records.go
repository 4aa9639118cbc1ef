package wmbus

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math"
	"strings"
	"time"
)

// Function is the DIF function field: what the value describes.
type Function byte

const (
	Instantaneous Function = 0
	Maximum       Function = 1
	Minimum       Function = 2
	DuringError   Function = 3
)

func (f Function) String() string {
	return [...]string{"instantaneous", "maximum", "minimum", "during_error"}[f&3]
}

// MarshalText writes the function by name.
func (f Function) MarshalText() ([]byte, error) { return []byte(f.String()), nil }

// Hex is a byte string that JSON shows as upper-case hex, the way telegrams
// are written everywhere else.
type Hex []byte

// MarshalText writes h as hex.
func (h Hex) MarshalText() ([]byte, error) {
	return []byte(strings.ToUpper(hex.EncodeToString(h))), nil
}

// Quantity names what a record measures. Only the quantities a water
// head-end uses are named; anything else decodes as QuantityOther with its
// raw VIF kept, so nothing is silently lost.
type Quantity string

const (
	QuantityVolume       Quantity = "volume"         // m3
	QuantityVolumeFlow   Quantity = "volume_flow"    // m3/h
	QuantityEnergy       Quantity = "energy"         // Wh
	QuantityTemperature  Quantity = "temperature"    // °C (flow, return or external)
	QuantityDate         Quantity = "date"           // type G
	QuantityDateTime     Quantity = "date_time"      // type F or I
	QuantityDuration     Quantity = "duration"       // on, operating, averaging or actuality time, in seconds
	QuantityErrorFlags   Quantity = "error_flags"    // VIF FD 17, a bit field
	QuantityCredit       Quantity = "credit"         // VIF FD 00..03, currency units
	QuantityDebit        Quantity = "debit"          // VIF FD 04..07, currency units
	QuantityFabrication  Quantity = "fabrication_no" // VIF 78
	QuantityAccessNumber Quantity = "access_number"  // VIF FD 08
	QuantityVersion      Quantity = "version"        // VIF FD 0C..0F: model, hardware, firmware, software
	QuantityMfct         Quantity = "manufacturer"   // VIF 7F/FF: meaning known to the manufacturer only
	QuantityOther        Quantity = "other"
)

// Record is one DIF/VIF data record of the application layer (EN 13757-3).
type Record struct {
	DIF      byte     `json:"dif"`
	DIFE     Hex      `json:"dife,omitempty"`
	VIF      byte     `json:"vif"`
	VIFExt   byte     `json:"vif_ext,omitempty"` // the code in table FB or FD when VIF is FB or FD
	VIFE     Hex      `json:"vife,omitempty"`    // combinable extensions (e.g. 3C: backward flow)
	Function Function `json:"function"`
	Storage  uint64   `json:"storage"`
	Tariff   uint32   `json:"tariff"`
	Subunit  uint32   `json:"subunit"`

	Quantity Quantity `json:"quantity"`
	Unit     string   `json:"unit,omitempty"`
	// Value is the number in Unit with the VIF's decimal exponent applied,
	// for numeric records. Date records carry Time instead.
	Value float64   `json:"value"`
	Time  time.Time `json:"time,omitzero"`
	Text  string    `json:"text,omitempty"` // plain text or variable-length ASCII data
	// Invalid is set when the meter marks the value as not available (BCD
	// digits A-E, the date/time IV bit).
	Invalid bool `json:"invalid,omitempty"`
	Data    Hex  `json:"data"` // the data bytes as transmitted
	// Plaintext is set for records after the encrypted blocks of an
	// encrypted telegram: they travelled in clear, unauthenticated.
	Plaintext bool `json:"plaintext,omitempty"`
	// Vendor names the manufacturer-specific decoder that produced this
	// record when it did not come from a DIF/VIF pair.
	Vendor string `json:"vendor,omitempty"`
}

// Records is the decoded application layer.
type Records struct {
	List []Record
	// Format is the DIF/VIF bytes of List in order: what a meter's compact
	// frames (CI 79) leave out, identified by FormatSignature(Format).
	Format Hex
	// Mfct is the manufacturer-specific data after a DIF 0F or 1F.
	Mfct Hex
	// More is set by DIF 1F: more records follow in the next telegram.
	More bool
}

// maxExtensions bounds DIFE and VIFE chains (EN 13757-3 allows 10).
const maxExtensions = 10

// ParseRecords decodes a DIF/VIF record list, skipping 2F idle fillers and
// stopping at manufacturer-specific data (DIF 0F/1F).
func ParseRecords(p []byte) (Records, error) {
	var out Records
	for i := 0; i < len(p); {
		start := i
		switch dif := p[i]; dif {
		case 0x2F:
			i++
			continue
		case 0x0F, 0x1F:
			out.Mfct = p[i+1:]
			out.More = dif == 0x1F
			return out, nil
		}
		r, plain, next, err := parseHeader(p, i)
		if err != nil {
			return out, err
		}
		i = next
		out.Format = append(out.Format, p[start:i]...)
		n, err := dataLength(r.DIF, p, &i)
		if err != nil {
			return out, fmt.Errorf("%w: record at offset %d: %w", ErrRecord, start, err)
		}
		if i+n > len(p) {
			return out, fmt.Errorf("%w: data of record at offset %d (%d bytes): %w", ErrRecord, start, n, ErrShort)
		}
		r.Data = p[i : i+n]
		i += n
		if err := r.decode(plain); err != nil {
			return out, fmt.Errorf("%w: record at offset %d: %w", ErrRecord, start, err)
		}
		out.List = append(out.List, r)
	}
	return out, nil
}

// parseHeader reads the DIF, DIFEs, VIF and VIFEs of the record at p[i]
// and returns the offset of its data (or of its LVAR byte).
func parseHeader(p []byte, i int) (r Record, plain []byte, next int, err error) {
	start := i
	dif := p[i]
	i++
	if dif&0x0F == 0x0F {
		return r, nil, 0, fmt.Errorf("%w: DIF %02X at offset %d: special function not allowed here", ErrRecord, dif, start)
	}
	r = Record{
		DIF:      dif,
		Function: Function(dif >> 4 & 3),
		Storage:  uint64(dif >> 6 & 1),
	}
	ext := dif&0x80 != 0
	for n := 0; ext; n++ {
		if n == maxExtensions {
			return r, nil, 0, fmt.Errorf("%w: more than %d DIFE at offset %d", ErrRecord, maxExtensions, start)
		}
		if i >= len(p) {
			return r, nil, 0, fmt.Errorf("%w: DIFE at offset %d: %w", ErrRecord, i, ErrShort)
		}
		e := p[i]
		i++
		r.DIFE = append(r.DIFE, e)
		r.Storage |= uint64(e&0x0F) << (1 + 4*n)
		r.Tariff |= uint32(e>>4&3) << (2 * n)
		r.Subunit |= uint32(e>>6&1) << n
		ext = e&0x80 != 0
	}
	if i >= len(p) {
		return r, nil, 0, fmt.Errorf("%w: VIF at offset %d: %w", ErrRecord, i, ErrShort)
	}
	r.VIF = p[i]
	i++
	ext = r.VIF&0x80 != 0
	if r.VIF&0x7F == 0x7C { // plain-text VIF: a length byte and the unit in ASCII, reversed
		if i >= len(p) || i+1+int(p[i]) > len(p) {
			return r, nil, 0, fmt.Errorf("%w: plain-text VIF at offset %d: %w", ErrRecord, i, ErrShort)
		}
		plain = p[i+1 : i+1+int(p[i])]
		i += 1 + int(p[i])
	}
	if r.VIF == 0xFB || r.VIF == 0xFD {
		if i >= len(p) {
			return r, nil, 0, fmt.Errorf("%w: VIF extension at offset %d: %w", ErrRecord, i, ErrShort)
		}
		r.VIFExt = p[i]
		ext = p[i]&0x80 != 0
		i++
	}
	for n := 0; ext; n++ {
		if n == maxExtensions {
			return r, nil, 0, fmt.Errorf("%w: more than %d VIFE at offset %d", ErrRecord, maxExtensions, start)
		}
		if i >= len(p) {
			return r, nil, 0, fmt.Errorf("%w: VIFE at offset %d: %w", ErrRecord, i, ErrShort)
		}
		r.VIFE = append(r.VIFE, p[i])
		ext = p[i]&0x80 != 0
		i++
	}
	return r, plain, i, nil
}

// expandCompact rebuilds the full record list of a compact frame (CI 79)
// from its format (the DIF/VIF bytes of a full frame) and its data bytes,
// interleaving each header with its share of the data.
func expandCompact(format, data []byte) ([]byte, error) {
	full := make([]byte, 0, len(format)+len(data))
	j := 0
	for i := 0; i < len(format); {
		r, _, next, err := parseHeader(format, i)
		if err != nil {
			return nil, fmt.Errorf("compact format: %w", err)
		}
		full = append(full, format[i:next]...)
		i = next
		start := j
		n, err := dataLength(r.DIF, data, &j)
		if err != nil {
			return nil, fmt.Errorf("%w: compact data at offset %d: %w", ErrRecord, start, err)
		}
		if j+n > len(data) {
			return nil, fmt.Errorf("%w: compact data at offset %d (%d bytes): %w", ErrRecord, start, n, ErrShort)
		}
		full = append(full, data[start:j+n]...)
		j += n
	}
	if j != len(data) {
		return nil, fmt.Errorf("%w: %d compact data bytes beyond the format", ErrRecord, len(data)-j)
	}
	return full, nil
}

// lvar marks the variable-length data field (DIF data field D); its real
// length and encoding come from the LVAR byte before the data.
const lvarLength = -1

var fixedLength = [16]int{0, 1, 2, 3, 4, 4, 6, 8, 0, 1, 2, 3, 4, lvarLength, 6, 0}

// dataLength returns the number of data bytes of a record, consuming the
// LVAR byte of variable-length data.
func dataLength(dif byte, p []byte, i *int) (int, error) {
	n := fixedLength[dif&0x0F]
	if n != lvarLength {
		return n, nil
	}
	if *i >= len(p) {
		return 0, fmt.Errorf("LVAR: %w", ErrShort)
	}
	l := int(p[*i])
	*i++
	switch {
	case l <= 0xBF: // ASCII
		return l, nil
	case l >= 0xC0 && l <= 0xCF: // positive BCD, LVAR-C0 bytes
		return l - 0xC0, nil
	case l >= 0xD0 && l <= 0xDF: // negative BCD
		return l - 0xD0, nil
	case l >= 0xE0 && l <= 0xEF: // binary number, LVAR-E0 bytes
		return l - 0xE0, nil
	case l >= 0xF0 && l <= 0xF4: // binary number, 4*(LVAR-EC) bytes
		return 4 * (l - 0xEC), nil
	}
	return 0, fmt.Errorf("LVAR %02X: %w", l, ErrUnsupported)
}

// decode sets Quantity, Unit, Value, Time and Text from the VIF and data.
func (r *Record) decode(plain []byte) error {
	df := r.DIF & 0x0F
	var raw float64
	numeric := true
	switch df {
	case 0x0, 0x8:
		numeric = false
	case 0x1, 0x2, 0x3, 0x4, 0x6, 0x7:
		raw = float64(signedLE(r.Data))
	case 0x5:
		raw = float64(math.Float32frombits(binary.LittleEndian.Uint32(r.Data)))
	case 0x9, 0xA, 0xB, 0xC, 0xE:
		v, ok := bcd(r.Data)
		raw, r.Invalid = float64(v), !ok
	case 0xD:
		// Variable length: ASCII is sent last character first.
		numeric = false
		r.Text = reversed(r.Data)
	}
	exp := 0
	vif := r.VIF & 0x7F
	switch {
	case r.VIF == 0xFD:
		r.quantityFD(&exp)
	case r.VIF == 0xFB:
		r.quantityFB(&exp)
	case vif <= 0x07:
		r.Quantity, r.Unit, exp = QuantityEnergy, "Wh", int(vif&7)-3
	case vif >= 0x10 && vif <= 0x17:
		r.Quantity, r.Unit, exp = QuantityVolume, "m3", int(vif&7)-6
	case vif >= 0x20 && vif <= 0x27:
		r.Quantity, r.Unit = QuantityDuration, "s"
		raw *= durationUnit(vif & 3)
	case vif >= 0x38 && vif <= 0x3F:
		r.Quantity, r.Unit, exp = QuantityVolumeFlow, "m3/h", int(vif&7)-6
	case vif >= 0x58 && vif <= 0x5F, vif >= 0x64 && vif <= 0x67:
		r.Quantity, r.Unit, exp = QuantityTemperature, "C", int(vif&3)-3
	case vif == 0x6C:
		r.Quantity = QuantityDate
		numeric = false
		if df != 0x2 {
			return fmt.Errorf("date (VIF 6C) in data field %X: %w", df, ErrUnsupported)
		}
		r.Time, r.Invalid = dateG(r.Data)
	case vif == 0x6D:
		r.Quantity = QuantityDateTime
		numeric = false
		switch df {
		case 0x4:
			r.Time, r.Invalid = dateTimeF(r.Data)
		case 0x6:
			r.Time, r.Invalid = dateTimeI(r.Data)
		default:
			return fmt.Errorf("date/time (VIF 6D) in data field %X: %w", df, ErrUnsupported)
		}
	case vif >= 0x70 && vif <= 0x77:
		r.Quantity, r.Unit = QuantityDuration, "s"
		raw *= durationUnit(vif & 3)
	case vif == 0x78:
		r.Quantity = QuantityFabrication
	case vif == 0x7C:
		r.Quantity, r.Unit = QuantityOther, reversed(plain)
	case vif == 0x7F:
		r.Quantity = QuantityMfct
	default:
		r.Quantity = QuantityOther
	}
	if numeric {
		// Dividing by an exact power of ten rounds correctly: 466472 / 1000
		// prints as 466.472, where 466472 * 0.001 would not.
		if exp < 0 {
			r.Value = raw / math.Pow10(-exp)
		} else {
			r.Value = raw * math.Pow10(exp)
		}
	}
	return nil
}

func (r *Record) quantityFD(exp *int) {
	c := r.VIFExt & 0x7F
	switch {
	case c <= 0x03:
		r.Quantity, *exp = QuantityCredit, int(c&3)-3
	case c <= 0x07:
		r.Quantity, *exp = QuantityDebit, int(c&3)-3
	case c == 0x08:
		r.Quantity = QuantityAccessNumber
	case c >= 0x0C && c <= 0x0F:
		r.Quantity = QuantityVersion
	case c == 0x17:
		r.Quantity = QuantityErrorFlags
	default:
		r.Quantity = QuantityOther
	}
}

func (r *Record) quantityFB(exp *int) {
	c := r.VIFExt & 0x7F
	switch {
	case c == 0x10 || c == 0x11: // volume 10^(n+2) m3: the decades above VIF 17
		r.Quantity, r.Unit, *exp = QuantityVolume, "m3", int(c&1)+2
	default:
		r.Quantity = QuantityOther
	}
}

// durationUnit converts the two unit bits of a duration VIF to seconds.
func durationUnit(u byte) float64 {
	return [...]float64{1, 60, 3600, 86400}[u]
}

// signedLE reads a little-endian two's-complement integer of 1 to 8 bytes
// (EN 13757-3 type B).
func signedLE(b []byte) int64 {
	var v uint64
	for i := len(b) - 1; i >= 0; i-- {
		v = v<<8 | uint64(b[i])
	}
	shift := 64 - 8*uint(len(b))
	return int64(v<<shift) >> shift
}

// bcd reads little-endian packed BCD (type A). A high nibble F in the most
// significant byte makes the value negative; any other digit above 9 marks
// the value as not available, and ok is false.
func bcd(b []byte) (v int64, ok bool) {
	neg := false
	ok = true
	for i := len(b) - 1; i >= 0; i-- {
		hi, lo := b[i]>>4, b[i]&0x0F
		if i == len(b)-1 && hi == 0xF {
			neg, hi = true, 0
		}
		if hi > 9 || lo > 9 {
			ok = false
		}
		v = v*100 + int64(hi)*10 + int64(lo)
	}
	if neg {
		v = -v
	}
	return v, ok
}

func reversed(b []byte) string {
	s := make([]byte, len(b))
	for i, c := range b {
		s[len(b)-1-i] = c
	}
	return string(s)
}

// The meter's clock has no zone on the air; times are returned as the wall
// clock the meter shows, labelled UTC.

// dateG decodes type G: day, month and a year split over two bytes.
func dateG(b []byte) (time.Time, bool) {
	day := int(b[0] & 0x1F)
	month := int(b[1] & 0x0F)
	year := int(b[0]>>5) | int(b[1]>>4)<<3
	return civil(year, month, day, 0, 0, 0)
}

// dateTimeF decodes type F: minute, hour, day, month, year; bit 7 of the
// first byte is the invalid flag.
func dateTimeF(b []byte) (time.Time, bool) {
	if b[0]&0x80 != 0 {
		return time.Time{}, true
	}
	year := int(b[2]>>5) | int(b[3]>>4)<<3
	t, bad := civil(year, int(b[3]&0x0F), int(b[2]&0x1F), int(b[1]&0x1F), int(b[0]&0x3F), 0)
	return t, bad
}

// dateTimeI decodes type I: second, minute, hour, day, month, year.
func dateTimeI(b []byte) (time.Time, bool) {
	if b[1]&0x80 != 0 {
		return time.Time{}, true
	}
	year := int(b[3]>>5) | int(b[4]>>4)<<3
	return civil(year, int(b[4]&0x0F), int(b[3]&0x1F), int(b[2]&0x1F), int(b[1]&0x3F), int(b[0]&0x3F))
}

// civil validates the fields and builds a time; invalid is true (and the
// time zero) when any field is out of range, as meters send for "not set".
func civil(year, month, day, hour, minute, sec int) (time.Time, bool) {
	if month < 1 || month > 12 || day < 1 || day > 31 || hour > 23 || minute > 59 || sec > 59 || year > 99 {
		return time.Time{}, true
	}
	return time.Date(2000+year, time.Month(month), day, hour, minute, sec, 0, time.UTC), false
}
