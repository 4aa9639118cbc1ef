package attack

import (
	"context"
	"errors"
	"fmt"
	"time"

	"sluice/keys"
	"sluice/meter"
	"sluice/voucher"
)

func vouchers() Attack {
	return Attack{
		ID:       "9",
		Name:     "voucher tampering, replay, wrong meter, expired",
		Weakness: "credit messages protected by a checksum or a shared MAC: change the amount, load it twice, load it into the neighbour's meter, keep it for later",
		Defence:  "Ed25519 signature over every byte (strict parser, one encoding), meter ID bound, expiry, the meter's journaled sequence window",
		Play: func(ctx context.Context, lab *Lab, r *Recorder) error {
			a, err := lab.NewMeter(ctx, 90_000_001, MeterSpec{})
			if err != nil {
				return err
			}
			b, err := lab.NewMeter(ctx, 90_000_002, MeterSpec{})
			if err != nil {
				return err
			}
			v, err := lab.CreditVoucher(ctx, a.ID(), 5, 250)
			if err != nil {
				return err
			}
			c0 := a.Snapshot().Credit
			masks := []byte{0x01, 0x80, 0xFF}
			tried, accepted := 0, 0
			for i := range v {
				for _, x := range masks {
					t := append([]byte(nil), v...)
					t[i] ^= x
					tried++
					if _, err := a.LoadVoucher(lab.Now, t, meter.FromCard); err == nil {
						accepted++
					}
				}
			}
			// Truncated and extended.
			for _, t := range [][]byte{v[:len(v)-1], append(append([]byte(nil), v...), 0)} {
				tried++
				if _, err := a.LoadVoucher(lab.Now, t, meter.FromCard); err == nil {
					accepted++
				}
			}
			c1 := a.Snapshot().Credit
			r.Measure("tampered_vouchers", float64(tried))
			r.Observe("tamper every byte", accepted == 0 && c1 == c0,
				"every one of the %d bytes flipped with masks 01, 80 and FF, plus truncated and extended: %d variants, %d accepted, credit %d -> %d L",
				len(v), tried, accepted, c0, c1)

			// Replay: loaded once, then again, then after a power cycle.
			rc, err := a.LoadVoucher(lab.Now, v, meter.FromCard)
			if err != nil || rc.Status != meter.Loaded {
				return fmt.Errorf("genuine voucher refused: %v", err)
			}
			_, e1 := a.LoadVoucher(lab.Now, v, meter.FromRemote)
			if err := a.Reboot(); err != nil {
				return err
			}
			_, e2 := a.LoadVoucher(lab.Now, v, meter.FromCard)
			c2 := a.Snapshot().Credit
			r.Observe("replay", errors.Is(e1, meter.ErrUsed) && errors.Is(e2, meter.ErrUsed) && c2-c1 == 250,
				"the 250 L voucher loaded once (card), then by remote top-up and after a power cycle: refused as used (%v, %v), credit %d -> %d L",
				errors.Is(e1, meter.ErrUsed), errors.Is(e2, meter.ErrUsed), c1, c2)

			// Wrong meter.
			b0 := b.Snapshot().Credit
			_, e3 := b.LoadVoucher(lab.Now, v, meter.FromCard)
			b1 := b.Snapshot().Credit
			r.Observe("wrong meter", errors.Is(e3, meter.ErrWrongMeter) && b1 == b0,
				"meter A's voucher offered to meter B: %v, B's credit %d -> %d L", e3, b0, b1)

			// Expired: issued with a one-hour life, offered two hours later.
			s, err := keys.VoucherSigner(ctx, lab.KM, voucher.KindCredit)
			if err != nil {
				return err
			}
			w, err := voucher.Sign(&voucher.Voucher{Kind: voucher.KindCredit, MeterID: a.ID(), Sequence: 6, Issued: lab.Now,
				Expires: lab.Now.Add(time.Hour), Unit: voucher.UnitLitres, Quantity: 300}, s)
			if err != nil {
				return err
			}
			_, e4 := a.LoadVoucher(lab.Now.Add(2*time.Hour), w, meter.FromCard)
			c3 := a.Snapshot().Credit
			r.Observe("expired", errors.Is(e4, meter.ErrExpired) && c3 == c2,
				"a voucher valid for one hour offered two hours after issue: %v, credit %d -> %d L", e4, c2, c3)
			return nil
		},
	}
}
