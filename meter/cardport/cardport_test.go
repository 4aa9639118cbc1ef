package cardport_test

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"io"
	"testing"
	"time"

	"sluice/card"
	"sluice/meter"
	"sluice/meter/cardport"
	"sluice/voucher"
)

var (
	now      = time.Date(2026, time.March, 2, 10, 0, 0, 0, time.UTC)
	meterID  = uint64(4710001)
	batchKey = bytes.Repeat([]byte{0xBA}, 16)
	uid      = card.UID{0x04, 0x78, 0x2E, 0x21, 0x80, 0x1D, 0x80}
)

// drbg is a deterministic random source for reproducible sessions.
type drbg struct{ s [32]byte }

func (d *drbg) Read(p []byte) (int, error) {
	for i := range p {
		if i%32 == 0 {
			d.s = sha256.Sum256(d.s[:])
		}
		p[i] = d.s[i%32]
	}
	return len(p), nil
}

func key(label string) ed25519.PrivateKey {
	s := sha256.Sum256([]byte(label))
	return ed25519.NewKeyFromSeed(s[:])
}

type world struct {
	t      *testing.T
	m      *meter.Meter
	credit ed25519.PrivateKey
	keys   meter.Keys
	rnd    io.Reader
}

func newWorld(t *testing.T) *world {
	w := &world{t: t, credit: key("credit"), rnd: &drbg{}}
	copy(w.keys.MeterKey[:], "meter-card-key-1")
	copy(w.keys.TelemetryKey[:], "telemetry-key-01")
	w.keys.Trusted = voucher.Keyring{{Role: voucher.RoleCredit, Public: w.credit.Public().(ed25519.PublicKey)}}
	ee := meter.NewEEPROM(meter.DefaultEEPROMSize, meter.DefaultPageSize)
	if err := meter.Format(ee, meter.Provision{ID: meterID, Params: meter.DefaultParams(), Keys: w.keys}); err != nil {
		t.Fatal(err)
	}
	m, err := meter.Boot(ee, meter.Deps{Rand: w.rnd})
	if err != nil {
		t.Fatal(err)
	}
	w.m = m
	return w
}

// issue personalizes a blank emulated card for the meter, as the vending
// office does; store, when set, persists the card's memory and can fail
// (a pulled card).
func (w *world) issue(meterCardKey []byte, store func(card.Image) error) *card.Card {
	w.t.Helper()
	tk, err := card.TransportKey(batchKey, uid)
	if err != nil {
		w.t.Fatal(err)
	}
	img, err := card.NewBlank(uid, tk)
	if err != nil {
		w.t.Fatal(err)
	}
	c, err := card.New(img, &drbg{s: [32]byte{1}}, store)
	if err != nil {
		w.t.Fatal(err)
	}
	if _, err := card.Issue(c, batchKey, meterCardKey, card.Personalization{KeyVersion: 1, Kind: card.KindCustomer,
		MeterID: meterID, Issued: now}, w.rnd); err != nil {
		w.t.Fatal(err)
	}
	return c
}

func (w *world) voucher(seq, litres uint32) []byte {
	w.t.Helper()
	v := voucher.Voucher{Kind: voucher.KindCredit, MeterID: meterID, Sequence: seq, Issued: now.Add(-time.Hour),
		Expires: now.Add(24 * time.Hour), Unit: voucher.UnitLitres, Quantity: litres}
	b, err := voucher.Sign(&v, w.credit)
	if err != nil {
		w.t.Fatal(err)
	}
	return b
}

// office loads vouchers onto the card.
func (w *world) office(c card.Transport, vs ...[]byte) {
	w.t.Helper()
	s, err := card.Open(c, meterID, w.keys.MeterKey[:], w.rnd)
	if err != nil {
		w.t.Fatal(err)
	}
	for _, v := range vs {
		if _, err := s.LoadVoucher(v); err != nil {
			w.t.Fatal(err)
		}
	}
}

func TestInsertCard(t *testing.T) {
	w := newWorld(t)
	c := w.issue(w.keys.MeterKey[:], nil)
	w.office(c, w.voucher(2, 500), w.voucher(1, 1000))
	rs, err := cardport.Insert(w.m, now, c)
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 2 || rs[0].Status != card.Loaded || rs[1].Status != card.Loaded || rs[1].Balance != 1500 {
		t.Fatalf("receipts %+v", rs)
	}
	if sn := w.m.Snapshot(); sn.Credit != 1500 || sn.Status&meter.ValveClosed != 0 {
		t.Fatalf("meter after insertion: %+v", sn)
	}
	// The office reads the feedback the meter left.
	s, err := card.Open(c, meterID, w.keys.MeterKey[:], w.rnd)
	if err != nil {
		t.Fatal(err)
	}
	fb, ok, err := s.ReadFeedback()
	if err != nil || !ok || fb.Balance != 1500 {
		t.Fatalf("feedback %+v %v %v", fb, ok, err)
	}
	// A second insertion finds nothing pending and adds nothing.
	if rs, err := cardport.Insert(w.m, now, c); err != nil || len(rs) != 0 || w.m.Snapshot().Credit != 1500 {
		t.Fatalf("second insertion: %+v %v", rs, err)
	}
}

// TestCardPulledAfterMeterCommit: the card is pulled after the meter
// committed the voucher but before the receipt reached the card. The next
// insertion completes the transfer with "already loaded": credit once.
func TestCardPulledAfterMeterCommit(t *testing.T) {
	w := newWorld(t)
	pulled := false
	c := w.issue(w.keys.MeterKey[:], func(card.Image) error {
		if pulled {
			return errors.New("contacts lost")
		}
		return nil
	})
	w.office(c, w.voucher(1, 800))
	pulled = true
	if _, err := cardport.Insert(w.m, now, c); err == nil {
		t.Fatal("insertion with the card pulled succeeded")
	}
	if cr := w.m.Snapshot().Credit; cr != 800 {
		t.Fatalf("credit %d after the meter's commit", cr)
	}
	pulled = false
	c.Reset()
	rs, err := cardport.Insert(w.m, now, c)
	if err != nil || len(rs) != 1 || rs[0].Status != card.AlreadyLoaded {
		t.Fatalf("re-insertion: %+v %v", rs, err)
	}
	if cr := w.m.Snapshot().Credit; cr != 800 {
		t.Fatalf("credit %d: loaded twice", cr)
	}
}

// TestForgedCardIsCardPortAbuse: a card that claims this meter but holds a
// key not derived from the meter's fails authentication; three such
// insertions latch the card-port tamper flag.
func TestForgedCardIsCardPortAbuse(t *testing.T) {
	w := newWorld(t)
	forged := w.issue([]byte("not-the-meter-ky"), nil)
	for i := 1; i <= 3; i++ {
		_, err := cardport.Insert(w.m, now, forged)
		if !errors.Is(err, card.ErrAuth) {
			t.Fatalf("insertion %d: %v, want card.ErrAuth", i, err)
		}
		forged.Reset()
	}
	if tp := w.m.Snapshot().Tamper; tp&meter.TamperCardPort == 0 {
		t.Fatalf("tamper %v after 3 forged cards", tp)
	}
	if w.m.Snapshot().Credit != 0 {
		t.Fatal("a forged card added credit")
	}
}
