package pcsc_test

import (
	"crypto/ed25519"
	"testing"
	"time"

	"sluice/card"
	"sluice/card/internal/cardtest"
	"sluice/meter"
	"sluice/voucher"
)

// meterPort is the reference meter's card port: it hands each voucher to
// meter.LoadVoucher, which verifies it and journals the credit before it
// returns, and turns the meter's MACed receipt into the card's receipt.
type meterPort struct {
	m   *meter.Meter
	now time.Time
}

func (p meterPort) Accept(b []byte) (card.Receipt, error) {
	rc, err := p.m.LoadVoucher(p.now, b, meter.FromCard)
	if rc.Status == 0 {
		return card.Receipt{}, err // the meter could not decide
	}
	data, err := rc.MarshalBinary()
	if err != nil {
		return card.Receipt{}, err
	}
	r := card.Receipt{Sequence: rc.Seq, Amount: rc.Amount, Balance: rc.Credit, At: rc.Time, Data: data}
	switch rc.Status {
	case meter.Loaded:
		r.Status = card.Loaded
	case meter.Duplicate:
		r.Status = card.AlreadyLoaded
	default:
		r.Status = card.Rejected
	}
	return r, nil
}

// TestEndToEndWithMeter: the office issues a card and loads two vouchers
// over PC/SC; the card goes into the reference meter (package meter on an
// emulated EEPROM), which authenticates it over PC/SC, takes the credit
// and writes its MACed receipts back; a copy of the first voucher on the
// card is then refused as a duplicate; the office verifies the receipts
// with the meter's telemetry key.
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
		s, err := card.Open(r, m.ID(), keys.MeterKey[:], nil)
		if err != nil {
			t.Fatal(err)
		}
		rs, err := card.Transfer(s, meterPort{m, w.Now})
		if err != nil {
			t.Fatal(err)
		}
		sn := m.Snapshot()
		if err := s.WriteFeedback(card.Feedback{At: w.Now, TotalLitres: sn.Forward, Balance: sn.Credit, Tamper: uint32(sn.Tamper), Status: uint32(sn.Status)}); err != nil {
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

	// The office checks the receipts are the meter's.
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
	for _, r := range got {
		mr, err := meter.OpenReceipt(r.Data, keys.TelemetryKey)
		if err != nil {
			t.Fatalf("receipt %d: %v", r.Sequence, err)
		}
		if mr.Seq != r.Sequence || mr.Status != meter.Loaded || mr.Amount != r.Amount {
			t.Fatalf("meter receipt %+v vs card receipt %+v", mr, r)
		}
	}
	if f, ok, err := s.ReadFeedback(); err != nil || !ok || f.Balance != m.Snapshot().Credit {
		t.Fatalf("feedback %+v %v %v", f, ok, err)
	}
}
