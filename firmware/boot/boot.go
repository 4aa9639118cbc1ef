// Package boot is the reference meter's bootloader logic: two image slots
// (A and B) and a small persistent boot state, over a minimal flash
// interface, with no I/O of its own, no clock and no goroutines.
//
// An update is installed into the inactive slot, read back and verified,
// and only then marked pending. At the next boot the pending image is
// verified again and, if its security counter is not lower than the stored
// one, becomes the active image and raises the stored counter. Every step
// of an update is safe against a power cut:
//
//   - the image is written only into the inactive slot, so the active image
//     is never touched;
//   - the boot state is kept in two records in two erase areas, each with a
//     sequence number and a CRC-32; a new record always overwrites the older
//     one, so a torn write leaves the previous record intact, and the newest
//     record that checks out is the state;
//   - a slot is never booted on the state's word alone: its image is
//     verified (hash, key hash, signature, counter) at every boot.
//
// Anti-rollback: an image whose security counter is lower than the stored
// one is refused at install, at boot and as a fallback. If the active image
// is damaged and the other slot holds an older counter, the meter stays
// down rather than run the older firmware.
package boot

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"

	"sluice/firmware"
)

// Area names an erase area of the meter's flash.
type Area uint8

const (
	SlotA  Area = 0
	SlotB  Area = 1
	State0 Area = 2 // first copy of the boot state
	State1 Area = 3 // second copy
	NoSlot Area = 0xff
)

func (a Area) String() string {
	switch a {
	case SlotA:
		return "A"
	case SlotB:
		return "B"
	case State0:
		return "state0"
	case State1:
		return "state1"
	case NoSlot:
		return "none"
	}
	return fmt.Sprintf("area(%d)", uint8(a))
}

// Flash is what the boot logic needs of the meter's flash: four areas
// (SlotA, SlotB, State0, State1), each erased as a whole to 0xff and
// programmed with Write. A Write or Erase interrupted by a power cut may
// leave its area in any state; the others are untouched.
type Flash interface {
	Size(a Area) int
	Read(a Area, off int, p []byte) error
	Write(a Area, off int, p []byte) error
	Erase(a Area) error
}

// Errors callers branch on.
var (
	ErrDowngrade    = errors.New("security counter lower than the stored one")
	ErrTooLarge     = errors.New("image larger than the slot")
	ErrNoBootable   = errors.New("no bootable image")
	ErrVerifyFailed = errors.New("written image does not verify")
	ErrTrial        = errors.New("the running image is on trial: confirm it or reboot to revert first")
)

// State is the persistent boot state.
type State struct {
	Seq             uint32 // increases with every record written
	Active          Area   // slot that runs
	Pending         Area   // slot to try at next boot, or NoSlot
	PendingTrial    bool   // the pending image is to run on trial (InstallTrial)
	Trial           bool   // the active image runs on trial: not confirmed yet
	SecurityCounter uint32 // lowest counter an image may carry
}

// Booted is the outcome of Boot.
type Booted struct {
	Slot     Area
	Image    *firmware.Image // verified
	Updated  bool            // a pending image was activated by this boot
	Trial    bool            // the image runs on trial: Confirm it after a self-test
	Reverted bool            // an unconfirmed trial image was abandoned for the previous one
}

// Loader runs the boot logic over a flash with a firmware verifier.
type Loader struct {
	flash    Flash
	verifier *firmware.Verifier
}

// New returns a Loader over flash trusting the images v verifies.
func New(flash Flash, v *firmware.Verifier) *Loader {
	return &Loader{flash: flash, verifier: v}
}

// writeChunk is the size of one flash program operation of an image.
const writeChunk = 256

// State returns the newest valid boot state; a blank flash reads as slot A
// active, nothing pending, counter 0.
func (l *Loader) State() (State, error) {
	st, _, err := l.state()
	return st, err
}

// state also returns the area holding the newest record (NoSlot if none).
func (l *Loader) state() (State, Area, error) {
	best, where := State{Active: SlotA, Pending: NoSlot}, NoSlot
	for _, a := range []Area{State0, State1} {
		var rec [recordSize]byte
		if err := l.flash.Read(a, 0, rec[:]); err != nil {
			return State{}, NoSlot, fmt.Errorf("boot: read %v: %w", a, err)
		}
		st, ok := decodeRecord(rec[:])
		if ok && (where == NoSlot || st.Seq > best.Seq) {
			best, where = st, a
		}
	}
	return best, where, nil
}

