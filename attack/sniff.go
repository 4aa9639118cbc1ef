package attack

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"errors"
	"fmt"
	"time"

	"sluice/card"
	"sluice/card/pcsc"
	"sluice/card/vpcd"
	"sluice/cmac"
	"sluice/meter/cardport"
)

// tap is a wiretap on the card contacts: every APDU both ways.
type tap struct {
	t        card.Transport
	commands [][]byte
	answers  [][]byte
}

func (p *tap) Transmit(b []byte) ([]byte, error) {
	out, err := p.t.Transmit(b)
	p.commands = append(p.commands, append([]byte(nil), b...))
	p.answers = append(p.answers, append([]byte(nil), out...))
	return out, err
}

func (p *tap) wire() []byte {
	var all []byte
	for i := range p.commands {
		all = append(all, p.commands[i]...)
		all = append(all, p.answers[i]...)
	}
	return all
}

// tape plays recorded card answers back, whatever it is asked.
type tape struct{ answers [][]byte }

func (t *tape) Transmit([]byte) ([]byte, error) {
	if len(t.answers) == 0 {
		return []byte{0x6F, 0x00}, nil
	}
	a := t.answers[0]
	t.answers = t.answers[1:]
	return a, nil
}

// sessionKeys recovers the session keys of every EV2 authentication in a
// recording, as only a holder of a candidate key can: RndB from the card's
// first answer, RndA from the reader's second command, checked against the
// card's RndA' so only the key actually used counts, then SV1/SV2 and
// AES-CMAC (NTAG 424 DNA datasheet, section 9). Written independently of
// package card, so a bug there cannot hide a leak here.
func sessionKeys(p *tap, candidates [][]byte) (keys [][]byte) {
	var eRndB []byte
	for i, c := range p.commands {
		cmd, err := card.ParseCommand(c)
		if err != nil || cmd.CLA != 0x90 {
			continue
		}
		switch {
		case cmd.INS == 0x71 && len(p.answers[i]) >= 18:
			eRndB = p.answers[i][:16]
		case cmd.INS == 0xAF && eRndB != nil && len(cmd.Data) == 32 && len(p.answers[i]) >= 34:
			for _, k := range candidates {
				block, err := aes.NewCipher(k)
				if err != nil {
					continue
				}
				iv := make([]byte, 16)
				rndB := make([]byte, 16)
				cipher.NewCBCDecrypter(block, iv).CryptBlocks(rndB, eRndB)
				ab := make([]byte, 32)
				cipher.NewCBCDecrypter(block, iv).CryptBlocks(ab, cmd.Data)
				rndA := ab[:16]
				ans := make([]byte, 32)
				cipher.NewCBCDecrypter(block, iv).CryptBlocks(ans, p.answers[i][:32])
				if !bytes.Equal(ans[4:20], append(append([]byte(nil), rndA[1:]...), rndA[0])) {
					continue // not this key
				}
				sv := func(p0, p1 byte) []byte {
					v := []byte{p0, p1, 0x00, 0x01, 0x00, 0x80, rndA[0], rndA[1]}
					for j := 0; j < 6; j++ {
						v = append(v, rndA[2+j]^rndB[j])
					}
					return append(append(v, rndB[6:]...), rndA[8:]...)
				}
				enc, _ := cmac.Sum(k, sv(0xA5, 0x5A))
				mac, _ := cmac.Sum(k, sv(0x5A, 0xA5))
				keys = append(keys, enc, mac)
				break
			}
			eRndB = nil
		}
	}
	return keys
}

// pcscSlot puts c into the configured vpcd reader and returns a transport
// to it through pcscd, and a function that pulls the card. It fails fast
// when no reader is configured or the reader does not hold our card.
func pcscSlot(ctx context.Context, lab *Lab, c *card.Card) (card.Transport, func(), error) {
	if lab.opt.PCSCReader == "" || lab.opt.PCSCAddr == "" {
		return nil, nil, errors.New("no PC/SC reader configured")
	}
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- vpcd.Serve(sctx, lab.opt.PCSCAddr, c, card.ATR()) }()
	pull := func() {
		cancel()
		select {
		case <-done:
		case <-time.After(3 * time.Second):
		}
	}
	cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
	defer ccancel()
	rd, err := pcsc.Connect(cctx, lab.opt.PCSCReader)
	if err != nil {
		pull()
		return nil, nil, err
	}
	// Another program may have its own card in that reader: make sure we
	// talk to ours.
	img := c.Image()
	id, err := card.Identify(rd)
	if err != nil || id.UID != img.UID {
		rd.Close()
		pull()
		return nil, nil, fmt.Errorf("reader %s holds another card", lab.opt.PCSCReader)
	}
	return rd, func() { rd.Close(); pull() }, nil
}

