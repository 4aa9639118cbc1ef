package attack

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"sync"
	"time"

	"sluice/meter"
	"sluice/sts"
)

// GuessTokens is how many random class 0 tokens the blind-guessing attack
// tries against a decoder without lockout: enough for dozens of CRC passes
// at 2^-16, a second or so on two cores.
const GuessTokens = 3_000_000

// typingInterval is how fast the attacker enters tokens when nothing stops
// them: a keypad robot, one 20-digit entry every 5 seconds.
const typingInterval = 5 * time.Second

// randomCredit returns a uniformly random 20-digit entry of class 0 (the
// class that carries credit: a guesser aims there).
func randomCredit(r *rand.ChaCha8) sts.Token {
	for {
		t := sts.Token{Hi: uint8(r.Uint64() & 3), Lo: r.Uint64()}
		if t.Class() == sts.ClassCredit {
			return t
		}
	}
}

type guessStats struct {
	tries, crcPass, accepted uint64
	litres                   uint64
}

// guessDecoder types n random class 0 tokens into copies of a fresh
// decoder (no lockout: the decoder alone), on every core.
func guessDecoder(ctx context.Context, seed uint64, cfg sts.DecoderConfig, n int) (guessStats, time.Duration, error) {
	base, err := sts.NewDecoder(cfg)
	if err != nil {
		return guessStats{}, 0, err
	}
	coder, err := sts.NewCoder(cfg.EA, cfg.Key, cfg.Tables)
	if err != nil {
		return guessStats{}, 0, err
	}
	workers := runtime.GOMAXPROCS(0)
	res := make([]guessStats, workers)
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			rng := stream(seed, fmt.Sprintf("guess %d", w))
			st := &res[w]
			for i := w; i < n; i += workers {
				if i&0xFFFF == 0 && ctx.Err() != nil {
					return
				}
				t := randomCredit(rng)
				st.tries++
				if _, err := coder.Open(t); errors.Is(err, sts.ErrCRC) {
					continue
				}
				st.crcPass++
				d := base
				r, err := d.Accept(t)
				if err == nil && r.Kind == sts.KindCredit {
					st.accepted++
					st.litres += r.Amount * 100
				}
			}
		}(w)
	}
	wg.Wait()
	var tot guessStats
	for _, s := range res {
		tot.tries += s.tries
		tot.crcPass += s.crcPass
		tot.accepted += s.accepted
		tot.litres += s.litres
	}
	return tot, time.Since(start), ctx.Err()
}

// keypadDays drives a real meter's keypad with random tokens for up to days
// of its injected clock, as fast as the lockout allows, and reports the
// attempts in the first and in the last day.
func keypadDays(m *LabMeter, start time.Time, days int, maxAttempts int, rng *rand.ChaCha8) (first, last, total, accepted int, span time.Duration, err error) {
	end := start.Add(time.Duration(days) * 24 * time.Hour)
	lastDay := end.Add(-24 * time.Hour)
	now := start
	for total < maxAttempts {
		if lu := m.Snapshot().LockedUntil; !lu.IsZero() && now.Before(lu) {
			now = lu
		}
		now = now.Add(typingInterval)
		if !now.Before(end) {
			break
		}
		_, err := m.EnterToken(now, randomCredit(rng).String())
		if errors.Is(err, meter.ErrLocked) {
			continue
		}
		if errors.Is(err, meter.ErrHalted) {
			return first, last, total, accepted, now.Sub(start), err
		}
		total++
		if now.Before(start.Add(24 * time.Hour)) {
			first++
		}
		if !now.Before(lastDay) {
			last++
		}
		if err == nil {
			accepted++
		}
	}
	return first, last, total, accepted, now.Sub(start), nil
}

func guessing() Attack {
	return Attack{
		ID:       "8",
		Name:     "blind 20-digit token guessing at the keypad",
		Weakness: "an STS token's only integrity check is a 16-bit CRC: a random entry passes about once in 2^16 per class and subclass",
		Defence:  "the meter's keypad lockout: a few free tries, then exponential back-off to one try a day, charged and journaled before decoding so neither a power cut nor a power cycle resets it",
		Play: func(ctx context.Context, lab *Lab, r *Recorder) error {
			g := lab.Default04()
			const id = 80_000_001
			cfg, err := lab.DecoderConfig(ctx, g, id)
			if err != nil {
				return err
			}
			st, d, err := guessDecoder(ctx, lab.Seed, *cfg, GuessTokens)
			if err != nil {
				return err
			}
			pCRC := float64(st.crcPass) / float64(st.tries)
			pCredit := float64(st.accepted) / float64(st.tries)
			// A 95% upper bound on the CRC pass rate (Poisson).
			upper := (float64(st.crcPass) + 1.96*math.Sqrt(float64(st.crcPass)) + 2) / float64(st.tries)
			r.Measure("random_tokens", float64(st.tries))
			r.Measure("crc_passes", float64(st.crcPass))
			r.Measure("credit_acceptances", float64(st.accepted))
			r.Measure("crc_pass_rate", pCRC)
			r.Measure("tokens_per_second", float64(st.tries)/d.Seconds())
			r.Reproduced("acceptance rate without lockout (decoder alone)", st.crcPass > 0,
				"%d random class 0 tokens against the real EA11 decoder in %.2fs (%.3g/s): %d passed the CRC = %.3g per token (2^-16 = %.3g), %d accepted as credit (%.3g per token; %d L in total): the weakness the lockout must bound",
				st.tries, d.Seconds(), float64(st.tries)/d.Seconds(), st.crcPass, pCRC, math.Exp2(-16), st.accepted, pCredit, st.litres)

			// The real meter, its keypad driven by the injected clock.
			m, err := lab.NewMeter(ctx, id, MeterSpec{STS: &g})
			if err != nil {
				return err
			}
			rng := stream(lab.Seed, "keypad guesses")
			const days = 7
			first, last, total, accepted, span, err := keypadDays(m, lab.Now, days, 2000, rng)
			if err != nil {
				return err
			}
			// A power cycle in the middle of a lockout.
			before := m.Snapshot()
			if err := m.Reboot(); err != nil {
				return err
			}
			after := m.Snapshot()
			persisted := after.Failures == before.Failures && after.LockedUntil.Equal(before.LockedUntil)
			perDay := float64(last)
			if span < days*24*time.Hour {
				// The cap on attempts stopped the run early: rate over it.
				perDay = float64(total) / span.Hours() * 24
			}
			years := 1 / (math.Max(perDay, 1e-9) * upper) / 365.25
			r.Measure("keypad_attempts_first_day", float64(first))
			r.Measure("keypad_attempts_per_day_steady", perDay)
			r.Measure("years_to_first_crc_pass", years)
			// Defended when, at the rate the lockout lets through, the
			// expected time to even one CRC pass (an upper bound on a
			// credit acceptance) exceeds ten years.
			r.Observe("guessing through the meter's lockout", years >= 10 && persisted && accepted == 0,
				"%d entries (%d accepted) in %.1f simulated days at one every %v when unlocked: %d on day 1, %.0f per day at the end; a power cycle kept the failure count (%d) and the lockout (until %s): %v. At %.0f/day and a CRC pass rate of at most %.3g (95%% bound), the expected time to one CRC pass is %.3g years",
				total, accepted, span.Hours()/24, typingInterval, first, perDay, after.Failures, after.LockedUntil.Format(time.RFC3339), persisted, perDay, upper, years)
			return nil
		},
	}
}
