package card_test

import (
	"bytes"
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"sluice/card"
	"sluice/card/internal/cardtest"
)

func h(s string) []byte {
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		panic(err)
	}
	return b
}

// The ISO 7816-4 cases, short and extended, with their boundaries.
var commandCases = []struct {
	name string
	enc  string
	cmd  card.Command
}{
	{"case1", "00A40400", card.Command{CLA: 0, INS: 0xA4, P1: 4}},
	{"case2-short", "00B0000010", card.Command{INS: 0xB0, Ne: 16}},
	{"case2-short-256", "00B0000000", card.Command{INS: 0xB0, Ne: 256}},
	{"case3-short", "00A4040002 3F00", card.Command{INS: 0xA4, P1: 4, Data: h("3F00")}},
	{"case4-short", "00A4040002 3F00 00", card.Command{INS: 0xA4, P1: 4, Data: h("3F00"), Ne: 256}},
	{"case2-extended", "00B00000 000101", card.Command{INS: 0xB0, Ne: 257}},
	{"case2-extended-65536", "00B00000 000000", card.Command{INS: 0xB0, Ne: 65536}},
	{"case3-extended", "90C10000 000100" + strings.Repeat("AB", 256), card.Command{CLA: 0x90, INS: 0xC1, Data: bytes.Repeat([]byte{0xAB}, 256)}},
	{"case4-extended", "90C10000 000100" + strings.Repeat("AB", 256) + "0000", card.Command{CLA: 0x90, INS: 0xC1, Data: bytes.Repeat([]byte{0xAB}, 256), Ne: 65536}},
	{"case4-extended-by-Ne", "90BD0000 000001 01 0101", card.Command{CLA: 0x90, INS: 0xBD, Data: []byte{1}, Ne: 257}},
}

func TestCommandCodec(t *testing.T) {
	for _, tc := range commandCases {
		t.Run(tc.name, func(t *testing.T) {
			enc, err := tc.cmd.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(enc, h(tc.enc)) {
				t.Fatalf("Marshal = %X, want %s", enc, tc.enc)
			}
			got, err := card.ParseCommand(enc)
			if err != nil {
				t.Fatal(err)
			}
			if got.CLA != tc.cmd.CLA || got.INS != tc.cmd.INS || got.P1 != tc.cmd.P1 || got.P2 != tc.cmd.P2 ||
				!bytes.Equal(got.Data, tc.cmd.Data) || got.Ne != tc.cmd.Ne {
				t.Fatalf("ParseCommand = %+v, want %+v", got, tc.cmd)
			}
		})
	}
}

func TestCommandCodecRejects(t *testing.T) {
	for _, enc := range []string{
		"",
		"00A404",
		"00A4040002 3F",         // short Lc longer than the data
		"00A4040001 3F00 00 00", // trailing bytes
		"00B00000 00 01",        // extended length truncated
		"00B00000 000000 00",    // extended Lc of zero with data
		"90C10000 000003 AABB",  // extended Lc longer than the data
		"90C10000 000001 AA 00", // extended Le of one byte
		"90C10000 000001 AA 0000 00",
	} {
		if c, err := card.ParseCommand(h(enc)); !errors.Is(err, card.ErrMalformed) {
			t.Errorf("ParseCommand(%s) = %+v, %v; want ErrMalformed", enc, c, err)
		}
	}
	if _, err := (card.Command{Data: make([]byte, 65536)}).Marshal(); err == nil {
		t.Error("Marshal accepted 65536 data bytes")
	}
}

func TestResponseCodec(t *testing.T) {
	r, err := card.ParseResponse(h("0102 9100"))
	if err != nil || !bytes.Equal(r.Data, []byte{1, 2}) || r.SW != card.SWNativeOK || r.SW1() != 0x91 || r.SW2() != 0 {
		t.Fatalf("%+v %v", r, err)
	}
	if !bytes.Equal(r.Marshal(), h("01029100")) {
		t.Fatal("round trip")
	}
	if _, err := card.ParseResponse([]byte{0x90}); !errors.Is(err, card.ErrMalformed) {
		t.Fatal("accepted a 1-byte response")
	}
}

// script is a card that answers from a list and records what it was sent.
type script struct {
	sent    [][]byte
	answers []string
}

func (s *script) Transmit(b []byte) ([]byte, error) {
	s.sent = append(s.sent, b)
	a := s.answers[0]
	s.answers = s.answers[1:]
	return h(a), nil
}

