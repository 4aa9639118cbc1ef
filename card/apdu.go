package card

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// ISO/IEC 7816-4 command and response APDUs.
//
// A command is CLA INS P1 P2, then optionally Lc and the command data, then
// optionally Le. The short form carries Lc in one byte (1..255) and Le in one
// byte (00 means 256); the extended form starts the body with a 00 byte and
// carries Lc in two bytes (1..65535) and Le in two bytes (0000 means 65536),
// or, without data, Le in three bytes (00 Le1 Le2). The four cases are:
//
//	case 1: header only
//	case 2: header Le                    (short) | header 00 Le1 Le2
//	case 3: header Lc data               (short) | header 00 Lc1 Lc2 data
//	case 4: header Lc data Le            (short) | header 00 Lc1 Lc2 data Le1 Le2
//
// Marshal chooses the short form whenever the lengths fit it, so that readers
// which only speak short APDUs still work for every command Sluice sends.

// Maximum lengths of the two forms.
const (
	MaxShortData    = 255
	MaxShortNe      = 256
	MaxExtendedData = 65535
	MaxExtendedNe   = 65536
)

// ErrMalformed reports bytes that are not a well-formed APDU.
var ErrMalformed = errors.New("card: malformed APDU")

// Command is a command APDU.
type Command struct {
	CLA, INS, P1, P2 byte
	Data             []byte
	// Ne is the maximum number of response data bytes expected (what Le
	// encodes); 0 means no Le field, that is no response data expected.
	Ne int
}

// Extended reports whether c needs the extended length form.
func (c Command) Extended() bool {
	return len(c.Data) > MaxShortData || c.Ne > MaxShortNe
}

// Marshal encodes c, in the short form when its lengths allow.
func (c Command) Marshal() ([]byte, error) {
	if len(c.Data) > MaxExtendedData {
		return nil, fmt.Errorf("card: command data of %d bytes exceeds %d", len(c.Data), MaxExtendedData)
	}
	if c.Ne < 0 || c.Ne > MaxExtendedNe {
		return nil, fmt.Errorf("card: Ne %d out of range 0..%d", c.Ne, MaxExtendedNe)
	}
	b := make([]byte, 0, 4+3+len(c.Data)+3)
	b = append(b, c.CLA, c.INS, c.P1, c.P2)
	if !c.Extended() {
		if len(c.Data) > 0 {
			b = append(b, byte(len(c.Data)))
			b = append(b, c.Data...)
		}
		if c.Ne > 0 {
			b = append(b, byte(c.Ne)) // 256 encodes as 00
		}
		return b, nil
	}
	b = append(b, 0)
	if len(c.Data) > 0 {
		b = binary.BigEndian.AppendUint16(b, uint16(len(c.Data)))
		b = append(b, c.Data...)
	}
	if c.Ne > 0 {
		b = binary.BigEndian.AppendUint16(b, uint16(c.Ne)) // 65536 encodes as 0000
	}
	return b, nil
}

// ParseCommand decodes a command APDU in either form. It rejects every
// encoding ISO 7816-4 does not allow (Lc of zero, lengths that disagree with
// the bytes present, trailing bytes), because a lenient parser on a card is
// an attack surface.
func ParseCommand(b []byte) (Command, error) {
	if len(b) < 4 {
		return Command{}, fmt.Errorf("%w: %d bytes, need a 4-byte header", ErrMalformed, len(b))
	}
	c := Command{CLA: b[0], INS: b[1], P1: b[2], P2: b[3]}
	body := b[4:]
	switch {
	case len(body) == 0: // case 1
		return c, nil
	case len(body) == 1: // case 2 short
		c.Ne = neShort(body[0])
		return c, nil
	case body[0] != 0: // case 3 or 4 short
		lc := int(body[0])
		switch len(body) - 1 - lc {
		case 0:
			c.Data = clone(body[1:])
		case 1:
			c.Data = clone(body[1 : 1+lc])
			c.Ne = neShort(body[1+lc])
		default:
			return Command{}, fmt.Errorf("%w: short Lc %d with %d body bytes", ErrMalformed, lc, len(body))
		}
		return c, nil
	case len(body) == 3: // case 2 extended
		c.Ne = neExtended(body[1:3])
		return c, nil
	case len(body) < 3:
		return Command{}, fmt.Errorf("%w: extended length field truncated", ErrMalformed)
	}
	lc := int(binary.BigEndian.Uint16(body[1:3]))
	if lc == 0 {
		return Command{}, fmt.Errorf("%w: extended Lc of zero", ErrMalformed)
	}
	switch len(body) - 3 - lc {
	case 0: // case 3 extended
		c.Data = clone(body[3:])
	case 2: // case 4 extended
		c.Data = clone(body[3 : 3+lc])
		c.Ne = neExtended(body[3+lc:])
	default:
		return Command{}, fmt.Errorf("%w: extended Lc %d with %d body bytes", ErrMalformed, lc, len(body))
	}
	return c, nil
}

func neShort(b byte) int {
	if b == 0 {
		return MaxShortNe
	}
	return int(b)
}

func neExtended(b []byte) int {
	n := int(binary.BigEndian.Uint16(b))
	if n == 0 {
		return MaxExtendedNe
	}
	return n
}

func clone(b []byte) []byte { return append([]byte(nil), b...) }

