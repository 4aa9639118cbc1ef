package attack

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"sluice/meter"
	"sluice/sts"
)

// keypad types tokens on a lab meter, waiting out any lockout first, the
// way a patient attacker (or customer) would. It keeps the meter's clock.
type keypad struct {
	m   *LabMeter
	now time.Time
}

func (k *keypad) enter(tok sts.Token) (meter.TokenOutcome, error) {
	if lu := k.m.Snapshot().LockedUntil; !lu.IsZero() && !k.now.After(lu) {
		k.now = lu.Add(time.Second)
	}
	k.now = k.now.Add(5 * time.Second)
	return k.m.EnterToken(k.now, tok.String())
}

// vendor is the vending side for one meter: its coder and TID sequence.
type vendor struct {
	c    *sts.Coder
	last int64
}

func (v *vendor) credit(now time.Time, tenths uint64) (sts.Token, error) {
	tid, err := sts.NextTID(sts.Base2014, v.last, now)
	if err != nil {
		return sts.Token{}, err
	}
	v.last = int64(tid)
	return v.c.Credit(sts.SubWater, uint8(tid&0xF), tid, tenths)
}

func stsTokens() Attack {
	return Attack{
		ID:       "7",
		Name:     "STS tokens: another meter's token, replay, old token after key change, key-change replay",
		Weakness: "meters that accept a token twice, a token for a sibling meter, or tokens under a retired key",
		Defence:  "per-meter decoder keys (DKGA04), the decoder's TID memory (USED/OLD), key change committed only when the set is complete and journaled twice so the old key is gone",
		Play: func(ctx context.Context, lab *Lab, r *Recorder) error {
			g := lab.Default04()
			a, err := lab.NewMeter(ctx, 70_000_001, MeterSpec{STS: &g})
			if err != nil {
				return err
			}
			ca, err := lab.Coder(ctx, g, a.ID())
			if err != nil {
				return err
			}
			cb, err := lab.Coder(ctx, g, 70_000_002)
			if err != nil {
				return err
			}
			va, vb := &vendor{c: ca, last: -1}, &vendor{c: cb, last: -1}
			kp := &keypad{m: a, now: lab.Now}

			// (a) Tokens bought for meter B, typed on meter A.
			const other = 8
			crc := 0
			c0 := a.Snapshot().Credit
			for i := 0; i < other; i++ {
				t, err := vb.credit(kp.now, 100)
				if err != nil {
					return err
				}
				if _, err := kp.enter(t); errors.Is(err, meter.ErrCRC) {
					crc++
				}
			}
			c1 := a.Snapshot().Credit
			r.Measure("foreign_tokens", other)
			r.Measure("foreign_tokens_accepted", float64(other-crc))
			r.Observe("another meter's tokens", crc == other && c1 == c0,
				"%d genuine tokens for a sibling meter of the same supply group typed on meter A: %d rejected (CRC under A's key), credit %d -> %d L", other, crc, c0, c1)

			// (b) Replay of an accepted token.
			t, err := va.credit(kp.now, 50)
			if err != nil {
				return err
			}
			out, err := kp.enter(t)
			if err != nil {
				return fmt.Errorf("genuine token refused: %w", err)
			}
			const replays = 5
			used := 0
			for i := 0; i < replays; i++ {
				if _, err := kp.enter(t); errors.Is(err, meter.ErrUsed) {
					used++
				}
			}
			// And after a power cycle, when RAM state is gone.
			if err := a.Reboot(); err != nil {
				return err
			}
			_, rerr := kp.enter(t)
			if errors.Is(rerr, meter.ErrUsed) {
				used++
			}
			c2 := a.Snapshot().Credit
			r.Measure("replays", replays+1)
			r.Measure("replays_refused", float64(used))
			r.Observe("token replay", used == replays+1 && c2-c1 == out.Amount,
				"a %d L token accepted once, then typed %d more times (one after a power cycle): %d refused as used, credit %d -> %d L",
				out.Amount, replays+1, used, c1, c2)

			// (c) Key change to revision 2; a token made under the old key
			// before the change, typed after it.
			old, err := va.credit(kp.now, 70)
			if err != nil {
				return err
			}
			g2 := g
			g2.KRN = 2
			nk, err := lab.DecoderKey(ctx, g2, a.ID())
			if err != nil {
				return err
			}
			kc, err := ca.KeyChange(sts.KeyChange{NewKey: nk, KEN: 255, KRN: 2, KT: g.KeyID().KT, TI: g.KeyID().TI, SGC: g.SGC})
			if err != nil {
				return err
			}
			for i, t := range kc {
				if _, err := kp.enter(t); err != nil {
					return fmt.Errorf("key change token %d refused: %w", i+1, err)
				}
			}
			c3 := a.Snapshot().Credit
			_, oerr := kp.enter(old)
			cn, err := sts.NewCoder(sts.EA11, nk, nil)
			if err != nil {
				return err
			}
			vn := &vendor{c: cn, last: va.last}
			fresh, err := vn.credit(kp.now, 10)
			if err != nil {
				return err
			}
			fout, ferr := kp.enter(fresh)
			c4 := a.Snapshot().Credit
			r.Observe("old token after key change", errors.Is(oerr, meter.ErrCRC) && ferr == nil && c4-c3 == fout.Amount,
				"a token issued under key revision 1 before the 4-token key change, typed after it: refused (%v); a token under revision 2 accepted (%d L)", oerr, fout.Amount)

			// (d) The key change set typed again, in order and reversed.
			replayed, refused := 0, 0
			for _, set := range [][]sts.Token{kc, {kc[3], kc[2], kc[1], kc[0]}} {
				for _, t := range set {
					replayed++
					if _, err := kp.enter(t); err != nil {
						refused++
					}
				}
			}
			dump, err := meter.Dump(a.EEPROM)
			if err != nil {
				return err
			}
			im, err := meter.ParseImage(dump, a.EEPROM.PageSize())
			if err != nil {
				return err
			}
			var dec sts.Decoder
			if err := dec.UnmarshalBinary(im.Tokens); err != nil {
				return err
			}
			oldKey, _ := lab.DecoderKey(ctx, g, a.ID())
			oldInDump := bytes.Contains(dump, oldKey[:8])
			c5 := a.Snapshot().Credit
			r.Measure("key_change_replays", float64(replayed))
			r.Measure("key_change_replays_refused", float64(refused))
			r.Observe("key-change token replay", refused == replayed && bytes.Equal(dec.Key(), nk) && dec.KeyID().KRN == 2 && !oldInDump && c5 == c4,
				"the 4 key change tokens typed again twice (in order, reversed): %d of %d refused; the meter still holds revision %d with the new key: %v; the old key in the EEPROM dump: %v",
				refused, replayed, dec.KeyID().KRN, bytes.Equal(dec.Key(), nk), oldInDump)
			return nil
		},
	}
}
