package wmbus

import (
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"math"
	"os"
	"strings"
	"testing"
)

type mode7Vector struct {
	Name, Key, Telegram, Kenc, Kmac, ID, Manufacturer string
	Counter                                           uint32
	TotalM3                                           float64 `json:"total_m3"`
}

func loadMode7(t testing.TB) []mode7Vector {
	b, err := os.ReadFile("testdata/mode7.json")
	if err != nil {
		t.Fatal(err)
	}
	var f struct{ Telegrams []mode7Vector }
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	return f.Telegrams
}

// TestMode7 decodes telegrams built by an independent implementation
// (testdata/gen_mode7.py) and checks the derived keys on the way.
func TestMode7(t *testing.T) {
	for _, v := range loadMode7(t) {
		t.Run(v.Name, func(t *testing.T) {
			key := mustHex(t, v.Key)
			id := mustHex(t, v.ID)
			for i, j := 0, len(id)-1; i < j; i, j = i+1, j-1 {
				id[i], id[j] = id[j], id[i]
			}
			kenc, kmac := Mode7Keys(key, v.Counter, id)
			if got := strings.ToUpper(hex.EncodeToString(kenc[:])); got != v.Kenc {
				t.Errorf("Kenc = %s, want %s", got, v.Kenc)
			}
			if got := strings.ToUpper(hex.EncodeToString(kmac[:])); got != v.Kmac {
				t.Errorf("Kmac = %s, want %s", got, v.Kmac)
			}
			tg, err := DecodeHex(v.Telegram, key)
			if err != nil {
				t.Fatal(err)
			}
			if tg.ID() != v.ID || tg.Meter.Manufacturer != v.Manufacturer {
				t.Errorf("meter = %s %s, want %s %s", tg.Meter.Manufacturer, tg.ID(), v.Manufacturer, v.ID)
			}
			if tg.TPL.Mode != Mode7 || tg.AFL == nil || tg.AFL.Counter != v.Counter {
				t.Errorf("mode %d, AFL %+v", tg.TPL.Mode, tg.AFL)
			}
			if m3, ok := tg.TotalVolume(); !ok || math.Abs(m3-v.TotalM3) > 1e-9 {
				t.Errorf("total = %v, want %v", m3, v.TotalM3)
			}
		})
	}
}

// TestMode7Tamper: any change to the authenticated bytes, or the wrong key,
// is caught by the MAC before decryption.
func TestMode7Tamper(t *testing.T) {
	v := loadMode7(t)[0]
	key := mustHex(t, v.Key)
	good := mustHex(t, v.Telegram)
	// Offsets: 14..17 MCR, 18..25 MAC, 26.. TPL and ciphertext.
	for _, off := range []int{15, 20, 26, 28, 33, len(good) - 1} {
		b := append([]byte(nil), good...)
		b[off] ^= 0x01
		if _, err := Decode(b, key); !errors.Is(err, ErrMAC) {
			t.Errorf("byte %d flipped: err = %v, want ErrMAC", off, err)
		}
	}
	bad := append([]byte(nil), key...)
	bad[0] ^= 1
	if _, err := Decode(good, bad); !errors.Is(err, ErrMAC) {
		t.Errorf("wrong key: err = %v, want ErrMAC", err)
	}
	if _, err := Decode(good, nil); !errors.Is(err, ErrNoKey) {
		t.Errorf("no key: err = %v, want ErrNoKey", err)
	}
}

func TestWrongKey(t *testing.T) {
	vs := loadVectors(t)
	wrong := make([]byte, 16)
	wrong[15] = 0x42
	for _, v := range vs {
		_, err := DecodeHex(v.Telegram, wrong)
		if !errors.Is(err, ErrBadKey) || !errors.Is(err, ErrDecrypt) {
			t.Errorf("%s: wrong key: err = %v, want ErrBadKey", v.Meter, err)
		}
		if _, err := DecodeHex(v.Telegram, nil); !errors.Is(err, ErrNoKey) {
			t.Errorf("%s: no key: err = %v, want ErrNoKey", v.Meter, err)
		}
	}
	// The ELL check is a CRC, so it is reported as both.
	if _, err := DecodeHex(vs[0].Telegram, wrong); !errors.Is(err, ErrCRC) {
		t.Errorf("ELL wrong key: err = %v, want ErrCRC too", err)
	}
	if _, err := DecodeHex(vs[0].Telegram, []byte{1, 2, 3}); !errors.Is(err, ErrBadKey) {
		t.Errorf("short key: err = %v", err)
	}
}

func TestDefaultKeyFlag(t *testing.T) {
	for _, v := range loadVectors(t) {
		tg, err := DecodeHex(v.Telegram, mustHex(t, v.Key))
		if err != nil {
			t.Fatal(err)
		}
		want := ""
		switch v.ID {
		case "64745666":
			want = "Diehl OMS default"
		case "88888888":
			want = "all-zero"
		}
		if tg.DefaultKey != want {
			t.Errorf("%s: DefaultKey = %q, want %q", v.Meter, tg.DefaultKey, want)
		}
	}
}

// withFormatA adds the DLL block CRCs of frame format A.
func withFormatA(b []byte) []byte {
	var out []byte
	for i, blk := 0, 10; i < len(b); blk = 16 {
		n := min(blk, len(b)-i)
		out = append(out, b[i:i+n]...)
		out = binary.BigEndian.AppendUint16(out, crc16(b[i:i+n]))
		i += n
	}
	return out
}

