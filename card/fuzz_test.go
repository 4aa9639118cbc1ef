package card_test

import (
	"bytes"
	"reflect"
	"testing"

	"sluice/card"
	"sluice/card/internal/cardtest"
)

func FuzzParseCommand(f *testing.F) {
	for _, tc := range commandCases {
		f.Add(h(tc.enc))
	}
	f.Add(h("00B00000 000000 00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := card.ParseCommand(b)
		if err != nil {
			return
		}
		enc, err := c.Marshal()
		if err != nil {
			t.Fatalf("parsed %X to %+v, which does not marshal: %v", b, c, err)
		}
		c2, err := card.ParseCommand(enc)
		if err != nil || c2.CLA != c.CLA || c2.INS != c.INS || c2.P1 != c.P1 || c2.P2 != c.P2 ||
			!bytes.Equal(c2.Data, c.Data) || c2.Ne != c.Ne {
			t.Fatalf("round trip %X -> %+v -> %X -> %+v, %v", b, c, enc, c2, err)
		}
	})
}

// FuzzCard feeds a personalized card carrying a voucher arbitrary APDU
// sequences (each prefixed by its length byte). Without the key nothing may
// change its memory, and every answer must be a well-formed response.
func FuzzCard(f *testing.F) {
	w := cardtest.NewWorld(42)
	c0 := w.BlankCard(f, uid1, 1)
	if _, err := card.Issue(c0, w.BatchKey, w.MeterCardKey, w.Personalization(card.KindCustomer), cardtest.Rand(2)); err != nil {
		f.Fatal(err)
	}
	s, err := card.Open(c0, w.MeterID, w.MeterCardKey, nil)
	if err != nil {
		f.Fatal(err)
	}
	if _, err := s.LoadVoucher(w.CreditVoucher(f, 42, 1, 10)); err != nil {
		f.Fatal(err)
	}
	img := c0.Image()

	// Seeds: a real insertion's commands, length-prefixed.
	rec := &recorder{t: c0}
	c0.Reset()
	if s, err = card.Open(rec, w.MeterID, w.MeterCardKey, nil); err != nil {
		f.Fatal(err)
	}
	if _, err := card.Transfer(s, w.NewMeter()); err != nil {
		f.Fatal(err)
	}
	var seed []byte
	for _, fr := range rec.log {
		if fr.dir == '>' && len(fr.b) < 256 {
			seed = append(append(seed, byte(len(fr.b))), fr.b...)
			f.Add(append([]byte{byte(len(fr.b))}, fr.b...))
		}
	}
	f.Add(seed)
	f.Fuzz(func(t *testing.T, in []byte) {
		c, err := card.New(img, cardtest.Rand(3), nil)
		if err != nil {
			t.Fatal(err)
		}
		for len(in) > 0 {
			n := int(in[0])
			in = in[1:]
			if n > len(in) {
				n = len(in)
			}
			out := c.Process(in[:n])
			in = in[n:]
			if _, err := card.ParseResponse(out); err != nil {
				t.Fatalf("answer %X: %v", out, err)
			}
		}
		if got := c.Image(); !reflect.DeepEqual(got, img) {
			t.Fatalf("card memory changed without the key")
		}
	})
}
