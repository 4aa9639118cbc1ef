package meter

import (
	"errors"
	"fmt"
)

// Storage is the meter's non-volatile memory as its firmware sees it: a
// byte-addressable EEPROM written one page at a time. A page write either
// completes or, when power fails during it, leaves that page torn; it never
// touches another page. That last property is all the journal relies on.
type Storage interface {
	// Size is the capacity in bytes; PageSize divides it.
	Size() int
	PageSize() int
	// ReadAt fills p from offset off.
	ReadAt(p []byte, off int) error
	// WritePage programs p at off; [off, off+len(p)) lies within one page.
	WritePage(off int, p []byte) error
}

// ErrPowerLost is returned by a write that the emulated supply cut short.
// The meter halts: what it holds in RAM is gone, and only a new Boot from
// the storage tells what survived.
var ErrPowerLost = errors.New("meter: power lost")

// EEPROM is an emulated serial EEPROM (an AT24C32-like part by default: 4
// KiB in 32-byte pages) with a programmable power cut, so tests can stop the
// supply after any byte the meter writes.
//
// A page write programs its bytes in order. When the supply fails during
// one, the bytes already programmed hold their new value, the byte being
// programmed holds garbage and the rest of the page is left erased (0xFF):
// the harshest outcome a real part allows, harsher than a clean prefix.
type EEPROM struct {
	mem    []byte
	page   int
	writes int // bytes programmed since creation
	budget int // bytes that may still be programmed; <0 means no limit
	dead   bool
}

// DefaultEEPROMSize and DefaultPageSize describe a 32-Kbit serial EEPROM.
const (
	DefaultEEPROMSize = 4096
	DefaultPageSize   = 32
)

// NewEEPROM returns an erased EEPROM of size bytes in pages of page bytes.
func NewEEPROM(size, page int) *EEPROM {
	if page <= 0 || size <= 0 || size%page != 0 {
		panic(fmt.Sprintf("meter: EEPROM size %d is not a multiple of page size %d", size, page))
	}
	m := make([]byte, size)
	for i := range m {
		m[i] = 0xFF
	}
	return &EEPROM{mem: m, page: page, budget: -1}
}

// LoadEEPROM returns an EEPROM holding a copy of image, for example a dump
// taken with Image or read back from a file.
func LoadEEPROM(image []byte, page int) (*EEPROM, error) {
	if page <= 0 || len(image) == 0 || len(image)%page != 0 {
		return nil, fmt.Errorf("meter: EEPROM image of %d bytes is not a whole number of %d-byte pages", len(image), page)
	}
	return &EEPROM{mem: append([]byte(nil), image...), page: page, budget: -1}, nil
}

func (e *EEPROM) Size() int     { return len(e.mem) }
func (e *EEPROM) PageSize() int { return e.page }

func (e *EEPROM) ReadAt(p []byte, off int) error {
	if off < 0 || off+len(p) > len(e.mem) {
		return fmt.Errorf("meter: EEPROM read [%d,%d) out of range", off, off+len(p))
	}
	copy(p, e.mem[off:])
	return nil
}

func (e *EEPROM) WritePage(off int, p []byte) error {
	if e.dead {
		return ErrPowerLost
	}
	if off < 0 || off+len(p) > len(e.mem) || (len(p) > 0 && off/e.page != (off+len(p)-1)/e.page) {
		return fmt.Errorf("meter: EEPROM page write [%d,%d) crosses a page or the end", off, off+len(p))
	}
	for i, b := range p {
		if e.budget == 0 {
			e.dead = true
			e.mem[off+i] = ^b ^ 0x5A // neither old nor new
			for j := off + i + 1; j < (off/e.page+1)*e.page; j++ {
				e.mem[j] = 0xFF
			}
			return ErrPowerLost
		}
		e.mem[off+i] = b
		e.writes++
		if e.budget > 0 {
			e.budget--
		}
	}
	return nil
}

// CutPowerAfter arms the supply to fail when n more bytes have been
// programmed: the (n+1)th byte write tears its page.
func (e *EEPROM) CutPowerAfter(n int) { e.budget = n }

// PowerOn restores the supply and disarms any cut.
func (e *EEPROM) PowerOn() { e.dead, e.budget = false, -1 }

// Writes is the number of bytes programmed so far, the unit in which
// CutPowerAfter counts.
func (e *EEPROM) Writes() int { return e.writes }

// Image returns a copy of the whole memory, as a readout through the debug
// port would.
func (e *EEPROM) Image() []byte { return append([]byte(nil), e.mem...) }
