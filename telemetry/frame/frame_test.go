package frame

import (
	"encoding/hex"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"sluice/cmac"
)

var update = flag.Bool("update", false, "rewrite the good_* and fail_* files in testdata")

var (
	testKey = mustHex("000102030405060708090a0b0c0d0e0f")
	t0      = time.Date(2026, 11, 25, 8, 0, 0, 0, time.UTC)
)

func mustHex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

func key(t testing.TB) *Key {
	k, err := NewKey(testKey)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// goodFrames are the frames of the good_* files.
func goodFrames() map[string]*Frame {
	return map[string]*Frame{
		"good_reading.hex": {Kind: KindReading, Meter: 4710001, Counter: 1, Time: t0, Reading: Reading{
			Forward: 123456, Reverse: 12, Credit: 8500, Loaded: 20000, Unit: UnitLitres, Status: 0}},
		"good_reading_intervals.hex": {Kind: KindReading, Meter: 4710001, Counter: 2, Time: t0.Add(time.Hour), Reading: Reading{
			Forward: 123530, Reverse: 12, Credit: -150, Loaded: 20000, Unit: UnitLitres,
			Status:   ValveClosed | ClosedCredit | Emergency | LowCredit | TamperMagnet,
			Interval: 15 * time.Minute, Intervals: []uint32{10, 0, 60, 4}}},
		"good_reading_currency.hex": {Kind: KindReading, Meter: 99, Counter: 4294967295, Time: t0, Reading: Reading{
			Forward: 1, Credit: 1_500_00, Loaded: 5_000_00, Unit: UnitMinor, Status: TamperCover | ReverseFlow | TamperCard | LowBattery}},
		"good_event.hex": {Kind: KindEvent, Meter: 4710001, Counter: 3, Time: t0, Events: []Event{
			{Kind: 9, Reason: 0, Time: t0.Add(-time.Minute), Value: 1}}},
		"good_events.hex": {Kind: KindEvent, Meter: 4710001, Counter: 4, Time: t0, Events: []Event{
			{Kind: 2, Reason: 2, Time: t0.Add(-3 * time.Minute)},
			{Kind: 2, Reason: 2, Time: t0.Add(-2 * time.Minute)},
			{Kind: 13, Reason: 0, Time: t0.Add(-time.Minute), Value: 900}}},
		"good_ack_voucher.hex": {Kind: KindAck, Meter: 4710001, Counter: 5, Time: t0, Ack: Ack{
			Subject: SubjectVoucher, Result: Accepted, Ref: 17, Amount: 5000, Credit: 13500, Loaded: 25000}},
		"good_ack_token_rejected.hex": {Kind: KindAck, Meter: 4710001, Counter: 6, Time: t0, Ack: Ack{
			Subject: SubjectToken, Result: Rejected, Reason: 2, Ref: 16_000_000, Credit: 13500, Loaded: 25000}},
		"good_ack_duplicate.hex": {Kind: KindAck, Meter: 4710001, Counter: 7, Time: t0, Ack: Ack{
			Subject: SubjectVoucher, Result: Duplicate, Ref: 17, Credit: 13500, Loaded: 25000}},
	}
}

// failFrames are the fail_* files and the error each must give.
func failFrames(t testing.TB) map[string]struct {
	b    []byte
	want error
} {
	k := key(t)
	seal := func(f *Frame) []byte {
		b, err := Seal(nil, k, f)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	// reseal recomputes the tag after a deliberate change, so the frame
	// fails on its content and not on the MAC.
	reseal := func(b []byte, edit func([]byte) []byte) []byte {
		b = edit(append([]byte(nil), b[:len(b)-TagSize]...))
		tg := k.tag(b)
		return append(b, tg[:]...)
	}
	g := goodFrames()
	r := seal(g["good_reading.hex"])
	ri := seal(g["good_reading_intervals.hex"])
	ev := seal(g["good_events.hex"])
	ack := seal(g["good_ack_voucher.hex"])
	flip := func(b []byte, i int) []byte { b = append([]byte(nil), b...); b[i] ^= 1; return b }
	type fc = struct {
		b    []byte
		want error
	}
	return map[string]fc{
		"fail_mac_flipped_tag.hex":         {flip(r, len(r)-1), ErrMAC},
		"fail_mac_flipped_body.hex":        {flip(r, HeaderSize+3), ErrMAC},
		"fail_mac_other_meter.hex":         {flip(r, 9), ErrMAC},
		"fail_mac_counter_changed.hex":     {flip(r, 13), ErrMAC},
		"fail_truncated.hex":               {r[:HeaderSize+TagSize-1], ErrShort},
		"fail_tag_dropped.hex":             {r[:len(r)-TagSize], ErrMAC},
		"fail_version.hex":                 {reseal(r, func(b []byte) []byte { b[0] = 2; return b }), ErrVersion},
		"fail_kind.hex":                    {reseal(r, func(b []byte) []byte { b[1] = 9; return b }), ErrKind},
		"fail_counter_zero.hex":            {reseal(r, func(b []byte) []byte { b[13] = 0; return b }), ErrField},
		"fail_reading_unit.hex":            {reseal(r, func(b []byte) []byte { b[HeaderSize+32] = 3; return b }), ErrField},
		"fail_reading_status_reserved.hex": {reseal(r, func(b []byte) []byte { b[HeaderSize+33] = 0x80; return b }), ErrField},
		"fail_reading_trailing.hex":        {reseal(r, func(b []byte) []byte { return append(b, 0) }), ErrLength},
		"fail_reading_short_body.hex":      {reseal(r, func(b []byte) []byte { return b[:len(b)-1] }), ErrShort},
		"fail_reading_interval_count.hex":  {reseal(ri, func(b []byte) []byte { b[HeaderSize+37] = 5; return b }), ErrLength},
		"fail_reading_interval_zero_length.hex": {reseal(ri, func(b []byte) []byte {
			b[HeaderSize+35], b[HeaderSize+36] = 0, 0
			return b
		}), ErrField},
		"fail_reading_too_many_intervals.hex": {reseal(r, func(b []byte) []byte {
			b[HeaderSize+35], b[HeaderSize+37] = 1, MaxIntervals+1
			return append(b, make([]byte, 4*(MaxIntervals+1))...)
		}), ErrField},
		"fail_events_zero.hex":         {reseal(ev, func(b []byte) []byte { return append(b[:HeaderSize], 0) }), ErrField},
		"fail_events_count.hex":        {reseal(ev, func(b []byte) []byte { b[HeaderSize] = 2; return b }), ErrLength},
		"fail_event_kind_zero.hex":     {reseal(ev, func(b []byte) []byte { b[HeaderSize+1] = 0; return b }), ErrField},
		"fail_ack_subject.hex":         {reseal(ack, func(b []byte) []byte { b[HeaderSize] = 0; return b }), ErrField},
		"fail_ack_result.hex":          {reseal(ack, func(b []byte) []byte { b[HeaderSize+1] = 4; return b }), ErrField},
		"fail_ack_reason_accepted.hex": {reseal(ack, func(b []byte) []byte { b[HeaderSize+2] = 1; return b }), ErrField},
		"fail_ack_length.hex":          {reseal(ack, func(b []byte) []byte { return append(b, 0) }), ErrLength},
	}
}

func writeHex(t *testing.T, name string, b []byte) {
	if err := os.WriteFile(filepath.Join("testdata", name), []byte(hex.EncodeToString(b)+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

func readHex(t *testing.T, name string) []byte {
	s, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	b, err := hex.DecodeString(strings.TrimSpace(string(s)))
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return b
}

// TestGolden: the committed good_* frames open to the frames they were made
// from, Seal reproduces them byte for byte, and their tags are the plain
// AES-CMAC of the documented input.
func TestGolden(t *testing.T) {
	k := key(t)
	for name, want := range goodFrames() {
		b, err := Seal(nil, k, want)
		if err != nil {
			t.Fatalf("%s: Seal: %v", name, err)
		}
		if *update {
			writeHex(t, name, b)
		}
		file := readHex(t, name)
		if hex.EncodeToString(file) != hex.EncodeToString(b) {
			t.Errorf("%s: Seal gives %x, file has %x", name, b, file)
		}
		full, _ := cmac.Sum(testKey, append([]byte("sluice telemetry"), file[:len(file)-TagSize]...))
		if !cmac.Equal(full[:TagSize], file[len(file)-TagSize:]) {
			t.Errorf("%s: tag is not AES-CMAC(key, label || frame)[:8]", name)
		}
		var got Frame
		if err := Open(k, file, &got); err != nil {
			t.Fatalf("%s: Open: %v", name, err)
		}
		if want.Kind == KindReading && want.Reading.Intervals == nil {
			got.Reading.Intervals = nil
		}
		if !reflect.DeepEqual(&got, want) {
			t.Errorf("%s:\n got %+v\nwant %+v", name, got, *want)
		}
	}
}

func TestFail(t *testing.T) {
	k := key(t)
	for name, c := range failFrames(t) {
		if *update {
			writeHex(t, name, c.b)
		}
		b := readHex(t, name)
		var f Frame
		err := Open(k, b, &f)
		if !errors.Is(err, c.want) {
			t.Errorf("%s: err = %v, want %v", name, err, c.want)
		}
	}
	entries, _ := os.ReadDir("testdata")
	fails := failFrames(t)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "fail_") {
			if _, ok := fails[e.Name()]; !ok {
				t.Errorf("testdata/%s has no expected error", e.Name())
			}
		}
	}
}

// TestWrongKey: a frame sealed for one meter does not open under another
// meter's key.
func TestWrongKey(t *testing.T) {
	other, _ := NewKey(mustHex("0f0e0d0c0b0a09080706050403020100"))
	b := readHex(t, "good_reading.hex")
	var f Frame
	if err := Open(other, b, &f); !errors.Is(err, ErrMAC) {
		t.Fatalf("err = %v, want ErrMAC", err)
	}
	if f.Kind != 0 || f.Meter != 0 {
		t.Error("a forged frame changed f")
	}
	if _, err := NewKey(testKey[:15]); !errors.Is(err, ErrKey) {
		t.Errorf("short key: %v", err)
	}
}

func TestSealRefuses(t *testing.T) {
	k := key(t)
	good := goodFrames()["good_reading_intervals.hex"]
	cases := map[string]func(f *Frame){
		"counter 0":      func(f *Frame) { f.Counter = 0 },
		"time 1999":      func(f *Frame) { f.Time = time.Date(1999, 12, 31, 0, 0, 0, 0, time.UTC) },
		"time 2137":      func(f *Frame) { f.Time = time.Date(2137, 1, 1, 0, 0, 0, 0, time.UTC) },
		"kind":           func(f *Frame) { f.Kind = 7 },
		"unit":           func(f *Frame) { f.Reading.Unit = 0 },
		"status":         func(f *Frame) { f.Reading.Status = 1 << 15 },
		"interval frac":  func(f *Frame) { f.Reading.Interval = 1500 * time.Millisecond },
		"interval none":  func(f *Frame) { f.Reading.Interval = 0 },
		"too many":       func(f *Frame) { f.Reading.Intervals = make([]uint32, MaxIntervals+1) },
		"events empty":   func(f *Frame) { f.Kind = KindEvent; f.Events = nil },
		"ack subject":    func(f *Frame) { f.Kind = KindAck; f.Ack = Ack{Result: Accepted} },
		"ack reason":     func(f *Frame) { f.Kind = KindAck; f.Ack = Ack{Subject: SubjectToken, Result: Rejected} },
		"ack dup amount": func(f *Frame) { f.Kind = KindAck; f.Ack = Ack{Subject: SubjectToken, Result: Duplicate, Amount: 1} },
	}
	for name, edit := range cases {
		f := *good
		f.Reading.Intervals = append([]uint32(nil), good.Reading.Intervals...)
		edit(&f)
		dst := []byte("prefix")
		out, err := Seal(dst, k, &f)
		if !errors.Is(err, ErrField) && !errors.Is(err, ErrKind) {
			t.Errorf("%s: err = %v, want ErrField", name, err)
		}
		if string(out) != "prefix" {
			t.Errorf("%s: Seal left %q in dst", name, out)
		}
	}
}

func TestPeek(t *testing.T) {
	h, err := Peek(readHex(t, "good_events.hex"))
	if err != nil || h.Kind != KindEvent || h.Meter != 4710001 || h.Counter != 4 || !h.Time.Equal(t0) {
		t.Errorf("Peek = %+v, %v", h, err)
	}
}

// TestOpenReusesStorage: a Frame reused across frames costs no allocation
// beyond the two of the CMAC computation inside sluice/cmac (its state and
// final block escape through the cipher.Block interface).
func TestOpenReusesStorage(t *testing.T) {
	k := key(t)
	b := readHex(t, "good_reading_intervals.hex")
	var f Frame
	if err := Open(k, b, &f); err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(100, func() { _ = Open(k, b, &f) }); n > 2 {
		t.Errorf("Open allocates %v times per frame", n)
	}
}
