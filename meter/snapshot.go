package meter

import (
	"fmt"
	"strings"
	"time"
)

// Snapshot is the meter's state as telemetry reports it.
type Snapshot struct {
	ID          uint64
	Unit        Unit
	Credit      int64
	Forward     uint64 // litres
	Reverse     uint64 // litres
	Loaded      uint64 // cumulative credit loaded, in Unit
	Status      Status
	Tamper      Tamper
	EventSeq    uint32 // newest event
	VoucherSeq  uint32 // highest voucher sequence number accepted
	Failures    uint16 // consecutive rejected keypad tokens
	LockedUntil time.Time
}

// Snapshot returns the current state for telemetry or a display.
func (m *Meter) Snapshot() Snapshot {
	s := &m.s
	sn := Snapshot{
		ID: s.ID, Unit: s.Params.Unit,
		Credit: s.Core.Credit, Forward: s.Core.Forward, Reverse: s.Core.Reverse, Loaded: s.Core.Loaded,
		Status: s.Core.Status, Tamper: s.Core.Tamper,
		EventSeq: s.EventSeq, VoucherSeq: s.Seq.Max, Failures: s.Failures,
	}
	if s.LockedUntil != 0 {
		sn.LockedUntil = time.Unix(s.LockedUntil, 0).UTC()
	}
	return sn
}

// StatusText is a one-line summary for the display and the emulator.
func (sn Snapshot) StatusText(now time.Time) string {
	var b strings.Builder
	valve := "open"
	if sn.Status&ValveClosed != 0 {
		valve = "closed"
	}
	fmt.Fprintf(&b, "valve %s", valve)
	if sn.Status&Emergency != 0 {
		b.WriteString(", emergency")
	}
	if sn.Status&LowCredit != 0 {
		b.WriteString(", low credit")
	}
	if sn.Tamper != 0 {
		fmt.Fprintf(&b, ", tamper %s", sn.Tamper)
	}
	if now.Before(sn.LockedUntil) {
		fmt.Fprintf(&b, ", keypad locked %s", sn.LockedUntil.Sub(now).Round(time.Second))
	}
	return b.String()
}

func (t Tamper) String() string {
	var names []string
	for i, n := range []string{"magnet", "cover", "reverse-flow", "card-port", "low-battery"} {
		if t&(1<<i) != 0 {
			names = append(names, n)
		}
	}
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, "+")
}

// Events returns the events with sequence numbers above since, oldest
// first. The log keeps MaxEvents; a reader that fell further behind sees a
// gap in the sequence numbers.
func (m *Meter) Events(since uint32) []Event {
	var out []Event
	for _, e := range m.s.Events {
		if e.Seq > since {
			out = append(out, e)
		}
	}
	return out
}

// Dump reads the whole storage, as an attacker with a debug probe would.
func Dump(st Storage) ([]byte, error) {
	img := make([]byte, st.Size())
	if err := st.ReadAt(img, 0); err != nil {
		return nil, fmt.Errorf("meter: dump: %w", err)
	}
	return img, nil
}

// Image is what a storage dump holds, decoded.
type Image struct {
	Seq    uint32 // journal sequence number of the current record
	ID     uint64
	Params Params
	Keys   Keys
	Tokens []byte // STS decoder state (holds the decoder key)
	// Device is the meter's own provisioning key pairs (package
	// provision's device file), empty for a meter set up by Format.
	Device      []byte
	Ready       bool
	ProvCounter uint32
	Snapshot
}

// ParseImage decodes the current record of a storage dump taken with Dump.
func ParseImage(img []byte, pageSize int) (Image, error) {
	ee, err := LoadEEPROM(img, pageSize)
	if err != nil {
		return Image{}, err
	}
	m, err := Boot(ee, Deps{})
	if err != nil {
		return Image{}, err
	}
	return Image{Seq: m.j.seq, ID: m.s.ID, Params: m.Params(), Keys: m.s.Keys, Tokens: append([]byte(nil), m.s.Tokens...),
		Device: append([]byte(nil), m.s.Device...), Ready: m.s.Ready, ProvCounter: m.s.ProvCounter, Snapshot: m.Snapshot()}, nil
}