// setState writes st as the next record, over the older copy.
func (l *Loader) setState(st State) (State, error) {
	cur, where, err := l.state()
	if err != nil {
		return State{}, err
	}
	target := State0
	if where == State0 {
		target = State1
	}
	st.Seq = cur.Seq + 1
	if err := l.flash.Erase(target); err != nil {
		return State{}, fmt.Errorf("boot: erase %v: %w", target, err)
	}
	if err := l.flash.Write(target, 0, encodeRecord(st)); err != nil {
		return State{}, fmt.Errorf("boot: write %v: %w", target, err)
	}
	return st, nil
}

// Install verifies image, writes it into the inactive slot, reads it back,
// verifies it again and marks it pending. It refuses an image whose counter
// is lower than the stored one before writing anything. The next Boot
// makes it the active image for good and raises the stored counter.
func (l *Loader) Install(image []byte) (*firmware.Image, error) { return l.install(image, false) }

// InstallTrial is Install for an image that must prove itself: the next
// Boot runs it on trial, without raising the stored counter; the firmware
// calls Confirm once its self-test passes, and any boot before that reverts
// to the previous image (as MCUboot's "test" upgrade does).
func (l *Loader) InstallTrial(image []byte) (*firmware.Image, error) { return l.install(image, true) }

func (l *Loader) install(image []byte, trial bool) (*firmware.Image, error) {
	im, err := l.verifier.Verify(image)
	if err != nil {
		return nil, fmt.Errorf("boot: install: %w", err)
	}
	st, err := l.State()
	if err != nil {
		return nil, err
	}
	if im.SecurityCounter < st.SecurityCounter {
		return nil, fmt.Errorf("boot: install: %w: image %d, stored %d", ErrDowngrade, im.SecurityCounter, st.SecurityCounter)
	}
	if st.Trial {
		// The inactive slot holds the image a revert goes back to.
		return nil, fmt.Errorf("boot: install: %w", ErrTrial)
	}
	target := other(st.Active)
	if len(image) > l.flash.Size(target) {
		return nil, fmt.Errorf("boot: install: %w: %d bytes, slot %v holds %d", ErrTooLarge, len(image), target, l.flash.Size(target))
	}
	if st.Pending != NoSlot {
		// Withdraw the old pending mark before its slot is erased.
		st.Pending, st.PendingTrial = NoSlot, false
		if st, err = l.setState(st); err != nil {
			return nil, err
		}
	}
	if err := l.flash.Erase(target); err != nil {
		return nil, fmt.Errorf("boot: erase slot %v: %w", target, err)
	}
	for off := 0; off < len(image); off += writeChunk {
		end := min(off+writeChunk, len(image))
		if err := l.flash.Write(target, off, image[off:end]); err != nil {
			return nil, fmt.Errorf("boot: write slot %v at %d: %w", target, off, err)
		}
	}
	written, err := l.verifySlot(target, st.SecurityCounter)
	if err != nil {
		return nil, fmt.Errorf("boot: install: %w: %w", ErrVerifyFailed, err)
	}
	st.Pending, st.PendingTrial = target, trial
	if _, err := l.setState(st); err != nil {
		return nil, err
	}
	return written, nil
}

// Confirm ends the trial of the running image: it becomes the active image
// for good and the stored counter rises to its counter. Without a trial
// running it does nothing.
func (l *Loader) Confirm() error {
	st, err := l.State()
	if err != nil || !st.Trial {
		return err
	}
	im, err := l.verifySlot(st.Active, st.SecurityCounter)
	if err != nil {
		return fmt.Errorf("boot: confirm: %w", err)
	}
	_, err = l.setState(State{Active: st.Active, Pending: NoSlot, SecurityCounter: max(st.SecurityCounter, im.SecurityCounter)})
	return err
}

