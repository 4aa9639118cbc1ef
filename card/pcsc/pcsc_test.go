package pcsc_test

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"errors"
	"testing"
	"time"

	lib "github.com/gballet/go-libpcsclite"

	"sluice/card"
	"sluice/card/internal/cardtest"
	"sluice/card/pcsc"
	"sluice/card/vpcd"
	"sluice/cmac"
	"sluice/internal/testenv"
)

// slot is the vpcd slot this package's tests use (the CLI tests use 1).
const slot = 0

var addr = "127.0.0.1:35963"

// requirePCSC checks that pcscd runs with the vpcd driver loaded, without
// touching the vpcd socket (a probe connection would look like a card).
func requirePCSC(t *testing.T) {
	t.Helper()
	testenv.RequireFile(t, lib.PCSCDSockName)
	names, err := pcsc.Readers()
	if err != nil {
		testenv.Missing(t, "pcscd: %v", err)
		return
	}
	for _, n := range names {
		if n == vpcd.ReaderName(slot) {
			return
		}
	}
	testenv.Missing(t, "vpcd reader %q (pcscd has %q)", vpcd.ReaderName(slot), names)
}

// insert serves c in the vpcd reader until the returned pull function is
// called; pull waits until pcscd has seen the card go.
func insert(t *testing.T, c *card.Card) (pull func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- vpcd.Serve(ctx, addr, c, card.ATR()) }()
	pulled := false
	pull = func() {
		if pulled {
			return
		}
		pulled = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("vpcd: %v", err)
		}
		waitAbsent(t)
	}
	t.Cleanup(pull)
	return pull
}

// waitAbsent waits until pcscd reports no card in the reader, so that the
// next insertion is a real one (power on, fresh ATR).
func waitAbsent(t *testing.T) {
	t.Helper()
	ctx, err := lib.EstablishContext("", lib.ScopeSystem)
	if err != nil {
		t.Fatal(err)
	}
	defer ctx.ReleaseContext()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		c, err := ctx.Connect(vpcd.ReaderName(slot), lib.ShareShared, lib.ProtocolT1)
		if err != nil {
			return
		}
		c.Disconnect(lib.LeaveCard)
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal("pcscd still sees a card after it was pulled")
}