func TestDLLCRC(t *testing.T) {
	for _, v := range loadVectors(t) {
		plain := mustHex(t, v.Telegram)
		withCRC := withFormatA(plain)
		tg, err := Decode(withCRC, mustHex(t, v.Key))
		if err != nil {
			t.Fatalf("%s with CRCs: %v", v.Meter, err)
		}
		if m3, _ := tg.TotalVolume(); math.Abs(m3-v.TotalM3) > 1e-9 {
			t.Errorf("%s with CRCs: total %v", v.Meter, m3)
		}
		for _, off := range []int{3, 11, len(withCRC) - 1} {
			b := append([]byte(nil), withCRC...)
			b[off] ^= 0x80
			if _, err := Decode(b, mustHex(t, v.Key)); !errors.Is(err, ErrCRC) {
				t.Errorf("%s: byte %d flipped: err = %v, want ErrCRC", v.Meter, off, err)
			}
		}
		if _, err := Decode(withCRC[:len(withCRC)-1], nil); !errors.Is(err, ErrLength) {
			t.Errorf("%s: odd length: err = %v, want ErrLength", v.Meter, err)
		}
	}
}

func TestFormatB(t *testing.T) {
	// An unencrypted telegram long enough for blocks 2 and 3.
	plain := mustHex(t, "00442D2C785634121B077A2A000000"+"0413E8030000"+strings.Repeat("2F", 130))
	plain[0] = byte(len(plain) - 1)
	b := append([]byte(nil), plain[:125]...)
	b[0] = byte(len(plain) + 4 - 1)
	b = binary.BigEndian.AppendUint16(b, crc16(b))
	b3 := plain[125:]
	b = append(b, b3...)
	b = binary.BigEndian.AppendUint16(b, crc16(b3))
	got, err := StripFormatB(b)
	if err != nil {
		t.Fatal(err)
	}
	if hex.EncodeToString(got) != hex.EncodeToString(plain) {
		t.Fatalf("StripFormatB = %X", got)
	}
	tg, err := Decode(got, nil)
	if err != nil {
		t.Fatal(err)
	}
	if m3, ok := tg.TotalVolume(); !ok || m3 != 1 {
		t.Errorf("total = %v", m3)
	}
	b[130] ^= 1
	if _, err := StripFormatB(b); !errors.Is(err, ErrCRC) {
		t.Errorf("err = %v, want ErrCRC", err)
	}
}

func TestTruncated(t *testing.T) {
	for _, v := range loadVectors(t) {
		full := mustHex(t, v.Telegram)
		for n := 0; n < len(full); n++ {
			b := append([]byte(nil), full[:n]...)
			if n > 0 {
				b[0] = byte(n - 1) // a consistent L-field, so the layers see the cut
			}
			_, err := Decode(b, mustHex(t, v.Key))
			if err == nil {
				continue // a prefix can be a complete telegram (unencrypted tail records)
			}
			if !errors.Is(err, ErrShort) && !errors.Is(err, ErrBadKey) && !errors.Is(err, ErrRecord) && !errors.Is(err, ErrUnsupported) {
				t.Errorf("%s cut at %d: unexpected error %v", v.Meter, n, err)
			}
		}
	}
}

// TestPlaintextTail: records after the encrypted blocks are marked and
// never give the total; a keyed meter's telegram in clear is refused.
func TestPlaintextTail(t *testing.T) {
	v := loadVectors(t)[3] // Lorenz: 2 encrypted blocks, then 03FD0C... 02FD0B... in clear
	tg, err := DecodeHex(v.Telegram, mustHex(t, v.Key))
	if err != nil {
		t.Fatal(err)
	}
	var clear, sealed int
	for _, r := range tg.Records {
		if r.Plaintext {
			clear++
			if r.VIF != 0xFD {
				t.Errorf("unexpected clear record %+v", r)
			}
		} else {
			sealed++
		}
	}
	if clear != 2 || sealed == 0 {
		t.Errorf("%d clear, %d encrypted records", clear, sealed)
	}
	// Move the clear tail's model-version record into a volume: the total
	// must still come from the encrypted part.
	// 03 FD0C 080000 becomes 03 13 001000 2F: a volume of 4.096 m3 in clear.
	b := mustHex(t, v.Telegram)
	copy(b[len(b)-10:], []byte{0x13, 0x00, 0x10, 0x00, 0x2F})
	forged, err := Decode(b, mustHex(t, v.Key))
	if err != nil {
		t.Fatal(err)
	}
	if m3, _ := forged.TotalVolume(); m3 != v.TotalM3 {
		t.Errorf("total taken from the clear tail: %v", m3)
	}
	if last := forged.Records[len(forged.Records)-2]; last.Quantity != QuantityVolume || !last.Plaintext {
		t.Errorf("forged clear record = %+v", last)
	}

	plain := mustHex(t, "0E442D2C785634121B077A2A0000000413E8030000")
	plain[0] = byte(len(plain) - 1)
	if _, err := Decode(plain, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := Decode(plain, make([]byte, 16)); !errors.Is(err, ErrNotEncrypted) {
		t.Errorf("keyed decode of a clear telegram: err = %v, want ErrNotEncrypted", err)
	}
}

// TestELLRepeated: a repeater sets the hop-count bit of CC after the meter
// encrypted; the telegram must still decrypt.
func TestELLRepeated(t *testing.T) {
	v := loadVectors(t)[0]
	b := mustHex(t, v.Telegram)
	b[11] |= 0x10 // H
	tg, err := Decode(b, mustHex(t, v.Key))
	if err != nil {
		t.Fatal(err)
	}
	if m3, _ := tg.TotalVolume(); m3 != v.TotalM3 {
		t.Errorf("total %v", m3)
	}
	b[13] ^= 1 // SN changes the IV: the CRC must catch it
	if _, err := Decode(b, mustHex(t, v.Key)); !errors.Is(err, ErrBadKey) {
		t.Errorf("SN changed: err = %v", err)
	}
}
