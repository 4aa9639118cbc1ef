package console

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"time"

	"sluice/card"
	"sluice/meter/cardport"
)

// openCard returns the emulated card kept in the JSON image file path;
// every change to the card is saved back, atomically, as the card's own
// EEPROM would keep it.
func openCard(path string, rand io.Reader) (*card.Card, error) {
	img, err := card.LoadImage(path)
	if err != nil {
		return nil, err
	}
	return card.New(img, rand, func(img card.Image) error { return card.SaveImage(path, img) })
}

// insert puts the card in path into the meter's card reader.
func (b *Bench) insert(out io.Writer, now time.Time, path string) error {
	c, err := openCard(path, b.Deps.Rand)
	if err != nil {
		return err
	}
	rs, err := cardport.Insert(b.m, now, c)
	for _, r := range rs {
		fmt.Fprintf(out, "voucher %d: %v, +%d, credit %d\n", r.Sequence, r.Status, r.Amount, r.Balance)
	}
	if err != nil {
		fmt.Fprintf(out, "card refused: %v\n", err)
		return nil
	}
	if len(rs) == 0 {
		fmt.Fprintln(out, "card read: nothing to load")
	}
	b.status(out, now)
	return nil
}

// demoBatchKey is the demo card manufacturer's batch key.
func demoBatchKey() []byte { return demoSeed("card batch key")[:16] }

// sellCard is the demo vending office: it issues a card for the meter
// when path holds none yet, then loads a signed credit voucher onto it.
func (b *Bench) sellCard(out io.Writer, now time.Time, path string, litres uint32) error {
	rnd := b.Deps.Rand
	if rnd == nil {
		return errors.New("sellcard: the bench has no random source")
	}
	c, err := openCard(path, rnd)
	if errors.Is(err, fs.ErrNotExist) {
		h := sha256.Sum256([]byte(path))
		var uid card.UID
		copy(uid[:], h[:])
		tk, err := card.TransportKey(demoBatchKey(), uid)
		if err != nil {
			return err
		}
		img, err := card.NewBlank(uid, tk)
		if err != nil {
			return err
		}
		if c, err = card.New(img, rnd, func(img card.Image) error { return card.SaveImage(path, img) }); err != nil {
			return err
		}
		if err := card.SaveImage(path, img); err != nil {
			return err
		}
		if _, err := card.Issue(c, demoBatchKey(), b.Demo.CardKey, card.Personalization{KeyVersion: 1,
			Kind: card.KindCustomer, MeterID: b.m.ID(), Issued: now}, rnd); err != nil {
			return fmt.Errorf("sellcard: issue: %w", err)
		}
		fmt.Fprintf(out, "issued card %v for meter %d\n", uid, b.m.ID())
	} else if err != nil {
		return err
	}
	v, err := b.Demo.Voucher(b.m.ID(), now, litres)
	if err != nil {
		return err
	}
	s, err := card.Open(c, b.m.ID(), b.Demo.CardKey, rnd)
	if err != nil {
		return fmt.Errorf("sellcard: %w", err)
	}
	if _, err := s.LoadVoucher(v); err != nil {
		return fmt.Errorf("sellcard: load: %w", err)
	}
	fmt.Fprintf(out, "voucher %d for %d L on card %s\n", b.Demo.Seq, litres, path)
	return nil
}