func connect(t *testing.T) *pcsc.Reader {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := pcsc.Connect(ctx, vpcd.ReaderName(slot))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestEndToEnd runs a card's life over the real PC/SC stack (pcscd and the
// vpcd driver): the vending office issues the card and loads a voucher, the
// card is pulled and inserted into the meter, which authenticates it
// mutually, takes the credit and writes a receipt and its feedback; the
// office then reads them back. A wiretap on the meter's reader checks that
// no key crosses PC/SC.
func TestEndToEnd(t *testing.T) {
	requirePCSC(t)
	w := cardtest.NewWorld(4242)
	c := w.BlankCard(t, card.UID{0x04, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66}, 1)

	names, err := pcsc.Readers()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("readers: %q", names)

	// The vending office.
	pull := insert(t, c)
	office := connect(t)
	id, err := card.Issue(office, w.BatchKey, w.MeterCardKey, w.Personalization(card.KindCustomer), nil)
	if err != nil {
		t.Fatal(err)
	}
	s, err := card.Open(office, w.MeterID, w.MeterCardKey, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.LoadVoucher(w.CreditVoucher(t, w.MeterID, 1, 2500)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.LoadVoucher(w.CreditVoucher(t, w.MeterID, 2, 500)); err != nil {
		t.Fatal(err)
	}
	if err := office.Close(); err != nil {
		t.Fatal(err)
	}
	pull()

	// The meter.
	pull = insert(t, c)
	mr := connect(t)
	start := time.Now()
	tap := &tap{t: mr}
	s, err = card.Open(tap, w.MeterID, w.MeterCardKey, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.PreferExtended()
	m := w.NewMeter()
	rs, err := card.Transfer(s, m)
	if err != nil {
		t.Fatal(err)
	}
	if m.Balance != 3000 || len(rs) != 2 || rs[1].Status != card.Loaded {
		t.Fatalf("meter balance %d, receipts %+v", m.Balance, rs)
	}
	if err := s.WriteFeedback(card.Feedback{At: w.Now, TotalLitres: 77, Balance: m.Balance}); err != nil {
		t.Fatal(err)
	}
	t.Logf("meter insertion over PC/SC (open, transfer 2 vouchers, feedback): %v, %d bytes on the wire", time.Since(start), len(tap.wire))
	ck, _ := card.CardKey(w.MeterCardKey, id.UID)
	enc, mac := sessionKeys(t, ck, tap)
	for _, k := range [][]byte{w.MeterCardKey, ck, enc, mac} {
		if bytes.Contains(tap.wire, k[:8]) || bytes.Contains(tap.wire, k[8:]) {
			t.Errorf("key %X crossed PC/SC", k)
		}
	}
	// The recovered keys are the session's: the MAC key verifies the card's
	// answer to WRITE FEEDBACK.
	if !macOK(t, ck, mac, tap) {
		t.Fatal("recovered session MAC key does not verify the card's answer")
	}

	// Replay the recorded meter session through PC/SC to the card, which
	// still holds the consumed vouchers: a fresh session refuses it.
	for i, c := range tap.commands {
		out, err := mr.Transmit(c)
		if err != nil {
			t.Fatal(err)
		}
		sw := uint16(out[len(out)-2])<<8 | uint16(out[len(out)-1])
		switch {
		case c[0] == 0x90 && c[1] == 0xAF && sw != card.SWAuthError:
			t.Fatalf("replayed authentication answered %04X", sw)
		case c[0] == 0x90 && c[1] > 0xAF && sw != card.SWAuthError:
			t.Fatalf("replayed command %d (%02X) answered %04X", i, c[1], sw)
		}
	}
	mr.Close()
	pull()

	// Another meter's reader refuses the card; the office reads the receipts.
	pull = insert(t, c)
	office = connect(t)
	defer office.Close()
	other := cardtest.NewWorld(4343)
	if _, err := card.Open(office, other.MeterID, other.MeterCardKey, nil); !errors.Is(err, card.ErrWrongCard) {
		t.Fatalf("other meter: %v", err)
	}
	s, err = card.Open(office, w.MeterID, w.MeterCardKey, nil)
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.ReadReceipts()
	if err != nil || len(got) != 2 || got[0].Amount != 2500 || got[1].Balance != 3000 {
		t.Fatalf("receipts %+v, %v", got, err)
	}
	if f, ok, err := s.ReadFeedback(); err != nil || !ok || f.TotalLitres != 77 {
		t.Fatalf("feedback %+v %v %v", f, ok, err)
	}
	pull()
	img := c.Image()
	if img.Slots[0].State != card.SlotConsumed || img.Slots[1].State != card.SlotConsumed {
		t.Fatalf("slots %v %v", img.Slots[0].State, img.Slots[1].State)
	}
}

// tap records every byte crossing the reader.
type tap struct {
	t        card.Transport
	wire     []byte
	commands [][]byte
	answers  [][]byte
}

func (p *tap) Transmit(b []byte) ([]byte, error) {
	p.wire = append(p.wire, b...)
	p.commands = append(p.commands, append([]byte(nil), b...))
	out, err := p.t.Transmit(b)
	p.wire = append(p.wire, out...)
	p.answers = append(p.answers, append([]byte(nil), out...))
	return out, err
}

// sessionKeys recovers the session keys of a recorded authentication the
// way only a holder of the card key can: decrypt RndB from the card's first
// answer and RndA from the reader's second command, then SV1/SV2 and CMAC
// (NTAG 424 DNA datasheet section 9), written out independently of package
// card.
func sessionKeys(t *testing.T, key []byte, p *tap) (enc, mac []byte) {
	t.Helper()
	var eRndB, part2 []byte
	for i, c := range p.commands {
		switch {
		case len(c) > 2 && c[0] == 0x90 && c[1] == 0x71:
			eRndB = p.answers[i][:16]
		case len(c) > 2 && c[0] == 0x90 && c[1] == 0xAF:
			part2 = c[5 : 5+32]
		}
	}
	if eRndB == nil || part2 == nil {
		t.Fatal("no authentication in the recording")
	}
	block, _ := aes.NewCipher(key)
	iv := make([]byte, 16)
	rndB := make([]byte, 16)
	cipher.NewCBCDecrypter(block, iv).CryptBlocks(rndB, eRndB)
	ab := make([]byte, 32)
	cipher.NewCBCDecrypter(block, iv).CryptBlocks(ab, part2)
	rndA := ab[:16]
	sv := func(p0, p1 byte) []byte {
		v := []byte{p0, p1, 0x00, 0x01, 0x00, 0x80, rndA[0], rndA[1]}
		for i := 0; i < 6; i++ {
			v = append(v, rndA[2+i]^rndB[i])
		}
		return append(append(v, rndB[6:]...), rndA[8:]...)
	}
	enc, _ = cmac.Sum(key, sv(0xA5, 0x5A))
	mac, _ = cmac.Sum(key, sv(0x5A, 0xA5))
	return enc, mac
}

// macOK checks, under the recovered MAC key, the truncated MAC of the
// card's answer to the last secured command of the recording: CMAC over
// RC 00, the command counter after that command (little-endian) and TI,
// keeping the odd bytes. TI comes from the card's pass-2 answer, decrypted
// with the card key.
func macOK(t *testing.T, key, mac []byte, p *tap) bool {
	t.Helper()
	var ti []byte
	secured := uint16(0)
	for i, c := range p.commands {
		switch {
		case len(c) > 2 && c[0] == 0x90 && c[1] == 0xAF:
			block, _ := aes.NewCipher(key)
			pt := make([]byte, 32)
			cipher.NewCBCDecrypter(block, make([]byte, 16)).CryptBlocks(pt, p.answers[i][:32])
			ti = pt[:4]
		case len(c) > 2 && c[0] == 0x90 && c[1] > 0xAF:
			secured++
		}
	}
	last := p.answers[len(p.answers)-1]
	if ti == nil || len(last) != 8+2 {
		return false
	}
	msg := binary.LittleEndian.AppendUint16([]byte{0x00}, secured)
	full, _ := cmac.Sum(mac, append(msg, ti...))
	for i := 0; i < 8; i++ {
		if last[i] != full[2*i+1] {
			return false
		}
	}
	return true
}
