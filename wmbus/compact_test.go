package wmbus

import (
	"encoding/json"
	"errors"
	"os"
	"testing"
)

// TestCompactKamstrup decodes a Kamstrup compact frame through the
// built-in format its full frame announces.
func TestCompactKamstrup(t *testing.T) {
	b, err := os.ReadFile("testdata/compact.json")
	if err != nil {
		t.Fatal(err)
	}
	var f struct{ Telegrams []vector }
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	for _, v := range f.Telegrams {
		tg, err := DecodeHex(v.Telegram, mustHex(t, v.Key))
		if err != nil {
			t.Fatal(err)
		}
		if m3, ok := tg.TotalVolume(); tg.ID() != v.ID || !ok || m3 != v.TotalM3 {
			t.Errorf("%s %v, want %s %v", tg.ID(), m3, v.ID, v.TotalM3)
		}
	}
	// The full frame of the same meter announces the same format.
	full := loadVectors(t)[0]
	tg, err := DecodeHex(full.Telegram, mustHex(t, full.Key))
	if err != nil {
		t.Fatal(err)
	}
	if FormatSignature(tg.Format) != 0xA8ED {
		t.Errorf("full frame format %X has signature %04X, want A8ED", tg.Format, FormatSignature(tg.Format))
	}
}

type formatMap map[uint16][]byte

func (m formatMap) Format(sig uint16) ([]byte, bool) { f, ok := m[sig]; return f, ok }

// TestCompactLearned learns a format from a full frame and expands a
// compact frame with it (records of a Multical 21 "Vadden" pair published in
// the wmbusmeters tests, here without link encryption).
func TestCompactLearned(t *testing.T) {
	dll := "442D2C776655441B16"
	full := mustHex(t, "00"+dll+"78"+"02FF20000004132F4E000092013B3D01A1015B028101E7FF0F03")
	full[0] = byte(len(full) - 1)
	compact := mustHex(t, "00"+dll+"79"+"12C40DFF"+"00002F4E00003D010203")
	compact[0] = byte(len(compact) - 1)

	if _, err := Decode(compact, nil); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("unknown format: err = %v, want ErrUnsupported", err)
	}
	tf, err := Decode(full, nil)
	if err != nil {
		t.Fatal(err)
	}
	formats := formatMap{FormatSignature(tf.Format): tf.Format}
	if _, ok := formats[0xC412]; !ok {
		t.Fatalf("learned signature %04X, want C412", FormatSignature(tf.Format))
	}
	tc, err := DecodeWith(compact, nil, Options{Formats: formats})
	if err != nil {
		t.Fatal(err)
	}
	if m3, ok := tc.TotalVolume(); !ok || m3 != 20.015 {
		t.Errorf("total = %v", m3)
	}
	if len(tc.Records) != len(tf.Records) {
		t.Errorf("%d records, full frame had %d", len(tc.Records), len(tf.Records))
	}

	bad := append([]byte(nil), compact...)
	bad[len(bad)-1] ^= 1 // data no longer matches the records CRC
	if _, err := DecodeWith(bad, nil, Options{Formats: formats}); !errors.Is(err, ErrCRC) {
		t.Errorf("changed data: err = %v, want ErrCRC", err)
	}
	long := append(append([]byte(nil), compact...), 0x00)
	long[0]++
	if _, err := DecodeWith(long, nil, Options{Formats: formats}); !errors.Is(err, ErrRecord) {
		t.Errorf("extra data: err = %v, want ErrRecord", err)
	}
	// A store that answers with the wrong format is not believed.
	liar := formatMap{0xC412: []byte{0x04, 0x13}}
	if _, err := DecodeWith(compact, nil, Options{Formats: liar}); !errors.Is(err, ErrUnsupported) {
		t.Errorf("wrong stored format: err = %v, want ErrUnsupported", err)
	}
}
