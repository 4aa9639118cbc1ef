// Package replay is the head-end's per-meter replay check for telemetry
// frames: a value type holding the highest frame counter accepted, a bitmap
// of the Size counters below it and the tag of the frame at the highest.
//
// MQTT delivers QoS 1 messages at least once, so the same frame arrives
// twice whenever an acknowledgement is lost; an attacker on the path can
// also re-send captured frames. Neither may count twice. A frame whose MAC
// verified (package frame) is then classified:
//
//   - New: its counter was never accepted: store it, then Accept.
//   - Duplicate: its counter was accepted before: a retransmission (or a
//     replay of the identical bytes, which is the same thing): acknowledge
//     it and store nothing new.
//   - Reused: its counter is the highest accepted but its tag differs: the
//     meter sent two different frames under one counter, which only a
//     holder of its key can do (a cloned meter, or a counter rolled back by
//     a faulty restore). Reject, count, alert.
//   - TooOld: below the window, so it can no longer be judged. Reject and
//     count.
//
// Only the highest counter's tag is kept, to hold the state at 20 bytes
// per meter. For a repeated counter below the highest the window reports
// Duplicate; the store, which keeps each frame's tag under (meter, counter),
// is what tells a true retransmission from a reuse there.
//
// The package is pure: Check and Accept compute; the caller persists the
// Window it gets back in the same transaction as the frame.
package replay

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Size is how many counters below the highest the window remembers.
const Size = 64

// TagSize is the length of a frame tag (package frame).
const TagSize = 8

// Verdict is the classification of one frame.
type Verdict uint8

const (
	New Verdict = 1 + iota
	Duplicate
	Reused
	TooOld
)

func (v Verdict) String() string {
	switch v {
	case New:
		return "new"
	case Duplicate:
		return "duplicate"
	case Reused:
		return "reused"
	case TooOld:
		return "too-old"
	}
	return fmt.Sprintf("verdict(%d)", uint8(v))
}

// Window is one meter's replay state. The zero Window has accepted nothing.
type Window struct {
	Highest uint32        // highest counter accepted; 0 = none yet (counters start at 1)
	Seen    uint64        // bit i set: counter Highest-i was accepted; bit 0 is Highest
	Tag     [TagSize]byte // tag of the frame accepted at Highest
}

// Check classifies a verified frame with the given counter and tag without
// changing the window.
func (w Window) Check(counter uint32, tag [TagSize]byte) Verdict {
	switch {
	case counter == 0:
		return TooOld
	case w.Highest == 0 || counter > w.Highest:
		return New
	}
	d := w.Highest - counter
	switch {
	case d >= Size:
		return TooOld
	case w.Seen&(1<<d) == 0:
		return New // arrived late, still inside the window
	case d == 0 && tag != w.Tag:
		return Reused
	}
	return Duplicate
}

// Accept returns the window after accepting a frame Check classified as
// New. For any other frame it returns w unchanged, so a caller cannot
// corrupt the state by accepting what it should have refused.
func (w Window) Accept(counter uint32, tag [TagSize]byte) Window {
	if w.Check(counter, tag) != New {
		return w
	}
	return w.accept(counter, tag)
}

func (w Window) accept(counter uint32, tag [TagSize]byte) Window {
	if w.Highest == 0 || counter > w.Highest {
		shift := uint64(counter) - uint64(w.Highest)
		if w.Highest == 0 || shift >= Size {
			w.Seen = 1
		} else {
			w.Seen = w.Seen<<shift | 1
		}
		w.Highest, w.Tag = counter, tag
		return w
	}
	w.Seen |= 1 << (w.Highest - counter)
	return w
}

// Observe is Check followed by Accept: the verdict and the window to store.
func (w Window) Observe(counter uint32, tag [TagSize]byte) (Verdict, Window) {
	v := w.Check(counter, tag)
	if v == New {
		w = w.accept(counter, tag)
	}
	return v, w
}

// MarshalSize is the length of a marshalled Window.
const MarshalSize = 4 + 8 + TagSize

// ErrState reports a stored window that cannot be valid.
var ErrState = errors.New("replay: invalid stored window")

// MarshalBinary encodes the window for storage: Highest, Seen (big-endian),
// Tag.
func (w Window) MarshalBinary() ([]byte, error) {
	b := make([]byte, 0, MarshalSize)
	b = binary.BigEndian.AppendUint32(b, w.Highest)
	b = binary.BigEndian.AppendUint64(b, w.Seen)
	return append(b, w.Tag[:]...), nil
}

// UnmarshalBinary decodes a stored window, refusing one no sequence of
// Accepts could have produced.
func (w *Window) UnmarshalBinary(b []byte) error {
	if len(b) != MarshalSize {
		return fmt.Errorf("%w: %d bytes, want %d", ErrState, len(b), MarshalSize)
	}
	v := Window{Highest: binary.BigEndian.Uint32(b), Seen: binary.BigEndian.Uint64(b[4:])}
	copy(v.Tag[:], b[12:])
	if v.Highest == 0 && (v.Seen != 0 || v.Tag != [TagSize]byte{}) {
		return fmt.Errorf("%w: nothing accepted but bits or tag set", ErrState)
	}
	if v.Highest != 0 && v.Seen&1 == 0 {
		return fmt.Errorf("%w: highest counter %d not marked seen", ErrState, v.Highest)
	}
	if uint64(v.Highest) < Size && v.Seen>>v.Highest != 0 {
		return fmt.Errorf("%w: bits set below counter 1", ErrState)
	}
	*w = v
	return nil
}
