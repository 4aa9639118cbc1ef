package attack

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"time"

	"sluice/card"
	"sluice/keys"
	"sluice/kms"
	"sluice/meter"
	"sluice/sts"
	"sluice/telemetry/frame"
	"sluice/voucher"
)

// countHits counts the secrets (whole, or either 8-byte half) found in b.
func countHits(b []byte, secrets map[string][]byte) (hits int, found []string) {
	for name, k := range secrets {
		for _, part := range [][]byte{k, k[:len(k)/2], k[len(k)/2:]} {
			if len(part) >= 8 && bytes.Contains(b, part) {
				hits++
				found = append(found, name)
				break
			}
		}
	}
	return hits, found
}

func readout() Attack {
	return Attack{
		ID:       "5",
		Name:     "firmware/flash readout of a meter",
		Weakness: "meters that hold a shared key, a vending key or a signing secret: one dumped meter mints credit for the fleet",
		Defence:  "a meter stores only its own diversified keys and public verification keys; credit is signed (Ed25519) by a key only the KMS holds",
		Play: func(ctx context.Context, lab *Lab, r *Recorder) error {
			g := lab.Default04()
			a, err := lab.NewMeter(ctx, 50_000_001, MeterSpec{STS: &g})
			if err != nil {
				return err
			}
			b, err := lab.NewMeter(ctx, 50_000_002, MeterSpec{STS: &g})
			if err != nil {
				return err
			}
			// Some history first, so the dump is a used meter's.
			v, err := lab.CreditVoucher(ctx, a.ID(), 1, 1000)
			if err != nil {
				return err
			}
			if _, err := a.LoadVoucher(lab.Now, v, meter.FromRemote); err != nil {
				return fmt.Errorf("genuine voucher: %w", err)
			}
			dump, err := meter.Dump(a.EEPROM)
			if err != nil {
				return err
			}
			img, err := meter.ParseImage(dump, a.EEPROM.PageSize())
			if err != nil {
				return err
			}
			var dec sts.Decoder
			dec.SetTables(lab.Tables)
			if err := dec.UnmarshalBinary(img.Tokens); err != nil {
				return fmt.Errorf("decoder state in the dump: %w", err)
			}
			extracted := fmt.Sprintf("card key, telemetry key, STS decoder key (%d bytes), %d trusted public keys", len(dec.Key()), len(img.Keys.Trusted))
			r.Measure("dump_bytes", float64(len(dump)))

			// 1. Minting power: is any Ed25519 private key in the dump?
			// Every 32-byte window is tried as a seed against the trusted
			// public keys (a private key is its seed).
			trustedPub := map[string]bool{}
			for _, k := range img.Keys.Trusted {
				trustedPub[string(k.Public)] = true
			}
			windows, matches := 0, 0
			for i := 0; i+ed25519.SeedSize <= len(dump); i++ {
				windows++
				pk := ed25519.NewKeyFromSeed(dump[i : i+ed25519.SeedSize])
				if trustedPub[string(pk.Public().(ed25519.PublicKey))] {
					matches++
				}
			}
			// And sign with what the dump does hold: the meter's own
			// symmetric keys used as signing seeds, claiming the trusted
			// credit key's ID.
			before := a.Snapshot()
			forgedOK := 0
			for i, seed := range [][]byte{img.Keys.MeterKey[:], img.Keys.TelemetryKey[:], dec.Key()} {
				s := ed25519.NewKeyFromSeed(append(append([]byte(nil), seed...), make([]byte, 32)...)[:32])
				fv, err := voucher.Sign(&voucher.Voucher{Kind: voucher.KindCredit, MeterID: a.ID(), Sequence: uint32(2 + i),
					Issued: lab.Now.Add(-time.Minute), Expires: lab.Now.Add(time.Hour), Unit: voucher.UnitLitres, Quantity: 50_000}, s)
				if err != nil {
					return err
				}
				if _, err := a.LoadVoucher(lab.Now, fv, meter.FromRemote); err == nil {
					forgedOK++
				}
			}
			after := a.Snapshot()
			r.Measure("seed_windows_tried", float64(windows))
			r.Observe("mint vouchers from the dump", matches == 0 && forgedOK == 0 && after.Credit == before.Credit,
				"%d-byte dump holds %s; %d 32-byte windows tried as Ed25519 seeds against the trusted keys: %d match; 3 vouchers signed with the dumped secrets: %d accepted, credit %d -> %d L",
				len(dump), extracted, windows, matches, forgedOK, before.Credit, after.Credit)

			// 2. Another meter's keys, or anything above a meter.
			bk := b.Keys
			dkB, err := lab.DecoderKey(ctx, g, b.ID())
			if err != nil {
				return err
			}
			secrets := map[string][]byte{
				"meter B card key": bk.Card[:], "meter B telemetry key": bk.Telemetry[:], "meter B wM-Bus key": bk.WMBus[:],
				"meter B STS decoder key": dkB, "meter A wM-Bus key (not provisioned to it)": a.Keys.WMBus[:],
			}
			for name, k := range lab.vending {
				secrets["vending key "+name] = k
			}
			hits, found := countHits(dump, secrets)
			r.Measure("foreign_secrets_searched", float64(len(secrets)))
			r.Observe("other meters' keys in the dump", hits == 0,
				"searched the dump for %d foreign secrets (meter B's card, telemetry, wM-Bus and STS keys, every vending key of the KMS), whole and by halves: %d found %v",
				len(secrets), hits, found)

			// 3. Use what was extracted against meter B.
			w := &cardWorld{lab: lab, m: b, batchKey: make([]byte, 16), rnd: lab.Rand("attack 5 cards")}
			cb, err := w.issue(card.UID{0x04, 0x50, 0x00, 0x00, 0x00, 0x00, 0x02}, card.KindCustomer, nil)
			if err != nil {
				return err
			}
			_, cerr := card.Open(cb, b.ID(), img.Keys.MeterKey[:], w.rnd)
			tk, err := frame.NewKey(img.Keys.TelemetryKey[:])
			if err != nil {
				return err
			}
			fb, err := frame.Seal(nil, tk, &frame.Frame{Kind: frame.KindReading, Meter: b.ID(), Counter: 1, Time: lab.Now,
				Reading: frame.Reading{Credit: 1_000_000, Loaded: 1_000_000, Unit: frame.UnitLitres}})
			if err != nil {
				return err
			}
			bkey, err := frame.NewKey(bk.Telemetry[:])
			if err != nil {
				return err
			}
			var f frame.Frame
			ferr := frame.Open(bkey, fb, &f)
			coderA, err := sts.NewCoder(dec.EA(), dec.Key(), lab.Tables)
			if err != nil {
				return err
			}
			tid, _ := sts.TIDAt(sts.Base2014, lab.Now)
			bBefore := b.Snapshot()
			tokB, err := coderA.Credit(sts.SubWater, 3, tid, 1000)
			if err != nil {
				return err
			}
			_, terr := b.EnterToken(lab.Now, tokB.String())
			bAfter := b.Snapshot()
			// The residual, measured and stated: STS is symmetric, so the
			// dumped decoder key mints keypad tokens for its own meter.
			tokA, err := coderA.Credit(sts.SubWater, 4, tid+1, 10)
			if err != nil {
				return err
			}
			_, selfErr := a.EnterToken(lab.Now, tokA.String())
			r.Measure("sts_self_mint_accepted", b2f(selfErr == nil))

			r.Observe("extracted keys against meter B", errors.Is(cerr, card.ErrAuth) && errors.Is(ferr, frame.ErrMAC) && errors.Is(terr, meter.ErrCRC) && bAfter.Credit == bBefore.Credit,
				"A's card key opens B's card: refused (%v); a reading for B MACed with A's telemetry key: refused (%v); an STS credit token for B under A's decoder key: refused (%v), B's credit %d -> %d L. Residual (STS is symmetric by design, stated in docs/security-model.md): a token for A itself under its dumped decoder key was accepted: %v",
				errors.Is(cerr, card.ErrAuth), errors.Is(ferr, frame.ErrMAC), errors.Is(terr, meter.ErrCRC), bBefore.Credit, bAfter.Credit, selfErr == nil)

			// Last, confirm the KMS really holds the signing key the dump
			// lacks (so the search above looked for something real).
			ck, err := lab.KM.PublicKey(ctx, kms.Ref(keys.CreditSigning))
			if err != nil || !trustedPub[string(ck.(ed25519.PublicKey))] {
				return fmt.Errorf("the meter does not trust the KMS credit key: %v", err)
			}
			return nil
		},
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
