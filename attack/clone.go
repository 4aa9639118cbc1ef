package attack

import (
	"context"
	"errors"
	"fmt"

	"sluice/card"
	"sluice/meter/cardport"
)

func clonedCard() Attack {
	return Attack{
		ID:       "2",
		Name:     "cloned card",
		Weakness: "a card is a bag of bytes: copy every readable byte to a blank card and spend the credit twice, or at another meter",
		Defence:  "the key never leaves the card unauthenticated (only the identity is readable); a full invasive copy still spends each voucher once, because the meter's sequence memory decides; cards are bound to one meter",
		Play: func(ctx context.Context, lab *Lab, r *Recorder) error {
			w, err := newCardWorld(ctx, lab, "attack 2", 20_000_001)
			if err != nil {
				return err
			}
			other, err := lab.NewMeter(ctx, 20_000_002, MeterSpec{})
			if err != nil {
				return err
			}
			rnd := lab.Rand("attack 2 attacker")
			uid := card.UID{0x04, 0xC1, 0x0E, 0x00, 0x00, 0x00, 0x01}
			genuine, err := w.issue(uid, card.KindCustomer, nil)
			if err != nil {
				return fmt.Errorf("issue: %w", err)
			}
			v, err := lab.CreditVoucher(ctx, w.m.ID(), 1, 500)
			if err != nil {
				return err
			}
			if err := w.load(genuine, v); err != nil {
				return fmt.Errorf("load voucher: %w", err)
			}
			genuine.Reset()

			// What can be read without the key? Every instruction in both
			// classes, with no session.
			probe, err := card.New(genuine.Image(), rnd, nil)
			if err != nil {
				return err
			}
			readable, answered := 0, 0
			for _, cla := range []byte{0x00, 0x90} {
				for ins := 0; ins < 256; ins++ {
					probe.Reset()
					// Select the application, as any reader would.
					probe.Process(append([]byte{0x00, 0xA4, 0x04, 0x00, byte(len(card.AID()))}, append(card.AID(), 0x00)...))
					out := probe.Process([]byte{cla, byte(ins), 0x00, 0x00, 0x00})
					if len(out) >= 2 {
						sw := uint16(out[len(out)-2])<<8 | uint16(out[len(out)-1])
						if sw == card.SWOK || sw == card.SWNativeOK || sw == card.SWAdditionalFrame {
							answered++
							readable += len(out) - 2
						}
					}
				}
			}
			id, err := card.Identify(genuine)
			if err != nil {
				return err
			}
			r.Measure("unauthenticated_commands_tried", 512)
			r.Measure("unauthenticated_bytes_readable", float64(readable))

			// The clone: every readable byte (the identity) on a blank card
			// of the attacker's, which cannot know the key.
			guess := make([]byte, card.KeySize)
			rnd.Read(guess)
			img, _ := card.NewBlank(id.UID, guess)
			img.Lifecycle, img.Kind, img.MeterID, img.KeyVersion = card.Personalized, id.Kind, id.MeterID, id.KeyVersion
			img.Issued = uint32(id.Issued.Unix())
			clone, err := card.New(img, rnd, nil)
			if err != nil {
				return err
			}
			before := w.m.Snapshot()
			_, cerr := cardport.Insert(w.m.Meter, lab.Now, clone)
			after := w.m.Snapshot()
			r.Observe("copy of the readable bytes", errors.Is(cerr, card.ErrAuth) && after.Loaded == before.Loaded,
				"512 unauthenticated commands (CLA 00/90, every INS) answered %d times with %d data bytes (the identity: UID, kind, meter, key version); the clone failed authentication at the meter (%v), credit loaded %d -> %d L",
				answered, readable, cerr != nil, before.Loaded, after.Loaded)

			// An invasive copy of the whole EEPROM, key included.
			full, err := card.New(genuine.Image(), rnd, nil)
			if err != nil {
				return err
			}
			rs1, err := cardport.Insert(w.m.Meter, lab.Now, genuine)
			if err != nil {
				return fmt.Errorf("genuine insertion: %w", err)
			}
			rs2, err2 := cardport.Insert(w.m.Meter, lab.Now, full)
			got1, _ := loadedTotal(rs1)
			got2, _ := loadedTotal(rs2)
			dup := len(rs2) == 1 && rs2[0].Status == card.AlreadyLoaded
			// The full copy at another meter, as it is and re-labelled.
			ob := other.Snapshot()
			_, e3 := cardport.Insert(other.Meter, lab.Now, full)
			relabel := full.Image()
			relabel.MeterID = other.ID()
			rc, err := card.New(relabel, rnd, nil)
			if err != nil {
				return err
			}
			_, e4 := cardport.Insert(other.Meter, lab.Now, rc)
			oa := other.Snapshot()
			final := w.m.Snapshot()
			r.Measure("litres_credited_total", float64(got1+got2+int64(oa.Loaded-ob.Loaded)))
			r.Observe("invasive full copy (key included)",
				got1 == 500 && got2 == 0 && dup && errors.Is(e3, card.ErrWrongCard) && errors.Is(e4, card.ErrAuth) && oa.Loaded == ob.Loaded,
				"original credited %d L; the copy at the same meter: %d L (%d receipts, already loaded: %v, err %v); at another meter: refused as its card (%v), re-labelled for it: authentication failed (%v); total credited %d L for one 500 L voucher (meter loaded %d L)",
				got1, got2, len(rs2), dup, err2, errors.Is(e3, card.ErrWrongCard), errors.Is(e4, card.ErrAuth), got1+got2+int64(oa.Loaded-ob.Loaded), final.Loaded-before.Loaded)
			return nil
		},
	}
}