func TestExchange61xxAnd6Cxx(t *testing.T) {
	// 61xx: the data arrives in three pieces and GET RESPONSE asks for xx.
	s := &script{answers: []string{"0102 6102", "0304 6101", "05 9000"}}
	r, err := card.Exchange(s, card.Command{CLA: 0x90, INS: 0xBD, Data: []byte{1}, Ne: 2})
	if err != nil || !bytes.Equal(r.Data, h("0102030405")) || r.SW != card.SWOK {
		t.Fatalf("%+v %v", r, err)
	}
	if !bytes.Equal(s.sent[1], h("00C0000002")) || !bytes.Equal(s.sent[2], h("00C0000001")) {
		t.Fatalf("GET RESPONSE sent as %X %X", s.sent[1], s.sent[2])
	}
	// 6Cxx: the command is sent again with Le = xx.
	s = &script{answers: []string{"6C17", "AA 9000"}}
	r, err = card.Exchange(s, card.Command{CLA: 0x00, INS: 0xCA, Ne: 1})
	if err != nil || !bytes.Equal(r.Data, []byte{0xAA}) || !bytes.Equal(s.sent[1], h("00CA000017")) {
		t.Fatalf("%+v %v sent %X", r, err, s.sent)
	}
	// A card that never stops saying 61xx is cut off.
	s = &script{answers: []string{}}
	for i := 0; i < 300; i++ {
		s.answers = append(s.answers, "00 6101")
	}
	if _, err := card.Exchange(s, card.Command{INS: 0xB0, Ne: 1}); err == nil {
		t.Fatal("endless 61xx accepted")
	}
}

// TestCardChaining drives the emulator with short APDUs whose answers do
// not fit: GET IDENTITY with a small Le answers 6Cxx, a long file read
// answers 61xx, and both end in the right bytes.
func TestCardChaining(t *testing.T) {
	w := cardtest.NewWorld(42)
	c := issued(t, w, card.KindCustomer)
	if r, _ := card.ParseResponse(c.Process(h("00A4040008F0534C5549434501 00"))); r.SW != card.SWOK {
		t.Fatalf("SELECT: %04X", r.SW)
	}
	r, _ := card.ParseResponse(c.Process(h("9060000004")))
	if r.SW != 0x6C17 {
		t.Fatalf("GET IDENTITY Le=4: %04X, want 6C17", r.SW)
	}
	r, err := card.Exchange(c, card.Command{CLA: 0x90, INS: 0x60, Ne: 4})
	if err != nil || r.SW != card.SWNativeOK || len(r.Data) != 23 {
		t.Fatalf("%+v %v", r, err)
	}
	// A full vouchers file (881 bytes) over short APDUs.
	s := open(t, w, c)
	for i := uint32(1); i <= card.Slots; i++ {
		if _, err := s.LoadVoucher(w.CreditVoucher(t, 42, i, i)); err != nil {
			t.Fatal(err)
		}
	}
	rec := &recorder{t: c}
	s = open(t, w, rec)
	slots, err := s.ReadVouchers()
	if err != nil || len(slots) != card.Slots {
		t.Fatalf("%d slots, %v", len(slots), err)
	}
	gets := 0
	for _, x := range rec.log {
		if x.dir == '>' && x.b[1] == 0xC0 {
			gets++
		}
	}
	if gets < 3 {
		t.Fatalf("%d GET RESPONSE for an 881-byte file", gets)
	}
}

// TestExtendedAPDU: with extended APDUs the whole vouchers file comes back
// in one exchange; and the card parses an oversize extended command.
func TestExtendedAPDU(t *testing.T) {
	w := cardtest.NewWorld(42)
	c := issued(t, w, card.KindCustomer)
	load(t, w, c, w.CreditVoucher(t, 42, 1, 1), w.CreditVoucher(t, 42, 2, 1), w.CreditVoucher(t, 42, 3, 1))
	rec := &recorder{t: c}
	s := open(t, w, rec)
	s.PreferExtended()
	n := len(rec.log)
	slots, err := s.ReadVouchers()
	if err != nil || len(slots) != 3 {
		t.Fatalf("%d slots, %v", len(slots), err)
	}
	if got := rec.log[n:]; len(got) != 2 || got[0].b[4] != 0 || len(got[1].b) < 300 {
		t.Fatalf("read took %d exchanges, want one extended", len(got)/2)
	}

	big := make([]byte, 300)
	enc, _ := card.Command{CLA: 0x90, INS: 0xC1, Data: big, Ne: 65536}.Marshal()
	if enc[4] != 0 || len(enc) != 4+3+300+2 {
		t.Fatalf("not extended: % X", enc[:8])
	}
	r, _ := card.ParseResponse(c.Process(enc))
	if r.SW != card.SWIntegrityError { // parsed, then the MAC is wrong
		t.Fatalf("extended command: SW %04X, want 911E", r.SW)
	}
}
