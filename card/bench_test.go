package card_test

import (
	"testing"

	"sluice/card"
	"sluice/card/internal/cardtest"
)

// BenchmarkOpen measures a meter's insertion handshake in-process: SELECT,
// GET IDENTITY, key diversification and the 3-pass authentication, both
// sides.
func BenchmarkOpen(b *testing.B) {
	w := cardtest.NewWorld(42)
	c := w.BlankCard(b, uid1, 1)
	if _, err := card.Issue(c, w.BatchKey, w.MeterCardKey, w.Personalization(card.KindCustomer), nil); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := card.Open(c, w.MeterID, w.MeterCardKey, nil); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkReadVouchers measures one CommMode.Full read of a full vouchers
// file (8 slots, 881 bytes) over short APDUs with 61xx chaining.
func BenchmarkReadVouchers(b *testing.B) {
	w := cardtest.NewWorld(42)
	c := w.BlankCard(b, uid1, 1)
	if _, err := card.Issue(c, w.BatchKey, w.MeterCardKey, w.Personalization(card.KindCustomer), nil); err != nil {
		b.Fatal(err)
	}
	s, _ := card.Open(c, w.MeterID, w.MeterCardKey, nil)
	for i := uint32(1); i <= card.Slots; i++ {
		if _, err := s.LoadVoucher(w.CreditVoucher(b, 42, i, i)); err != nil {
			b.Fatal(err)
		}
	}
	n := 0
	for b.Loop() {
		if n%10000 == 0 { // a session's counter ends at 65535 commands
			s, _ = card.Open(c, w.MeterID, w.MeterCardKey, nil)
		}
		n++
		if _, err := s.ReadVouchers(); err != nil {
			b.Fatal(err)
		}
	}
}
