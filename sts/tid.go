package sts

import (
	"fmt"
	"time"
)

// MaxTID is the largest token identifier: 2^24-1 minutes after the base date.
const MaxTID = 1<<24 - 1

// TIDAt returns the TID of an issue time: whole minutes since the base date.
func TIDAt(base BaseDate, t time.Time) (uint32, error) {
	if err := checkBase(base); err != nil {
		return 0, err
	}
	d := t.Sub(base.Time())
	if d < 0 {
		return 0, fmt.Errorf("%w: %s is before base date %d", ErrTIDRange, t.UTC().Format(time.RFC3339), int(base))
	}
	m := int64(d / time.Minute)
	if m > MaxTID {
		return 0, fmt.Errorf("%w: %s is beyond the 2^24 minutes of base date %d", ErrTIDRange, t.UTC().Format(time.RFC3339), int(base))
	}
	return uint32(m), nil
}

// TIDTime returns the start of the minute a TID names.
func TIDTime(base BaseDate, tid uint32) time.Time {
	return base.Time().Add(time.Duration(tid&MaxTID) * time.Minute)
}

// NextTID allocates the TID of a token issued at issued for a meter whose
// last token had TID last (last < 0: none yet). The TID is the issue minute,
// or last+1 if that is not later, moved on by one when it is a reserved
// minute (ReservedTID): a meter rejects a TID it has seen (USED)
// or one older than its memory (OLD), so the TIDs one meter receives must
// strictly increase, even for several tokens in one minute or after a
// vending clock stepped back. Tokens issued in a burst run ahead of the
// clock by one minute each and the sequence catches up when the burst ends.
// ErrTIDRange means the base date's TIDs are exhausted: the meter needs a
// rollover key change to the next base date first.
func NextTID(base BaseDate, last int64, issued time.Time) (uint32, error) {
	tid, err := TIDAt(base, issued)
	if err != nil {
		return 0, err
	}
	if last > MaxTID {
		return 0, fmt.Errorf("%w: last tid %d exceeds 2^24-1", ErrTIDRange, last)
	}
	if last >= 0 && int64(tid) <= last {
		if last == MaxTID {
			return 0, fmt.Errorf("%w: tid sequence of base date %d exhausted", ErrTIDRange, int(base))
		}
		tid = uint32(last + 1)
	}
	if ReservedTID(tid) {
		// Never MaxTID (2^24-1 is minute 1215 of its day), so tid+1 fits.
		tid++
	}
	return tid, nil
}

// ReservedTID reports whether tid falls on minute 00:01 of a day (counted
// from the base date's midnight). Vending never issues such a TID: the STS
// compliance tests (STS 531-1-0-04 CTSA09 step 2) expect a token issued at
// 00:01 to carry 00:02, and two independent implementations skip the same
// minute. The public sources do not say why it is reserved, so the
// Decoder still accepts it from other vendors.
func ReservedTID(tid uint32) bool { return tid%minutesPerDay == 1 }

const minutesPerDay = 24 * 60