// Status words. ISO 7816-4 defines the 9000/6xxx family; the 91xx family is
// the native status of the EV2 secure-messaging layer, carried in SW2 the way
// DESFire cards wrap native commands in ISO APDUs (SW1 = 91, SW2 = the native
// response code, which the response MAC covers).
const (
	SWOK               uint16 = 0x9000
	SWWrongLength      uint16 = 0x6700
	SWSecurityStatus   uint16 = 0x6982
	SWConditions       uint16 = 0x6985
	SWWrongData        uint16 = 0x6A80
	SWFileNotFound     uint16 = 0x6A82
	SWWrongP1P2        uint16 = 0x6B00
	SWINSNotSupported  uint16 = 0x6D00
	SWCLANotSupported  uint16 = 0x6E00
	SWUnknown          uint16 = 0x6F00
	SWNativeOK         uint16 = 0x9100
	SWAdditionalFrame  uint16 = 0x91AF
	SWIntegrityError   uint16 = 0x911E
	SWLengthError      uint16 = 0x917E
	SWPermissionDenied uint16 = 0x919D
	SWParameterError   uint16 = 0x919E
	SWAuthError        uint16 = 0x91AE
	SWBoundaryError    uint16 = 0x91BE
	SWDuplicate        uint16 = 0x91DE
	SWNoSuchFile       uint16 = 0x91F0
	SWMemoryError      uint16 = 0x91EE
)

// Response is a response APDU: data followed by SW1 SW2.
type Response struct {
	Data []byte
	SW   uint16
}

// SW1 and SW2 split the status word.
func (r Response) SW1() byte { return byte(r.SW >> 8) }
func (r Response) SW2() byte { return byte(r.SW) }

// Marshal encodes r.
func (r Response) Marshal() []byte {
	return binary.BigEndian.AppendUint16(append(make([]byte, 0, len(r.Data)+2), r.Data...), r.SW)
}

// ParseResponse decodes a response APDU.
func ParseResponse(b []byte) (Response, error) {
	if len(b) < 2 {
		return Response{}, fmt.Errorf("%w: response of %d bytes, need SW1 SW2", ErrMalformed, len(b))
	}
	n := len(b) - 2
	return Response{Data: clone(b[:n]), SW: binary.BigEndian.Uint16(b[n:])}, nil
}

// StatusError is a response whose status word reports a failure.
type StatusError struct {
	INS byte
	SW  uint16
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("card: command %02X failed: SW %04X (%s)", e.INS, e.SW, swText(e.SW))
}

func swText(sw uint16) string {
	switch sw {
	case SWWrongLength:
		return "wrong length"
	case SWSecurityStatus:
		return "security status not satisfied"
	case SWConditions:
		return "conditions of use not satisfied"
	case SWWrongData:
		return "wrong data"
	case SWFileNotFound:
		return "application not found"
	case SWWrongP1P2:
		return "wrong P1 P2"
	case SWINSNotSupported:
		return "instruction not supported"
	case SWCLANotSupported:
		return "class not supported"
	case SWIntegrityError:
		return "integrity error (MAC or padding)"
	case SWLengthError:
		return "length error"
	case SWPermissionDenied:
		return "permission denied"
	case SWParameterError:
		return "parameter error"
	case SWAuthError:
		return "authentication error"
	case SWBoundaryError:
		return "boundary error"
	case SWDuplicate:
		return "duplicate"
	case SWNoSuchFile:
		return "no such file"
	case SWMemoryError:
		return "memory error"
	}
	return "unknown"
}

// Transport carries one command APDU to the card and returns its response
// APDU, as raw bytes. It is the whole boundary between the protocol and the
// medium: an in-process card, PC/SC, or a recorder wrapping either.
type Transport interface {
	Transmit(apdu []byte) ([]byte, error)
}

// insGetResponse is GET RESPONSE, which fetches the rest of a response the
// card announced with 61xx.
const insGetResponse = 0xC0

// maxChain bounds the GET RESPONSE loop so a misbehaving card cannot keep a
// reader busy forever: 256 chunks cover any response an extended APDU allows.
const maxChain = 256

// Exchange sends c over t and returns the complete response. It implements
// the two ISO 7816-4 retry rules: 61xx (more data: fetch it with GET RESPONSE
// Le=xx and concatenate) and 6Cxx (wrong Le: resend the same command once
// with Le=xx). Other status words, errors included, are returned as the
// response for the caller to judge.
func Exchange(t Transport, c Command) (Response, error) {
	r, err := exchangeOnce(t, c)
	if err != nil {
		return Response{}, err
	}
	if r.SW1() == 0x6C {
		c.Ne = neShort(r.SW2())
		if r, err = exchangeOnce(t, c); err != nil {
			return Response{}, err
		}
	}
	data := r.Data
	for i := 0; r.SW1() == 0x61; i++ {
		if i == maxChain {
			return Response{}, fmt.Errorf("card: response to %02X longer than %d GET RESPONSE chunks", c.INS, maxChain)
		}
		// GET RESPONSE is interindustry (CLA 00), on the command's logical channel.
		gr := Command{CLA: c.CLA & 0x03, INS: insGetResponse, Ne: neShort(r.SW2())}
		if r, err = exchangeOnce(t, gr); err != nil {
			return Response{}, err
		}
		data = append(data, r.Data...)
	}
	r.Data = data
	return r, nil
}

func exchangeOnce(t Transport, c Command) (Response, error) {
	b, err := c.Marshal()
	if err != nil {
		return Response{}, err
	}
	out, err := t.Transmit(b)
	if err != nil {
		return Response{}, fmt.Errorf("card: transmit %02X: %w", c.INS, err)
	}
	return ParseResponse(out)
}
