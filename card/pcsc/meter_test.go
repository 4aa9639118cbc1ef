package pcsc_test

import (
	"crypto/ed25519"
	"errors"
	"testing"

	"sluice/card"
	"sluice/card/internal/cardtest"
	"sluice/meter"
	"sluice/meter/cardport"
	"sluice/voucher"
)

// TestEndToEndWithMeter: the office issues a card and loads two vouchers
// over PC/SC; the card goes into the reference meter (package meter on an
// emulated EEPROM, through its card port meter/cardport), which
// authenticates it over PC/SC, takes the credit and writes its receipts and
// feedback back; the card refuses a reloaded copy of a consumed voucher; a
// forged card that claims this meter without its key fails the mutual
// authentication; the office reads the receipts back.
func TestEndToEndWithMeter(t *testing.T) {
	requirePCSC(t)
	w := cardtest.NewWorld(77)
	w.MeterID = 4710077
	var keys meter.Keys
	copy(keys.MeterKey[:], w.MeterCardKey)
	copy(keys.TelemetryKey[:], "telemetry-key-77")
	keys.Trusted = voucher.Keyring{
		{Role: voucher.RoleCredit, Public: w.Credit.Public().(ed25519.PublicKey)},
		{Role: voucher.RoleManagement, Public: w.Management.Public().(ed25519.PublicKey)},
	}
	ee := meter.NewEEPROM(meter.DefaultEEPROMSize, meter.DefaultPageSize)
	if err := meter.Format(ee, meter.Provision{ID: w.MeterID, Params: meter.DefaultParams(), Keys: keys}); err != nil {
		t.Fatal(err)
	}
	m, err := meter.Boot(ee, meter.Deps{Rand: cardtest.Rand(1)})
	if err != nil {
		t.Fatal(err)
	}
	before := m.Snapshot().Credit

	c := w.BlankCard(t, card.UID{0x04, 0x77, 0x77, 0x77, 0x77, 0x77, 0x77}, 1)
	v1 := w.CreditVoucher(t, w.MeterID, 1, 4000)

	// Vending office: issue, load.
	pull := insert(t, c)
	office := connect(t)
	if _, err := card.Issue(office, w.BatchKey, w.MeterCardKey, w.Personalization(card.KindCustomer), nil); err != nil {
		t.Fatal(err)
	}
	s, err := card.Open(office, w.MeterID, w.MeterCardKey, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range [][]byte{v1, w.CreditVoucher(t, w.MeterID, 2, 1500)} {
		if _, err := s.LoadVoucher(v); err != nil {
			t.Fatal(err)
		}
	}
	office.Close()
	pull()

	// The meter.
	insertMeter := func() []card.Receipt {
		t.Helper()
		pull := insert(t, c)
		defer pull()
		r := connect(t)
		defer r.Close()
		rs, err := cardport.Insert(m, w.Now, r)
		if err != nil {
			t.Fatal(err)
		}
		return rs
	}
	rs := insertMeter()
	if got := m.Snapshot().Credit - before; got != 5500 || len(rs) != 2 {
		t.Fatalf("meter credited %d with %d receipts, want 5500 with 2", got, len(rs))
	}

	// The same voucher again (the office reloads a copy): a duplicate.
	pull = insert(t, c)
	office = connect(t)
	s, err = card.Open(office, w.MeterID, w.MeterCardKey, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.LoadVoucher(v1); err == nil {
		t.Fatal("the card took a voucher it already consumed")
	}
	office.Close()
	pull()
	if rs := insertMeter(); len(rs) != 0 || m.Snapshot().Credit-before != 5500 {
		t.Fatalf("second insertion: %+v, credit %d", rs, m.Snapshot().Credit-before)
	}

	// A forged card: bound to this meter's ID, keyed from another key.
	forger := cardtest.NewWorld(78)
	forger.MeterID = w.MeterID
	fc := forger.BlankCard(t, card.UID{0x04, 0x66, 0x66, 0x66, 0x66, 0x66, 0x66}, 2)
	if _, err := card.Issue(fc, forger.BatchKey, forger.MeterCardKey, forger.Personalization(card.KindCustomer), nil); err != nil {
		t.Fatal(err)
	}
	pull = insert(t, fc)
	fr := connect(t)
	if _, err := cardport.Insert(m, w.Now, fr); !errors.Is(err, card.ErrAuth) {
		t.Fatalf("forged card: %v, want ErrAuth", err)
	}
	fr.Close()
	pull()
	if m.Snapshot().Credit-before != 5500 {
		t.Fatal("the forged card changed the credit")
	}

	// The office reads the receipts back.
	pull = insert(t, c)
	defer pull()
	office = connect(t)
	defer office.Close()
	s, err = card.Open(office, w.MeterID, w.MeterCardKey, nil)
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.ReadReceipts()
	if err != nil || len(got) != 2 {
		t.Fatalf("receipts %+v %v", got, err)
	}
	if got[0].Status != card.Loaded || got[0].Amount != 4000 || got[1].Amount != 1500 || got[1].Balance != m.Snapshot().Credit {
		t.Fatalf("receipts %+v, meter credit %d", got, m.Snapshot().Credit)
	}
	if f, ok, err := s.ReadFeedback(); err != nil || !ok || f.Balance != m.Snapshot().Credit {
		t.Fatalf("feedback %+v %v %v", f, ok, err)
	}
}