// Boot decides which slot runs: after an unconfirmed trial, the previous
// image; else the pending image if it verifies and is not a downgrade (it
// becomes active and, unless on trial, raises the stored counter); else the
// active image; else the other slot under the same conditions. It returns
// ErrNoBootable rather than run an unverified or older image.
func (l *Loader) Boot() (Booted, error) {
	st, err := l.State()
	if err != nil {
		return Booted{}, err
	}
	if st.Trial {
		// The trial image was booted and not confirmed: it crashed or
		// failed its self-test. Go back to the image before it.
		prev := other(st.Active)
		if im, err := l.verifySlot(prev, st.SecurityCounter); err == nil {
			if _, err := l.setState(State{Active: prev, Pending: NoSlot, SecurityCounter: st.SecurityCounter}); err != nil {
				return Booted{}, err
			}
			return Booted{Slot: prev, Image: im, Reverted: true}, nil
		}
		// Nothing to go back to: the trial image stays, still on trial.
	}
	if p := st.Pending; p != NoSlot {
		im, err := l.verifySlot(p, st.SecurityCounter)
		if err == nil {
			next := State{Active: p, Pending: NoSlot, Trial: st.PendingTrial, SecurityCounter: st.SecurityCounter}
			if !st.PendingTrial {
				next.SecurityCounter = max(st.SecurityCounter, im.SecurityCounter)
			}
			if _, err := l.setState(next); err != nil {
				return Booted{}, err
			}
			return Booted{Slot: p, Image: im, Updated: true, Trial: next.Trial}, nil
		}
		// A pending image that fails now is dropped, never retried.
		st.Pending, st.PendingTrial = NoSlot, false
		if st, err = l.setState(st); err != nil {
			return Booted{}, err
		}
	}
	for _, s := range []Area{st.Active, other(st.Active)} {
		im, err := l.verifySlot(s, st.SecurityCounter)
		if err != nil {
			continue
		}
		if s == st.Active && st.Trial {
			return Booted{Slot: s, Image: im, Trial: true}, nil
		}
		if s != st.Active || im.SecurityCounter > st.SecurityCounter {
			next := State{Active: s, Pending: NoSlot, SecurityCounter: max(st.SecurityCounter, im.SecurityCounter)}
			if _, err := l.setState(next); err != nil {
				return Booted{}, err
			}
		}
		return Booted{Slot: s, Image: im}, nil
	}
	return Booted{}, fmt.Errorf("boot: %w: neither slot holds a verified image with security counter >= %d", ErrNoBootable, st.SecurityCounter)
}

// verifySlot reads slot s and verifies the image at its start.
func (l *Loader) verifySlot(s Area, minCounter uint32) (*firmware.Image, error) {
	buf := make([]byte, l.flash.Size(s))
	if err := l.flash.Read(s, 0, buf); err != nil {
		return nil, fmt.Errorf("read slot %v: %w", s, err)
	}
	im, err := l.verifier.VerifySlot(buf)
	if err != nil {
		return nil, fmt.Errorf("slot %v: %w", s, err)
	}
	if im.SecurityCounter < minCounter {
		return nil, fmt.Errorf("slot %v: %w: image %d, stored %d", s, ErrDowngrade, im.SecurityCounter, minCounter)
	}
	return im, nil
}

func other(s Area) Area {
	if s == SlotA {
		return SlotB
	}
	return SlotA
}

// The boot state record, little endian:
//
//	0  4  magic "SLBS"
//	4  4  sequence number
//	8  1  active slot (0 = A, 1 = B)
//	9  1  pending slot (0, 1, or 0xff = none)
//	10 1  flags: bit 0 pending image on trial, bit 1 active image on trial
//	11 1  reserved, zero
//	12 4  security counter
//	16 4  CRC-32 (IEEE) of bytes 0..15
const recordSize = 20

var recordMagic = [4]byte{'S', 'L', 'B', 'S'}

const (
	flagPendingTrial = 1 << 0
	flagTrial        = 1 << 1
)

func encodeRecord(st State) []byte {
	le := binary.LittleEndian
	b := make([]byte, recordSize)
	copy(b, recordMagic[:])
	le.PutUint32(b[4:], st.Seq)
	b[8], b[9] = byte(st.Active), byte(st.Pending)
	if st.PendingTrial {
		b[10] |= flagPendingTrial
	}
	if st.Trial {
		b[10] |= flagTrial
	}
	le.PutUint32(b[12:], st.SecurityCounter)
	le.PutUint32(b[16:], crc32.ChecksumIEEE(b[:16]))
	return b
}

func decodeRecord(b []byte) (State, bool) {
	le := binary.LittleEndian
	if len(b) < recordSize || [4]byte(b[:4]) != recordMagic || le.Uint32(b[16:]) != crc32.ChecksumIEEE(b[:16]) {
		return State{}, false
	}
	st := State{Seq: le.Uint32(b[4:]), Active: Area(b[8]), Pending: Area(b[9]), SecurityCounter: le.Uint32(b[12:]),
		PendingTrial: b[10]&flagPendingTrial != 0, Trial: b[10]&flagTrial != 0}
	if st.Active > SlotB || (st.Pending > SlotB && st.Pending != NoSlot) || st.Pending == st.Active ||
		b[10]&^(flagPendingTrial|flagTrial) != 0 || b[11] != 0 ||
		(st.PendingTrial && st.Pending == NoSlot) || (st.Trial && st.Pending != NoSlot) {
		return State{}, false
	}
	return st, true
}
