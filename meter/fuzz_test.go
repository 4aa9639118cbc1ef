package meter

import (
	"bytes"
	"errors"
	"testing"

	"sluice/voucher"
)

func TestParseEntry(t *testing.T) {
	good := []struct {
		in   string
		want Entry
	}{
		{"12345678901234567890", Entry{Token: "12345678901234567890"}},
		{" 1234 5678 9012 3456 7890 ", Entry{Token: "12345678901234567890"}},
		{"1234-5678-9012-3456-7890", Entry{Token: "12345678901234567890"}},
		{"*1", Entry{Code: 1}},
		{"*2#", Entry{Code: 2}},
		{"#42#", Entry{Code: 42}},
	}
	for _, c := range good {
		if got, err := ParseEntry(c.in); err != nil || got != c.want {
			t.Errorf("ParseEntry(%q) = %+v, %v; want %+v", c.in, got, err, c.want)
		}
	}
	for _, in := range []string{"", "1234", "123456789012345678901", "1234567890123456789x", "*", "*123", "*a#", "**1",
		string(bytes.Repeat([]byte("1"), 65))} {
		if _, err := ParseEntry(in); !errors.Is(err, ErrFormat) {
			t.Errorf("ParseEntry(%q) = %v, want ErrFormat", in, err)
		}
	}
}

func FuzzParseEntry(f *testing.F) {
	for _, s := range []string{"12345678901234567890", "1234 5678-9012 3456 7890", "*1", "#42#", "", "*", "1-"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		e, err := ParseEntry(s)
		if err != nil {
			if !errors.Is(err, ErrFormat) {
				t.Fatalf("error %v does not wrap ErrFormat", err)
			}
			return
		}
		if e.Token != "" && (len(e.Token) != 20 || !allDigits(e.Token)) {
			t.Fatalf("token %q", e.Token)
		}
		if e.Token == "" && (e.Code < 0 || e.Code > 99) {
			t.Fatalf("code %d", e.Code)
		}
	})
}

// FuzzKeypad types arbitrary lines on a meter's keypad: it never panics,
// never adds credit (the fuzzer cannot know the decoder key, and a 2^-16
// CRC hit would show as a test failure worth looking at), and a rejected
// entry never changes credit.
func FuzzKeypad(f *testing.F) {
	f.Add("12345678901234567890")
	f.Add("*1")
	f.Add("*2#")
	f.Add("66844525371637440133")
	f.Fuzz(func(t *testing.T, line string) {
		v := newVend(t, "supply group 600727")
		r := stsRig(t, DefaultParams(), v)
		before := r.m.Snapshot()
		if _, err := r.m.Keypad(t0, line); err == nil {
			if sn := r.m.Snapshot(); sn.Loaded != before.Loaded {
				t.Fatalf("entry %q loaded credit", line)
			}
		}
	})
}

// FuzzLoadVoucher offers arbitrary bytes as a voucher: no panic, no credit,
// and a receipt that says rejected.
func FuzzLoadVoucher(f *testing.F) {
	r0 := newRig(f, DefaultParams(), Deps{}, nil)
	good := r0.creditVoucher(100)
	f.Add(good)
	f.Add(good[:voucher.HeaderSize])
	f.Add([]byte{1, 0x11})
	f.Add(r0.sign(voucher.Voucher{Kind: voucher.KindSetParameter, Param: ParamNight, Value: 0xFFFFFFFF}))
	f.Fuzz(func(t *testing.T, b []byte) {
		r := newRig(t, DefaultParams(), Deps{}, nil)
		rc, err := r.m.LoadVoucher(t0, b, FromCard)
		if err == nil {
			// Only a correctly signed voucher can get here: the seeds.
			if _, perr := voucher.Parse(b); perr != nil {
				t.Fatalf("accepted bytes voucher.Parse refuses: %v", perr)
			}
			return
		}
		if rc.Status != Rejected || r.m.Snapshot().Loaded != 0 {
			t.Fatalf("rejected voucher: receipt %+v, loaded %d", rc, r.m.Snapshot().Loaded)
		}
	})
}

// FuzzBoot boots from arbitrary storage images: the meter either refuses
// the image with an error or runs on a state that re-encodes to itself.
func FuzzBoot(f *testing.F) {
	r := newRig(f, DefaultParams(), Deps{}, nil)
	r.load(t0, r.creditVoucher(700))
	img := r.ee.Image()
	f.Add(img[:DefaultEEPROMSize/2])
	f.Add(r.m.s.marshal())
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		// Fuzz both the raw record (wrapped in a valid journal entry) and
		// the raw bank, so the CRC does not hide the decoder.
		var s state
		if err := s.unmarshal(b); err == nil {
			if again := s.marshal(); !bytes.Equal(again, b) {
				t.Fatalf("state does not re-encode to its input")
			}
		}
		ee := NewEEPROM(1024, 32)
		copy(ee.mem, b)
		if m, err := Boot(ee, Deps{}); err == nil {
			_ = m.Snapshot()
			_ = m.Tick(t0, 10, 0)
		}
		ee2 := NewEEPROM(4096, 32)
		j, _ := newJournal(ee2)
		if len(b) <= j.maxPayload() {
			if err := j.commit(b); err != nil {
				t.Fatal(err)
			}
			if m, err := Boot(ee2, Deps{}); err == nil {
				_ = m.Tick(t0, 10, 0)
				_, _ = m.Keypad(t0, "*1")
			}
		}
	})
}

func FuzzOpenReceipt(f *testing.F) {
	rc := Receipt{MeterID: 1, Seq: 2, Status: Loaded, Amount: 3, Credit: 4, Loaded: 5, Time: t0}
	rc.MAC = receiptMAC(testKeys().TelemetryKey, rc.body())
	b, _ := rc.MarshalBinary()
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := OpenReceipt(b, testKeys().TelemetryKey)
		if err != nil {
			return
		}
		again, _ := r.MarshalBinary()
		if !bytes.Equal(again, b) {
			t.Fatalf("verified receipt does not re-encode to its input")
		}
	})
}
