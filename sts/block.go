package sts

import "fmt"

// Token classes.
const (
	ClassCredit     uint8 = 0 // transfer credit, encrypted, meter specific
	ClassTest       uint8 = 1 // test and display, not encrypted, any meter
	ClassManagement uint8 = 2 // meter specific management, encrypted
)

// Class 0 subclasses: unit credit in 0.1 units, currency credit in the
// currency's smallest unit.
const (
	SubElectricity         uint8 = 0
	SubWater               uint8 = 1
	SubGas                 uint8 = 2
	SubTime                uint8 = 3
	SubElectricityCurrency uint8 = 4
	SubWaterCurrency       uint8 = 5
	SubGasCurrency         uint8 = 6
	SubTimeCurrency        uint8 = 7
)

// Class 2 subclasses.
const (
	SubSetMaxPowerLimit    uint8 = 0
	SubClearCredit         uint8 = 1
	SubSetTariffRate       uint8 = 2
	SubKeyChange1          uint8 = 3 // decoder key section 1 (key bits 127..96, or 63..32 of a 64-bit key)
	SubKeyChange2          uint8 = 4 // section 2 (key bits 31..0)
	SubClearTamper         uint8 = 5
	SubSetPhaseUnbalance   uint8 = 6
	SubSetWaterMeterFactor uint8 = 7
	SubKeyChange3          uint8 = 8 // section 3 (key bits 95..64), 128-bit keys only
	SubKeyChange4          uint8 = 9 // section 4 (key bits 63..32), 128-bit keys only
)

// Class 1 subclasses.
const (
	SubTest2Digit uint8 = 0 // control (36 bits) | manufacturer code (8 bits)
	SubTest4Digit uint8 = 1 // control (28 bits) | manufacturer code (16 bits)
)

const payloadMask = 1<<44 - 1

// Plain is a token's content before encryption: class, subclass and the 44
// bits between subclass and CRC. The 64-bit block is subclass (4) |
// payload (44) | CRC (16).
type Plain struct {
	Class, Subclass uint8
	Payload         uint64 // 44 bits
}

// TIDPlain builds the layout of credit and TID-bearing management tokens:
// RND (4) | TID (24) | amount or value field (16).
func TIDPlain(class, subclass, rnd uint8, tid uint32, field uint16) (Plain, error) {
	if rnd > 15 {
		return Plain{}, fmt.Errorf("%w: rnd %d is not 0..15", ErrFormat, rnd)
	}
	if tid > MaxTID {
		return Plain{}, fmt.Errorf("%w: tid %d exceeds 2^24-1", ErrFormat, tid)
	}
	p := Plain{Class: class, Subclass: subclass, Payload: uint64(rnd)<<40 | uint64(tid)<<16 | uint64(field)}
	return p, p.check()
}

// RND returns the random nibble of the TID-bearing layout.
func (p Plain) RND() uint8 { return uint8(p.Payload>>40) & 0xF }

// TID returns the token identifier of the TID-bearing layout.
func (p Plain) TID() uint32 { return uint32(p.Payload>>16) & MaxTID }

// Field returns the 16-bit amount or value field of the TID-bearing layout.
func (p Plain) Field() uint16 { return uint16(p.Payload) }

// HasTID reports whether p uses the TID-bearing layout (RND | TID | field).
func (p Plain) HasTID() bool { return hasTID(p.Class, p.Subclass) }

func (p Plain) block() uint64   { return uint64(p.Subclass)<<60 | p.Payload<<16 | uint64(p.crc()) }
func (p Plain) crc() uint16     { return blockCRC(p.Class, p.Subclass, p.Payload) }
func (p Plain) encrypted() bool { return p.Class != ClassTest }

// hasTID reports whether the layout carries RND | TID | field: credit
// tokens and the management tokens that are not key change sections.
func hasTID(class, subclass uint8) bool {
	switch class {
	case ClassCredit:
		return true
	case ClassManagement:
		return !isKeyChange(subclass)
	}
	return false
}

func isKeyChange(subclass uint8) bool {
	switch subclass {
	case SubKeyChange1, SubKeyChange2, SubKeyChange3, SubKeyChange4:
		return true
	}
	return false
}

// check rejects reserved classes and subclasses.
func (p Plain) check() error {
	if p.Payload > payloadMask {
		return fmt.Errorf("%w: payload exceeds 44 bits", ErrFormat)
	}
	switch p.Class {
	case ClassCredit:
		if p.Subclass > SubTimeCurrency {
			return fmt.Errorf("%w: class 0 subclass %d is reserved", ErrUnsupported, p.Subclass)
		}
	case ClassTest:
		if p.Subclass > SubTest4Digit {
			return fmt.Errorf("%w: class 1 subclass %d is not supported", ErrUnsupported, p.Subclass)
		}
	case ClassManagement:
		if p.Subclass > SubKeyChange4 {
			return fmt.Errorf("%w: class 2 subclass %d is reserved", ErrUnsupported, p.Subclass)
		}
	default:
		return fmt.Errorf("%w: class %d is reserved", ErrUnsupported, p.Class)
	}
	return nil
}

// openBlock splits a decrypted block and checks its CRC.
func openBlock(class uint8, b uint64) (Plain, error) {
	p := Plain{Class: class, Subclass: uint8(b >> 60), Payload: b >> 16 & payloadMask}
	if p.crc() != uint16(b) {
		return p, fmt.Errorf("%w: class %d block fails its CRC (wrong meter, wrong key or mistyped)", ErrCRC, class)
	}
	return p, nil
}

// TestToken builds a class 1 test or display token. It is not encrypted and
// works on any meter: control selects the tests, mfr is the manufacturer
// code (2 digits for subclass 0, 4 digits for subclass 1).
func TestToken(subclass uint8, control uint64, mfr uint16) (Token, error) {
	var p Plain
	switch subclass {
	case SubTest2Digit:
		if control >= 1<<36 || mfr > 99 {
			return Token{}, fmt.Errorf("%w: control exceeds 36 bits or mfr code exceeds 2 digits", ErrFormat)
		}
		p = Plain{ClassTest, subclass, control<<8 | uint64(mfr)}
	case SubTest4Digit:
		if control >= 1<<28 || mfr > 9999 {
			return Token{}, fmt.Errorf("%w: control exceeds 28 bits or mfr code exceeds 4 digits", ErrFormat)
		}
		p = Plain{ClassTest, subclass, control<<16 | uint64(mfr)}
	default:
		return Token{}, fmt.Errorf("%w: class 1 subclass %d", ErrUnsupported, subclass)
	}
	return transpose(ClassTest, p.block()), nil
}

// TestFields splits a class 1 payload into control and manufacturer code.
func (p Plain) TestFields() (control uint64, mfr uint16) {
	if p.Subclass == SubTest2Digit {
		return p.Payload >> 8, uint16(p.Payload & 0xFF)
	}
	return p.Payload >> 16, uint16(p.Payload)
}
