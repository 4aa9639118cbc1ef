package pcsc_test

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	lib "github.com/gballet/go-libpcsclite"

	"sluice/card"
	"sluice/card/internal/cardtest"
	"sluice/card/pcsc"
	"sluice/card/vpcd"
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
	go func() { done <- vpcd.Serve(ctx, addr, c, card.ATR) }()
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
	for _, k := range [][]byte{w.MeterCardKey, ck} { // session keys: see card's TestSniffing
		if bytes.Contains(tap.wire, k[:8]) || bytes.Contains(tap.wire, k[8:]) {
			t.Errorf("key %X crossed PC/SC", k)
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

type tap struct {
	t    card.Transport
	wire []byte
}

func (p *tap) Transmit(b []byte) ([]byte, error) {
	p.wire = append(p.wire, b...)
	out, err := p.t.Transmit(b)
	p.wire = append(p.wire, out...)
	return out, err
}
