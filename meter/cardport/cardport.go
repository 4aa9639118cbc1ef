// Package cardport is the reference meter's card reader: what happens when
// a customer or an engineer inserts a Sluice card (package card).
//
// The meter opens the card with card.Open, which authenticates both ways
// under the card's own key, diversified from the meter's card key and the
// card's UID: the card proves it holds the key, and so does the meter.
// Nothing reusable crosses the contacts. The vouchers waiting on the card
// then go through card.Transfer into Meter.LoadVoucher, which verifies the
// signature, the meter and the expiry, checks the sequence window and
// commits the credit in its journal before the card learns of it; the
// receipt written back tells the card what the meter decided. A card
// pulled at any moment leaves each voucher either pending (the next
// insertion finishes the job, the meter answering "already loaded" if it
// had committed) or consumed with its receipt.
//
// A card that fails authentication is reported to the meter as card-port
// abuse (Meter.CardAuthFailed): three in a row latch the tamper flag.
package cardport

import (
	"errors"
	"fmt"
	"time"

	"sluice/card"
	"sluice/meter"
)

// ErrNoRand is returned when the meter has no random source for the
// authentication challenges.
var ErrNoRand = errors.New("cardport: meter has no random source")

// Port is a meter as card.Transfer sees it, at one instant of the meter's
// clock (card insertion takes a moment, not a day).
type Port struct {
	Meter *meter.Meter
	Now   time.Time
}

var _ card.Meter = Port{}

// Accept hands one voucher from the card to the meter and translates the
// meter's receipt. It returns an error only when the meter could not decide
// (it lost power mid-commit): the voucher then stays pending on the card.
func (p Port) Accept(v []byte) (card.Receipt, error) {
	rc, err := p.Meter.LoadVoucher(p.Now, v, meter.FromCard)
	if errors.Is(err, meter.ErrHalted) {
		return card.Receipt{}, err
	}
	r := card.Receipt{Sequence: rc.Seq, Balance: rc.Credit, At: p.Now.UTC().Truncate(time.Second)}
	switch rc.Status {
	case meter.Loaded:
		r.Status, r.Amount = card.Loaded, rc.Amount
	case meter.Duplicate:
		r.Status = card.AlreadyLoaded
	default:
		r.Status = card.Rejected
	}
	return r, nil
}

// Insert runs one card insertion at time now: authenticate, move every
// pending voucher into the meter, and leave the meter's consumption and
// tamper state on the card for the vending office. It returns the receipts
// written to the card.
func Insert(m *meter.Meter, now time.Time, t card.Transport) ([]card.Receipt, error) {
	if !m.Ready() {
		return nil, meter.ErrNotProvisioned
	}
	rnd := m.Rand()
	if rnd == nil {
		return nil, ErrNoRand
	}
	s, err := card.Open(t, m.ID(), m.CardKey(), rnd)
	if err != nil {
		if errors.Is(err, card.ErrAuth) {
			if merr := m.CardAuthFailed(now); merr != nil {
				return nil, errors.Join(err, merr)
			}
		}
		return nil, fmt.Errorf("cardport: open card: %w", err)
	}
	rs, err := card.Transfer(s, Port{Meter: m, Now: now})
	if err != nil {
		return rs, fmt.Errorf("cardport: %w", err)
	}
	sn := m.Snapshot()
	fb := card.Feedback{At: now.UTC().Truncate(time.Second), TotalLitres: sn.Forward, Balance: sn.Credit,
		Tamper: uint32(sn.Tamper), Status: uint32(sn.Status)}
	if err := s.WriteFeedback(fb); err != nil {
		return rs, fmt.Errorf("cardport: feedback: %w", err)
	}
	return rs, nil
}
