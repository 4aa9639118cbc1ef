package boot

import (
	"errors"
	"fmt"
)

// ErrPowerLost is returned by MemFlash for every operation after a cut.
var ErrPowerLost = errors.New("power lost")

// MemFlash is a NOR-like flash in memory for the meter emulator and the
// power-cut tests: Erase sets an area to 0xff, Write can only clear bits
// (it ANDs), and CutPower makes a chosen operation tear and every later one
// fail, as a power cut would. A torn operation completes a prefix of its
// bytes, leaves garbage in the byte after it and does not reach the rest.
type MemFlash struct {
	areas [4][]byte
	ops   int // Write and Erase operations done
	cutAt int // operation index that tears; -1 for none
	done  int // bytes that operation completes; <0 means half
	dead  bool
}

// NewMemFlash returns an erased flash with two slots of slotSize bytes and
// two state areas of stateSize bytes.
func NewMemFlash(slotSize, stateSize int) *MemFlash {
	m := &MemFlash{cutAt: -1}
	for i, n := range []int{slotSize, slotSize, stateSize, stateSize} {
		m.areas[i] = make([]byte, n)
		for j := range m.areas[i] {
			m.areas[i][j] = 0xff
		}
	}
	return m
}

// Clone returns an independent copy of the flash contents, powered.
func (m *MemFlash) Clone() *MemFlash {
	c := &MemFlash{cutAt: -1}
	for i := range m.areas {
		c.areas[i] = append([]byte(nil), m.areas[i]...)
	}
	return c
}

// CutPowerAfter arranges that the n-th next Write or Erase (0 = the next
// one) is torn half-way and everything after it fails with ErrPowerLost.
func (m *MemFlash) CutPowerAfter(n int) { m.CutPower(n, -1) }

// CutPower is CutPowerAfter with the tear point chosen: the torn operation
// completes its first done bytes (clamped to all but the last; <0 means
// half) and garbles the next one.
func (m *MemFlash) CutPower(n, done int) { m.cutAt, m.done = m.ops+n, done }

// Restore brings power back (the flash keeps what was written).
func (m *MemFlash) Restore() { m.dead, m.cutAt = false, -1 }

// Ops is the number of Write and Erase operations performed so far.
func (m *MemFlash) Ops() int { return m.ops }

func (m *MemFlash) area(a Area) ([]byte, error) {
	if int(a) >= len(m.areas) {
		return nil, fmt.Errorf("memflash: no area %v", a)
	}
	return m.areas[a], nil
}

func (m *MemFlash) Size(a Area) int {
	b, _ := m.area(a)
	return len(b)
}

func (m *MemFlash) Read(a Area, off int, p []byte) error {
	if m.dead {
		return ErrPowerLost
	}
	b, err := m.area(a)
	if err != nil {
		return err
	}
	if off < 0 || off+len(p) > len(b) {
		return fmt.Errorf("memflash: read %v [%d, %d) outside %d bytes", a, off, off+len(p), len(b))
	}
	copy(p, b[off:])
	return nil
}

// tick counts an operation and reports whether it is the one that tears.
func (m *MemFlash) tick() (torn bool, err error) {
	if m.dead {
		return false, ErrPowerLost
	}
	torn = m.ops == m.cutAt
	m.ops++
	if torn {
		m.dead = true
	}
	return torn, nil
}

func (m *MemFlash) Write(a Area, off int, p []byte) error {
	b, err := m.area(a)
	if err != nil {
		return err
	}
	if off < 0 || off+len(p) > len(b) {
		return fmt.Errorf("memflash: write %v [%d, %d) outside %d bytes", a, off, off+len(p), len(b))
	}
	torn, err := m.tick()
	if err != nil {
		return err
	}
	n := len(p)
	if torn {
		n = m.tearPoint(len(p))
	}
	for i := 0; i < n; i++ {
		b[off+i] &= p[i]
	}
	if torn {
		if n < len(p) {
			b[off+n] &= p[n] ^ 0xa5 // half-programmed cell
		}
		return ErrPowerLost
	}
	return nil
}

// tearPoint is how many of size bytes a torn operation completes.
func (m *MemFlash) tearPoint(size int) int {
	switch {
	case size == 0:
		return 0
	case m.done < 0:
		return size / 2
	case m.done >= size:
		return size - 1
	}
	return m.done
}

func (m *MemFlash) Erase(a Area) error {
	b, err := m.area(a)
	if err != nil {
		return err
	}
	torn, err := m.tick()
	if err != nil {
		return err
	}
	n := len(b)
	if torn {
		n = m.tearPoint(len(b))
	}
	for i := 0; i < n; i++ {
		b[i] = 0xff
	}
	if torn {
		if n < len(b) {
			b[n] ^= 0x5a // half-erased cell
		}
		return ErrPowerLost
	}
	return nil
}

// Corrupt flips a byte of an area, as a flash fault or an attacker with a
// programmer would (for tests of the fallback logic).
func (m *MemFlash) Corrupt(a Area, off int) { m.areas[a][off] ^= 0xff }

// Raw gives direct access to an area, as an attacker with a programmer has.
func (m *MemFlash) Raw(a Area) []byte { return m.areas[a] }