func sniffing() Attack {
	return Attack{
		ID:       "3",
		Name:     "card-port sniffing and replay",
		Weakness: "memory-card PINs and logic-encryption card secrets cross the contacts in clear; a recorded session replays",
		Defence:  "EV2 3-pass mutual authentication with fresh randoms both ways, CommMode.Full (AES-CBC + CMAC under per-session keys, counter-bound): nothing reusable on the wire",
		Play: func(ctx context.Context, lab *Lab, r *Recorder) error {
			w, err := newCardWorld(ctx, lab, "attack 3", 30_000_001)
			if err != nil {
				return err
			}
			uid := card.UID{0x04, 0x5E, 0x1F, 0x00, 0x00, 0x00, 0x03}
			tk, _ := card.TransportKey(w.batchKey, uid)
			img, err := card.NewBlank(uid, tk)
			if err != nil {
				return err
			}
			c, err := card.New(img, w.rnd, nil)
			if err != nil {
				return err
			}
			path := "in-process transport (no PC/SC reader configured)"
			var base card.Transport = c
			pulled := func() {}
			if t, pull, perr := pcscSlot(ctx, lab, c); perr == nil {
				base, pulled, path = t, pull, "PC/SC through pcscd, reader "+lab.opt.PCSCReader
			} else if lab.opt.PCSCReader != "" {
				path = "in-process transport (PC/SC unavailable: " + perr.Error() + ")"
			}
			defer pulled()
			tp := &tap{t: base}

			// A whole card life on the tapped port: issue, load, insert.
			if _, err := card.Issue(tp, w.batchKey, w.m.Keys.Card[:], card.Personalization{KeyVersion: 1, Kind: card.KindCustomer,
				MeterID: w.m.ID(), Issued: lab.Now}, w.rnd); err != nil {
				return fmt.Errorf("issue over %s: %w", path, err)
			}
			v, err := lab.CreditVoucher(ctx, w.m.ID(), 1, 750)
			if err != nil {
				return err
			}
			if err := w.load(tp, v); err != nil {
				return fmt.Errorf("load: %w", err)
			}
			insertion := len(tp.commands)
			rs, err := cardport.Insert(w.m.Meter, lab.Now, tp)
			if got, _ := loadedTotal(rs); err != nil || got != 750 {
				return fmt.Errorf("meter insertion: %d L, %v", got, err)
			}
			ck, _ := card.CardKey(w.m.Keys.Card[:], uid)
			secrets := [][]byte{w.batchKey, tk, w.m.Keys.Card[:], ck, w.m.Keys.Telemetry[:]}
			sess := sessionKeys(tp, [][]byte{tk, ck})
			secrets = append(secrets, sess...)
			wire := tp.wire()
			hits, patterns := 0, 0
			for _, k := range secrets {
				for _, part := range [][]byte{k, k[:8], k[8:]} {
					patterns++
					if bytes.Contains(wire, part) {
						hits++
					}
				}
			}
			r.Measure("wire_bytes", float64(len(wire)))
			r.Measure("secret_patterns", float64(patterns))
			r.Measure("hits", float64(hits))
			r.Observe("search the recording for keys", hits == 0 && len(sess) >= 6,
				"%s: %d APDUs, %d bytes recorded; searched for %d key patterns (batch, transport, meter card, card, telemetry keys and %d session keys recovered from the transcript with the card keys, each whole and by 8-byte halves): %d found",
				path, 2*len(tp.commands), len(wire), patterns, len(sess), hits)

			// Replay the meter's side to the card (a fresh session): the
			// card must refuse the authentication and every secured command.
			before := c.Image()
			answered := 0
			replayed := 0
			for _, cmd := range tp.commands[insertion:] {
				out, err := base.Transmit(cmd)
				if err != nil {
					return err
				}
				replayed++
				if len(cmd) > 1 && cmd[0] == 0x90 && (cmd[1] == 0xAF || cmd[1] > 0xAF) && len(out) >= 2 {
					sw := uint16(out[len(out)-2])<<8 | uint16(out[len(out)-1])
					if sw == card.SWNativeOK {
						answered++
					}
				}
			}
			after := c.Image()
			unchanged := len(after.Receipts) == len(before.Receipts) && after.Slots[0].State == before.Slots[0].State

			// Replay the card's side to a meter: a tape of recorded answers.
			mb := w.m.Snapshot()
			_, terr := cardport.Insert(w.m.Meter, lab.Now, &tape{answers: tp.answers[insertion:]})
			ma := w.m.Snapshot()
			r.Observe("replay the recording", answered == 0 && unchanged && errors.Is(terr, card.ErrAuth) && ma.Loaded == mb.Loaded,
				"%d reader commands replayed to the card: %d secured commands accepted, card unchanged: %v; the card's recorded answers replayed to the meter: refused (%v), credit loaded %d -> %d L",
				replayed, answered, unchanged, errors.Is(terr, card.ErrAuth), mb.Loaded, ma.Loaded)
			return nil
		},
	}
}
