package card_test

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
	"time"

	"sluice/card"
	"sluice/card/internal/cardtest"
)

var uid1 = card.UID{0x04, 0x78, 0x2E, 0x21, 0x80, 0x1D, 0x80}

// issued returns a card personalized for w's meter, of kind.
func issued(t *testing.T, w *cardtest.World, kind card.Kind) *card.Card {
	t.Helper()
	c := w.BlankCard(t, uid1, 1)
	id, err := card.Issue(c, w.BatchKey, w.MeterCardKey, w.Personalization(kind), cardtest.Rand(2))
	if err != nil {
		t.Fatal(err)
	}
	if id.Lifecycle != card.Personalized || id.MeterID != w.MeterID || id.Kind != kind || id.UID != uid1 || !id.Issued.Equal(w.Now) {
		t.Fatalf("identity after issue: %+v", id)
	}
	return c
}

func open(t *testing.T, w *cardtest.World, tr card.Transport) *card.Session {
	t.Helper()
	s, err := card.Open(tr, w.MeterID, w.MeterCardKey, cardtest.Rand(3))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func load(t *testing.T, w *cardtest.World, tr card.Transport, vs ...[]byte) {
	t.Helper()
	s := open(t, w, tr)
	for _, v := range vs {
		if _, err := s.LoadVoucher(v); err != nil {
			t.Fatal(err)
		}
	}
}

func TestIssueLoadTransfer(t *testing.T) {
	w := cardtest.NewWorld(42)
	c := issued(t, w, card.KindCustomer)
	// Loaded out of order: the meter must still see them ascending.
	load(t, w, c, w.CreditVoucher(t, 42, 2, 500), w.CreditVoucher(t, 42, 1, 1000))

	m := w.NewMeter()
	s := open(t, w, c)
	rs, err := card.Transfer(s, m)
	if err != nil {
		t.Fatal(err)
	}
	if m.Balance != 1500 || m.Loads != 2 || len(rs) != 2 || rs[0].Sequence != 1 || rs[1].Balance != 1500 {
		t.Fatalf("balance %d loads %d receipts %+v", m.Balance, m.Loads, rs)
	}
	f := card.Feedback{At: w.Now, TotalLitres: 12345, Balance: m.Balance, Tamper: 0x4, Status: 0x1}
	if err := s.WriteFeedback(f); err != nil {
		t.Fatal(err)
	}

	// The office reads back what the meter left.
	s = open(t, w, c)
	slots, err := s.ReadVouchers()
	if err != nil {
		t.Fatal(err)
	}
	for _, sl := range slots {
		if sl.State != card.SlotConsumed {
			t.Errorf("slot %d is %v after transfer", sl.Index, sl.State)
		}
	}
	got, err := s.ReadReceipts()
	if err != nil || len(got) != 2 || got[1].Status != card.Loaded || got[1].Amount != 500 || !got[1].At.Equal(w.Now) {
		t.Fatalf("receipts %+v, %v", got, err)
	}
	gf, ok, err := s.ReadFeedback()
	if err != nil || !ok || gf != f {
		t.Fatalf("feedback %+v %v %v, want %+v", gf, ok, err, f)
	}

	// A second insertion loads nothing more.
	if rs, err := card.Transfer(open(t, w, c), m); err != nil || len(rs) != 0 || m.Balance != 1500 {
		t.Fatalf("second transfer: %v %v balance %d", rs, err, m.Balance)
	}
	// Consumed slots are reused by the office.
	load(t, w, c, w.CreditVoucher(t, 42, 3, 1))
}

// pulled is a transport whose card is pulled out after n exchanges. If
// midway, the exchange that trips it still reaches the card but its answer
// is lost: the worst case, where the card changed and the reader cannot
// know.
type pulled struct {
	card   card.Transport
	n      int
	midway bool
	out    bool
}

var errPulled = errors.New("card pulled")

func (p *pulled) Transmit(b []byte) ([]byte, error) {
	if p.out {
		return nil, errPulled
	}
	if p.n == 0 {
		p.out = true
		if p.midway {
			p.card.Transmit(b)
		}
		return nil, errPulled
	}
	p.n--
	return p.card.Transmit(b)
}

// TestPullAtEveryStep pulls the card at every exchange of an insertion
// (before the card sees the command, and after it acted but before the
// meter hears back), reinserts it, and checks that every voucher is
// credited exactly once and ends consumed with one receipt.
func TestPullAtEveryStep(t *testing.T) {
	w := cardtest.NewWorld(7)
	vs := [][]byte{w.CreditVoucher(t, 7, 1, 100), w.CreditVoucher(t, 7, 2, 20), w.CreditVoucher(t, 7, 3, 3)}
	for n := 0; ; n++ {
		done := false
		for _, midway := range []bool{false, true} {
			t.Run(fmt.Sprintf("after-%d-midway-%v", n, midway), func(t *testing.T) {
				c := issued(t, w, card.KindCustomer)
				load(t, w, c, vs...)
				m := w.NewMeter()
				c.Reset()

				p := &pulled{card: c, n: n, midway: midway}
				if s, err := card.Open(p, w.MeterID, w.MeterCardKey, cardtest.Rand(9)); err == nil {
					_, err = card.Transfer(s, m)
					if err == nil {
						done = true
					}
				}
				c.Reset() // reinserted: power cycle
				if _, err := card.Transfer(open(t, w, c), m); err != nil {
					t.Fatal(err)
				}
				if m.Balance != 123 || m.Loads != 3 {
					t.Fatalf("balance %d after %d loads, want 123 after 3", m.Balance, m.Loads)
				}
				img := c.Image()
				for _, s := range img.Slots[:3] {
					if s.State != card.SlotConsumed {
						t.Fatalf("slot %d %v", s.Index, s.State)
					}
				}
				if len(img.Receipts) != 3 {
					t.Fatalf("%d receipts: %+v", len(img.Receipts), img.Receipts)
				}
			})
		}
		if done {
			if n < 9 { // select, identity, 2 auth, read (+1 GET RESPONSE), 3 receipts
				t.Fatalf("an insertion finished in only %d exchanges", n)
			}
			break
		}
	}
}

// TestStoreFailureIsAtomic: a card whose memory write fails answers with an
// error and keeps its old state.
func TestStoreFailureIsAtomic(t *testing.T) {
	w := cardtest.NewWorld(5)
	c0 := issued(t, w, card.KindCustomer)
	fail := false
	c, err := card.New(c0.Image(), cardtest.Rand(4), func(card.Image) error {
		if fail {
			return errors.New("EEPROM write cut")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	load(t, w, c, w.CreditVoucher(t, 5, 1, 10))
	before := c.Image()
	fail = true
	m := w.NewMeter()
	if _, err := card.Transfer(open(t, w, c), m); err == nil {
		t.Fatal("transfer succeeded with a failing card memory")
	}
	after := c.Image()
	if after.Slots[0].State != card.SlotPending || len(after.Receipts) != len(before.Receipts) {
		t.Fatalf("card changed despite the failed write: %+v", after.Slots[0])
	}
	fail = false
	if _, err := card.Transfer(open(t, w, c), m); err != nil || m.Balance != 10 || m.Loads != 1 {
		t.Fatalf("retry: %v balance %d loads %d", err, m.Balance, m.Loads)
	}
}

// TestMeterJournalFailure: a meter that cannot decide leaves the voucher
// pending.
func TestMeterJournalFailure(t *testing.T) {
	w := cardtest.NewWorld(6)
	c := issued(t, w, card.KindCustomer)
	load(t, w, c, w.CreditVoucher(t, 6, 1, 10))
	m := w.NewMeter()
	m.Fail = true
	if _, err := card.Transfer(open(t, w, c), m); err == nil {
		t.Fatal("transfer succeeded with a failing meter journal")
	}
	if c.Image().Slots[0].State != card.SlotPending {
		t.Fatal("voucher left the pending set without a meter decision")
	}
}

func TestWrongMeterAndWrongKey(t *testing.T) {
	w := cardtest.NewWorld(42)
	other := cardtest.NewWorld(43)
	c := issued(t, w, card.KindCustomer)

	// Another meter refuses the card before using any key.
	if _, err := card.Open(c, other.MeterID, other.MeterCardKey, nil); !errors.Is(err, card.ErrWrongCard) {
		t.Fatalf("other meter: %v, want ErrWrongCard", err)
	}
	// A card that claims meter 43 but holds meter 42's key (a forged
	// binding) fails the mutual authentication.
	img := c.Image()
	img.MeterID = other.MeterID
	forged, _ := card.New(img, cardtest.Rand(5), nil)
	if _, err := card.Open(forged, other.MeterID, other.MeterCardKey, nil); !errors.Is(err, card.ErrAuth) {
		t.Fatalf("forged binding: %v, want ErrAuth", err)
	}
	// A blank card is not a customer card.
	if _, err := card.Open(w.BlankCard(t, uid1, 1), w.MeterID, w.MeterCardKey, nil); !errors.Is(err, card.ErrWrongCard) {
		t.Fatalf("blank card: %v, want ErrWrongCard", err)
	}
	// A card cannot be personalized twice (no re-binding to another meter).
	if _, err := card.Issue(c, w.BatchKey, other.MeterCardKey, other.Personalization(card.KindCustomer), nil); !errors.Is(err, card.ErrWrongCard) {
		t.Fatalf("re-issue: %v", err)
	}
	// A blank card refuses a wrong batch key.
	if _, err := card.Issue(w.BlankCard(t, uid1, 1), bytes.Repeat([]byte{1}, 16), w.MeterCardKey, w.Personalization(card.KindCustomer), nil); !errors.Is(err, card.ErrAuth) {
		t.Fatalf("wrong batch key: %v, want ErrAuth", err)
	}
}

// fakeCard answers the authentication with bytes it cannot have computed
// without the key: it replays the reader's own ciphertext. The reader must
// notice through RndA', however plausible the rest of the card looks.
type fakeCard struct{ real *card.Card }

func (f fakeCard) Transmit(b []byte) ([]byte, error) {
	cmd, err := card.ParseCommand(b)
	if err == nil && cmd.INS == 0xAF {
		return card.Response{Data: cmd.Data, SW: card.SWNativeOK}.Marshal(), nil
	}
	return f.real.Transmit(b)
}

func TestReaderChecksCard(t *testing.T) {
	w := cardtest.NewWorld(42)
	c := issued(t, w, card.KindCustomer)
	if _, err := card.Open(fakeCard{c}, w.MeterID, w.MeterCardKey, nil); !errors.Is(err, card.ErrAuth) {
		t.Fatalf("fake card: %v, want ErrAuth", err)
	}
}

func TestLoadRules(t *testing.T) {
	w := cardtest.NewWorld(42)
	c := issued(t, w, card.KindCustomer)
	s := open(t, w, c)
	var se *card.StatusError
	try := func(v []byte, sw uint16) {
		t.Helper()
		if _, err := s.LoadVoucher(v); !errors.As(err, &se) || se.SW != sw {
			t.Fatalf("load: %v, want SW %04X", err, sw)
		}
		s = open(t, w, c) // an error ends the session
	}
	try(w.CreditVoucher(t, 43, 1, 10), card.SWPermissionDenied)               // another meter
	try(w.TamperVoucher(t, 1, w.Now.Add(time.Hour)), card.SWPermissionDenied) // engineering on a customer card
	try([]byte("not a voucher"), card.SWParameterError)                       // malformed
	for i := uint32(1); i <= card.Slots; i++ {
		if _, err := s.LoadVoucher(w.CreditVoucher(t, 42, i, 10)); err != nil {
			t.Fatal(err)
		}
	}
	try(w.CreditVoucher(t, 42, 3, 10), card.SWDuplicate)
	try(w.CreditVoucher(t, 42, 99, 10), card.SWBoundaryError) // full of pending vouchers
}

// TestEngineeringCard: engineering vouchers on an engineering card, bound
// to one meter and expiring; an expired one is consumed as Rejected so it
// cannot block the card.
func TestEngineeringCard(t *testing.T) {
	w := cardtest.NewWorld(42)
	c := issued(t, w, card.KindEngineering)
	s := open(t, w, c)
	if _, err := s.LoadVoucher(w.CreditVoucher(t, 42, 1, 10)); err == nil {
		t.Fatal("engineering card took a credit voucher")
	}
	load(t, w, c, w.TamperVoucher(t, 2, w.Now.Add(time.Hour)), w.TamperVoucher(t, 3, w.Now.Add(-time.Minute)))
	m := w.NewMeter()
	rs, err := card.Transfer(open(t, w, c), m)
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 2 || rs[0].Status != card.Loaded || rs[1].Status != card.Rejected || m.Balance != 0 {
		t.Fatalf("receipts %+v balance %d", rs, m.Balance)
	}
}

// TestReplayedVoucherAcrossCards: the same voucher copied onto a second card
// of the same meter is credited once: the meter's sequence memory decides.
func TestReplayedVoucherAcrossCards(t *testing.T) {
	w := cardtest.NewWorld(42)
	v := w.CreditVoucher(t, 42, 1, 10)
	c1 := issued(t, w, card.KindCustomer)
	c2 := w.BlankCard(t, card.UID{1, 2, 3, 4, 5, 6, 7}, 8)
	if _, err := card.Issue(c2, w.BatchKey, w.MeterCardKey, w.Personalization(card.KindCustomer), nil); err != nil {
		t.Fatal(err)
	}
	load(t, w, c1, v)
	load(t, w, c2, v)
	m := w.NewMeter()
	for _, c := range []*card.Card{c1, c2} {
		if _, err := card.Transfer(open(t, w, c), m); err != nil {
			t.Fatal(err)
		}
	}
	if m.Balance != 10 {
		t.Fatalf("balance %d, want 10", m.Balance)
	}
	if r := c2.Image().Receipts; len(r) != 1 || r[0].Status != card.AlreadyLoaded {
		t.Fatalf("second card receipts %+v", r)
	}
}

// TestCardKeysAreDiversified: two cards of one meter, and one card UID on
// two meters, never share a key.
func TestCardKeysAreDiversified(t *testing.T) {
	w, o := cardtest.NewWorld(1), cardtest.NewWorld(2)
	k1, _ := card.CardKey(w.MeterCardKey, uid1)
	k2, _ := card.CardKey(w.MeterCardKey, card.UID{1})
	k3, _ := card.CardKey(o.MeterCardKey, uid1)
	t1, _ := card.TransportKey(w.MeterCardKey, uid1)
	if bytes.Equal(k1, k2) || bytes.Equal(k1, k3) || bytes.Equal(k1, t1) || bytes.Equal(k1, w.MeterCardKey) {
		t.Fatal("card keys collide")
	}
}

func TestImageFile(t *testing.T) {
	w := cardtest.NewWorld(42)
	c := issued(t, w, card.KindCustomer)
	load(t, w, c, w.CreditVoucher(t, 42, 1, 10))
	path := t.TempDir() + "/card.json"
	if err := card.SaveImage(path, c.Image()); err != nil {
		t.Fatal(err)
	}
	img, err := card.LoadImage(path)
	if err != nil {
		t.Fatal(err)
	}
	c2, err := card.New(img, cardtest.Rand(1), nil)
	if err != nil {
		t.Fatal(err)
	}
	if rs, err := card.Transfer(open(t, w, c2), w.NewMeter()); err != nil || len(rs) != 1 {
		t.Fatalf("card from file: %v %v", rs, err)
	}
}

// TestCardStatusWords: the plain (unauthenticated) error paths.
func TestCardStatusWords(t *testing.T) {
	w := cardtest.NewWorld(42)
	c := issued(t, w, card.KindCustomer)
	c.Reset()
	for _, tc := range []struct {
		apdu string
		sw   uint16
	}{
		{"9060000000", card.SWConditions},                                                                // not selected
		{"00C0000010", card.SWConditions},                                                                // nothing to GET RESPONSE
		{"00A4040003 A00000 00", card.SWFileNotFound},                                                    // another application
		{"00A4040008 F0534C5549434501 00", card.SWOK},                                                    // select
		{"80CA000000", card.SWCLANotSupported},                                                           // unknown class
		{"00B0000000", card.SWINSNotSupported},                                                           // READ BINARY
		{"9060010000", card.SWWrongP1P2},                                                                 //
		{"90BD00000901000000000000000000", card.SWAuthError},                                             // secured command, no session
		{"90AF0000200000000000000000000000000000000000000000000000000000000000000000", card.SWAuthError}, // pass 2 first
		{"9071000002010000", card.SWNoSuchFile},                                                          // key 1
		{"90710000020000 00", card.SWAdditionalFrame},                                                    // key 0
		{"90AF0000200000000000000000000000000000000000000000000000000000000000000000", card.SWAuthError}, // wrong RndB'
		{"90", card.SWWrongLength},                                                                       // malformed
	} {
		r, err := card.ParseResponse(c.Process(h(tc.apdu)))
		if err != nil || r.SW != tc.sw {
			t.Errorf("%s: SW %04X, want %04X (%v)", tc.apdu, r.SW, tc.sw, err)
		}
	}
}

// TestRekey: the meter's card key changes; the office moves the card to the
// new key. The old key stops working, the new one works, the vouchers stay,
// and a rekey cut after the card stored the new key completes on retry.
func TestRekey(t *testing.T) {
	w := cardtest.NewWorld(42)
	c := issued(t, w, card.KindCustomer)
	load(t, w, c, w.CreditVoucher(t, 42, 1, 10))
	newKey := bytes.Repeat([]byte{0x5E}, 16)

	// Cut: the card stores the new key but the answer is lost.
	// Exchanges: identify (2), open (identify 2, authenticate 2), CHANGE KEY.
	p := &pulled{card: c, n: 6, midway: true}
	if _, err := card.Rekey(p, w.MeterCardKey, newKey, 2, nil); err == nil {
		t.Fatal("rekey succeeded through a pulled card")
	}
	if img := c.Image(); img.KeyVersion != 2 || !bytes.Equal(img.Key, mustCardKey(t, newKey)) {
		t.Fatalf("the cut did not fall after the card stored the key (version %d)", img.KeyVersion)
	}
	c.Reset()
	id, err := card.Rekey(c, w.MeterCardKey, newKey, 2, nil)
	if err != nil {
		t.Fatal(err)
	}
	if id.KeyVersion != 2 {
		t.Fatalf("key version %d", id.KeyVersion)
	}
	if _, err := card.Open(c, w.MeterID, w.MeterCardKey, nil); !errors.Is(err, card.ErrAuth) {
		t.Fatalf("old key after rekey: %v", err)
	}
	m := w.NewMeter()
	s, err := card.Open(c, w.MeterID, newKey, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := card.Transfer(s, m); err != nil || m.Balance != 10 {
		t.Fatalf("transfer after rekey: %v, balance %d", err, m.Balance)
	}
	// A blank card has no card key to change.
	if _, err := card.Rekey(w.BlankCard(t, uid1, 3), w.MeterCardKey, newKey, 2, nil); !errors.Is(err, card.ErrWrongCard) {
		t.Fatalf("blank card: %v", err)
	}
}

func mustCardKey(t *testing.T, meterCardKey []byte) []byte {
	t.Helper()
	k, err := card.CardKey(meterCardKey, uid1)
	if err != nil {
		t.Fatal(err)
	}
	return k
}
