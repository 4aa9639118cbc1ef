package card

import (
	"fmt"
	"io"
)

// Issue personalizes the blank card on t for one meter: it authenticates
// under the card's transport key (diversified from batchKey and the UID),
// writes the card key CardKey(meterCardKey, UID) with p's binding, then
// proves the result by authenticating under the new key. p.Key is ignored.
// It returns the card's new identity.
func Issue(t Transport, batchKey, meterCardKey []byte, p Personalization, rnd io.Reader) (Identity, error) {
	id, err := Identify(t)
	if err != nil {
		return Identity{}, err
	}
	if id.Lifecycle != Blank {
		return Identity{}, fmt.Errorf("%w: card %v is already %v for meter %d", ErrWrongCard, id.UID, id.Lifecycle, id.MeterID)
	}
	tk, err := TransportKey(batchKey, id.UID)
	if err != nil {
		return Identity{}, err
	}
	s, err := Authenticate(t, id, tk, rnd)
	if err != nil {
		return Identity{}, fmt.Errorf("card %v: transport key: %w", id.UID, err)
	}
	if p.Key, err = CardKey(meterCardKey, id.UID); err != nil {
		return Identity{}, err
	}
	if err := s.Personalize(p); err != nil {
		return Identity{}, fmt.Errorf("card %v: personalize: %w", id.UID, err)
	}
	s, err = Open(t, p.MeterID, meterCardKey, rnd)
	if err != nil {
		return Identity{}, fmt.Errorf("card %v: check after personalize: %w", id.UID, err)
	}
	return s.Identity(), nil
}

// Rekey moves the card on t from its meter's old card key to the new one
// (version newVersion), after the meter's card key changed: it opens the
// card with the old key, writes CardKey(newMeterCardKey, UID), and proves
// the result with the new key. If the card already answers to the new key
// (a previous attempt was cut after the card stored it), Rekey only checks
// that. It returns the card's identity afterwards.
func Rekey(t Transport, oldMeterCardKey, newMeterCardKey []byte, newVersion uint8, rnd io.Reader) (Identity, error) {
	id, err := Identify(t)
	if err != nil {
		return Identity{}, err
	}
	if id.Lifecycle != Personalized {
		return Identity{}, fmt.Errorf("%w: card %v is %v", ErrWrongCard, id.UID, id.Lifecycle)
	}
	if id.KeyVersion != newVersion {
		s, err := Open(t, id.MeterID, oldMeterCardKey, rnd)
		if err != nil {
			return Identity{}, fmt.Errorf("card %v: old key: %w", id.UID, err)
		}
		k, err := CardKey(newMeterCardKey, id.UID)
		if err != nil {
			return Identity{}, err
		}
		if err := s.ChangeKey(k, newVersion); err != nil {
			return Identity{}, fmt.Errorf("card %v: change key: %w", id.UID, err)
		}
	}
	s, err := Open(t, id.MeterID, newMeterCardKey, rnd)
	if err != nil {
		return Identity{}, fmt.Errorf("card %v: check new key: %w", id.UID, err)
	}
	return s.Identity(), nil
}

// Meter is the meter's side of a card-to-meter transfer: its voucher
// verification and its journal. Accept must verify the voucher (signature,
// meter, expiry), check its sequence against the meter's memory, and commit
// the credit or action together with the new sequence in one journaled step
// before returning. It returns the receipt to write back:
//
//   - Loaded, with the amount and balance, when it committed the voucher;
//   - AlreadyLoaded when the sequence memory already holds it (the card was
//     pulled after the commit, or the voucher is replayed): nothing added;
//   - Rejected when verification failed: nothing added.
//
// An error means the meter could not decide (its journal failed): the
// voucher then stays pending on the card.
type Meter interface {
	Accept(voucher []byte) (Receipt, error)
}

// Transfer moves every pending voucher from the card to the meter, in
// ascending sequence order, and returns the receipts written. For each
// voucher the meter commits first and the card learns of it second, so a
// card pulled at any byte leaves either the voucher pending (and the next
// insertion finishes the job, the meter answering AlreadyLoaded if it had
// committed) or the voucher consumed with its receipt. Nothing is lost;
// nothing is credited twice, because the meter's sequence memory, not the
// card, decides.
func Transfer(s *Session, m Meter) ([]Receipt, error) {
	slots, err := s.ReadVouchers()
	if err != nil {
		return nil, fmt.Errorf("card: read vouchers: %w", err)
	}
	var done []Receipt
	for _, slot := range slots {
		if slot.State != SlotPending {
			continue
		}
		r, err := m.Accept(slot.Voucher)
		if err != nil {
			return done, fmt.Errorf("card: meter refused to decide on voucher %d: %w", slot.Sequence, err)
		}
		// The receipt names the slot's sequence whatever the meter parsed,
		// so a malformed voucher can still be marked consumed.
		r.Sequence = slot.Sequence
		if err := s.WriteReceipt(slot.Index, r); err != nil {
			return done, fmt.Errorf("card: receipt for voucher %d: %w", slot.Sequence, err)
		}
		done = append(done, r)
	}
	return done, nil
}
