package card_test

import (
	"bytes"
	"testing"

	"sluice/card"
	"sluice/card/internal/cardtest"
)

// recorder is a wiretap on the contacts: it logs every byte both ways.
type recorder struct {
	t   card.Transport
	log []frame
}

type frame struct {
	dir byte // '>' to the card, '<' from it
	b   []byte
}

func (r *recorder) Transmit(b []byte) ([]byte, error) {
	r.log = append(r.log, frame{'>', append([]byte(nil), b...)})
	out, err := r.t.Transmit(b)
	if err == nil {
		r.log = append(r.log, frame{'<', append([]byte(nil), out...)})
	}
	return out, err
}

func (r *recorder) wire() []byte {
	var all []byte
	for _, f := range r.log {
		all = append(all, f.b...)
	}
	return all
}

// TestSniffing records a card's whole life on the wire (personalization,
// a voucher load, a meter insertion) and checks that no key, nor any
// 8-byte half of one, crosses the contacts; then replays the meter's side of
// the recorded insertion to the same card in a fresh session and checks the
// card refuses it and changes nothing.
func TestSniffing(t *testing.T) {
	w := cardtest.NewWorld(42)
	c := w.BlankCard(t, uid1, 11)
	tap := &recorder{t: c}

	tk, _ := card.TransportKey(w.BatchKey, uid1)
	ck, _ := card.CardKey(w.MeterCardKey, uid1)
	secrets := map[string][]byte{"batch key": w.BatchKey, "meter card key": w.MeterCardKey, "transport key": tk, "card key": ck}
	grab := func(name string, s *card.Session) {
		enc, mac := card.SessionKeys(s)
		secrets[name+" session ENC"] = append([]byte(nil), enc...)
		secrets[name+" session MAC"] = append([]byte(nil), mac...)
	}

	// Personalization, under the transport key.
	id, err := card.Identify(tap)
	if err != nil {
		t.Fatal(err)
	}
	s, err := card.Authenticate(tap, id, tk, cardtest.Rand(12))
	if err != nil {
		t.Fatal(err)
	}
	grab("personalization", s)
	p := w.Personalization(card.KindCustomer)
	p.Key = ck
	if err := s.Personalize(p); err != nil {
		t.Fatal(err)
	}
	// The vending office loads a voucher.
	s, err = card.Open(tap, w.MeterID, w.MeterCardKey, cardtest.Rand(13))
	if err != nil {
		t.Fatal(err)
	}
	grab("office", s)
	if _, err := s.LoadVoucher(w.CreditVoucher(t, 42, 1, 750)); err != nil {
		t.Fatal(err)
	}
	before := c.Image()
	insertion := len(tap.log)

	// The meter takes the credit.
	m := w.NewMeter()
	c.Reset()
	s, err = card.Open(tap, w.MeterID, w.MeterCardKey, cardtest.Rand(14))
	if err != nil {
		t.Fatal(err)
	}
	grab("meter", s)
	if _, err := card.Transfer(s, m); err != nil || m.Balance != 750 {
		t.Fatalf("transfer: %v, balance %d", err, m.Balance)
	}

	wire := tap.wire()
	for name, k := range secrets {
		for _, part := range [][]byte{k, k[:8], k[8:]} {
			if bytes.Contains(wire, part) {
				t.Errorf("%s (%X) appears on the wire", name, part)
			}
		}
	}
	t.Logf("%d frames, %d bytes on the wire, %d secrets checked", len(tap.log), len(wire), len(secrets))

	// Replay the meter's commands to the card as it was before the
	// insertion, with its own fresh randomness.
	fresh, err := card.New(before, cardtest.Rand(15), nil)
	if err != nil {
		t.Fatal(err)
	}
	authFailed := false
	for i, f := range tap.log[insertion:] {
		if f.dir != '>' {
			continue
		}
		out := fresh.Process(f.b)
		want := tap.log[insertion+i+1].b
		r, _ := card.ParseResponse(out)
		if f.b[1] == 0xAF && r.SW == card.SWAuthError {
			authFailed = true
		}
		secured := f.b[0] == 0x90 && f.b[1] > 0xAF // the CommMode.Full commands
		if secured && r.SW != card.SWAuthError && r.SW != card.SWIntegrityError {
			t.Errorf("replayed command %X answered %04X", f.b[:2], r.SW)
		}
		if secured && bytes.Equal(out, want) {
			t.Errorf("replayed command %X got the recorded answer", f.b[:2])
		}
	}
	if !authFailed {
		t.Error("the replayed authentication was not refused")
	}
	after := fresh.Image()
	if after.Slots[0].State != card.SlotPending || len(after.Receipts) != 0 {
		t.Fatalf("replay changed the card: slot %v, %d receipts", after.Slots[0].State, len(after.Receipts))
	}
	// And the recorded card answers cannot fool a fresh reader session
	// either: a replayed card transcript fails the reader's RndA' check.
	replayCard := &tape{frames: tap.log[insertion:]}
	if _, err := card.Open(replayCard, w.MeterID, w.MeterCardKey, cardtest.Rand(16)); err == nil {
		t.Fatal("a reader accepted a recorded card")
	}
}

// tape plays back recorded card answers, whatever it is sent.
type tape struct{ frames []frame }

func (tp *tape) Transmit([]byte) ([]byte, error) {
	for len(tp.frames) > 0 {
		f := tp.frames[0]
		tp.frames = tp.frames[1:]
		if f.dir == '<' {
			return f.b, nil
		}
	}
	return []byte{0x6F, 0x00}, nil
}
