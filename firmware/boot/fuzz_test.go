package boot

import (
	"bytes"
	"testing"
)

// FuzzDecodeRecord: no state record panics the decoder, and an accepted
// record is consistent and re-encodes to the same bytes.
func FuzzDecodeRecord(f *testing.F) {
	f.Add(encodeRecord(State{Seq: 1, Active: SlotA, Pending: NoSlot, SecurityCounter: 3}))
	f.Add(encodeRecord(State{Seq: 9, Active: SlotB, Pending: SlotA, SecurityCounter: 1 << 31}))
	f.Add(encodeRecord(State{Seq: 4, Active: SlotA, Pending: SlotB, PendingTrial: true, SecurityCounter: 2}))
	f.Add(encodeRecord(State{Seq: 5, Active: SlotB, Pending: NoSlot, Trial: true, SecurityCounter: 2}))
	f.Add(bytes.Repeat([]byte{0xff}, recordSize))
	f.Fuzz(func(t *testing.T, b []byte) {
		st, ok := decodeRecord(b)
		if !ok {
			return
		}
		if st.Active > SlotB || st.Pending == st.Active || (st.Pending != NoSlot && st.Pending > SlotB) ||
			(st.PendingTrial && st.Pending == NoSlot) || (st.Trial && st.Pending != NoSlot) {
			t.Fatalf("inconsistent state accepted: %+v", st)
		}
		if !bytes.Equal(encodeRecord(st), b[:recordSize]) {
			t.Fatalf("record does not re-encode")
		}
	})
}
