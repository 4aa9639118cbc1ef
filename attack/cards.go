package attack

import (
	"context"
	"crypto/ed25519"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"

	"sluice/card"
	"sluice/keys"
	"sluice/meter"
	"sluice/meter/cardport"
	"sluice/voucher"
)

// cardWorld is one meter and the vending office's means to issue its cards.
type cardWorld struct {
	lab      *Lab
	m        *LabMeter
	batchKey []byte
	rnd      io.Reader
}

func newCardWorld(ctx context.Context, lab *Lab, name string, meterID uint64) (*cardWorld, error) {
	m, err := lab.NewMeter(ctx, meterID, MeterSpec{})
	if err != nil {
		return nil, err
	}
	rnd := lab.Rand(name)
	bk := make([]byte, card.KeySize)
	rnd.Read(bk)
	return &cardWorld{lab: lab, m: m, batchKey: bk, rnd: rnd}, nil
}

// issue makes a blank card and personalizes it for the world's meter over
// the transport t wraps around it (nil: the card itself), as the vending
// office does.
func (w *cardWorld) issue(uid card.UID, kind card.Kind, wrap func(card.Transport) card.Transport) (*card.Card, error) {
	tk, err := card.TransportKey(w.batchKey, uid)
	if err != nil {
		return nil, err
	}
	img, err := card.NewBlank(uid, tk)
	if err != nil {
		return nil, err
	}
	c, err := card.New(img, w.rnd, nil)
	if err != nil {
		return nil, err
	}
	var t card.Transport = c
	if wrap != nil {
		t = wrap(c)
	}
	_, err = card.Issue(t, w.batchKey, w.m.Keys.Card[:], card.Personalization{KeyVersion: 1, Kind: kind,
		MeterID: w.m.ID(), Issued: w.lab.Now.Add(-24 * time.Hour)}, w.rnd)
	return c, err
}

// load writes vouchers onto a card through an authenticated office session.
func (w *cardWorld) load(t card.Transport, vs ...[]byte) error {
	s, err := card.Open(t, w.m.ID(), w.m.Keys.Card[:], w.rnd)
	if err != nil {
		return err
	}
	for _, v := range vs {
		if _, err := s.LoadVoucher(v); err != nil {
			return err
		}
	}
	return nil
}

// loadedTotal sums what a set of receipts says was credited.
func loadedTotal(rs []card.Receipt) (n int64, loaded int) {
	for _, r := range rs {
		if r.Status == card.Loaded {
			n += r.Amount
			loaded++
		}
	}
	return n, loaded
}

// randomCard answers every command with random bytes: a forged memory
// card, or a microcontroller on the contacts answering garbage.
type randomCard struct{ r io.Reader }

func (c randomCard) Transmit([]byte) ([]byte, error) {
	var n [2]byte
	c.r.Read(n[:])
	b := make([]byte, int(n[0])%48)
	c.r.Read(b)
	// Often claim success, so the reader goes on to parse the data.
	switch n[1] % 4 {
	case 0:
		return append(b, 0x90, 0x00), nil
	case 1:
		return append(b, 0x91, 0x00), nil
	case 2:
		return append(b, 0x91, 0xAF), nil
	}
	return append(b, n[1], n[0]), nil
}

func forgedCard() Attack {
	return Attack{
		ID:       "1",
		Name:     "forged card data presented to a meter",
		Weakness: "memory cards (SLE4442-style) carry credit as plain data behind a 3-byte PIN: whoever writes the right bytes mints credit",
		Defence:  "CPU card with per-card AES key and EV2 mutual authentication; credit only as Ed25519 vouchers the meter verifies; auth failures latch card-port tamper",
		Play: func(ctx context.Context, lab *Lab, r *Recorder) error {
			w, err := newCardWorld(ctx, lab, "attack 1", 10_000_001)
			if err != nil {
				return err
			}
			rnd := lab.Rand("attack 1 forgery")
			m := w.m
			before := m.Snapshot()

			// (a) random answers on the contacts.
			const randomInsertions = 300
			failed := 0
			for i := 0; i < randomInsertions; i++ {
				if _, err := cardport.Insert(m.Meter, lab.Now, randomCard{rnd}); err != nil {
					failed++
				}
			}
			after := m.Snapshot()
			r.Measure("random_insertions", randomInsertions)
			r.Observe("random card data", failed == randomInsertions && after.Credit == before.Credit && after.Loaded == before.Loaded,
				"%d insertions of cards answering random APDUs: %d refused, credit %d -> %d L", randomInsertions, failed, before.Credit, after.Credit)

			// (b) an impostor card that claims this meter but holds a key
			// the attacker made up, at a meter with a clean record.
			if m, err = lab.NewMeter(ctx, 10_000_003, MeterSpec{}); err != nil {
				return err
			}
			before = m.Snapshot()
			uid := card.UID{0x04, 0xA1, 0x01, 0x02, 0x03, 0x04, 0x05}
			fake := make([]byte, card.KeySize)
			rnd.Read(fake)
			img, _ := card.NewBlank(uid, fake)
			img.Lifecycle, img.Kind, img.MeterID, img.Issued, img.KeyVersion = card.Personalized, card.KindCustomer, m.ID(), uint32(lab.Now.Unix()), 1
			auth := 0
			for i := 0; i < 3; i++ {
				c, err := card.New(img, rnd, nil)
				if err != nil {
					return err
				}
				if _, err := cardport.Insert(m.Meter, lab.Now, c); errors.Is(err, card.ErrAuth) {
					auth++
				}
			}
			sn := m.Snapshot()
			r.Observe("impostor card for this meter", auth == 3 && sn.Credit == before.Credit && sn.Tamper&meter.TamperCardPort != 0,
				"3 insertions, %d failed mutual authentication, card-port tamper latched: %v, credit %d L", auth, sn.Tamper&meter.TamperCardPort != 0, sn.Credit)

			// (c) the attacker's own genuine card (its key dumped, so every
			// byte is writable) carrying crafted vouchers.
			w2, err := newCardWorld(ctx, lab, "attack 1c", 10_000_002)
			if err != nil {
				return err
			}
			own, err := w2.issue(card.UID{0x04, 0xA1, 0x02, 0x02, 0x03, 0x04, 0x05}, card.KindCustomer, nil)
			if err != nil {
				return fmt.Errorf("issue: %w", err)
			}
			crafted, err := craftVouchers(ctx, lab, w2.m.ID(), rnd)
			if err != nil {
				return err
			}
			m2 := w2.m
			b2 := m2.Snapshot()
			offered, rejected := 0, 0
			var credited int64
			for len(crafted) > 0 {
				n := min(len(crafted), card.Slots)
				ci := own.Image()
				for i := range ci.Slots {
					ci.Slots[i] = card.Slot{Index: i}
				}
				for i, v := range crafted[:n] {
					ci.Slots[i] = card.Slot{Index: i, State: card.SlotPending, MeterID: m2.ID(), Sequence: uint32(100 + offered + i), Voucher: v.b}
				}
				crafted = crafted[n:]
				c, err := card.New(ci, rnd, nil)
				if err != nil {
					return err
				}
				rs, err := cardport.Insert(m2.Meter, lab.Now, c)
				if err != nil && len(rs) == 0 {
					return fmt.Errorf("genuine card refused: %w", err)
				}
				offered += n
				for _, rc := range rs {
					if rc.Status == card.Rejected {
						rejected++
					}
				}
				t, _ := loadedTotal(rs)
				credited += t
			}
			a2 := m2.Snapshot()
			r.Measure("crafted_vouchers", float64(offered))
			r.Observe("crafted vouchers on a genuine card", credited == 0 && a2.Credit == b2.Credit && rejected == offered,
				"%d crafted vouchers (random bytes, attacker-signed, trusted key ID with attacker signature, quantity raised, meter ID changed) written to the attacker's own card: %d rejected by the meter, %d L credited",
				offered, rejected, credited)
			return nil
		},
	}
}

// craftedVoucher is one forgery with what it tries.
type craftedVoucher struct {
	what string
	b    []byte
}

// attackerKey is the Ed25519 key an attacker signs forgeries with.
func attackerKey(lab *Lab) ed25519.PrivateKey {
	seed := make([]byte, ed25519.SeedSize)
	lab.Rand("attacker signing key").Read(seed)
	return ed25519.NewKeyFromSeed(seed)
}

// craftVouchers makes the forgeries an attacker with the voucher format
// (docs/voucher.md) can make without the credit key.
func craftVouchers(ctx context.Context, lab *Lab, meterID uint64, rnd io.Reader) ([]craftedVoucher, error) {
	var out []craftedVoucher
	for i := 0; i < 4; i++ {
		b := make([]byte, voucher.CreditSize)
		rnd.Read(b)
		out = append(out, craftedVoucher{"random bytes", b})
	}
	ak := attackerKey(lab)
	v := voucher.Voucher{Kind: voucher.KindCredit, MeterID: meterID, Sequence: 1, Issued: lab.Now.Add(-time.Hour),
		Expires: lab.Now.Add(time.Hour), Unit: voucher.UnitLitres, Quantity: 1_000_000}
	own, err := voucher.Sign(&v, ak)
	if err != nil {
		return nil, err
	}
	out = append(out, craftedVoucher{"signed by the attacker's key", own})
	// The same, claiming the trusted credit key's ID.
	ring, err := lab.trusted(ctx)
	if err != nil {
		return nil, err
	}
	claimed := append([]byte(nil), own...)
	for _, k := range ring {
		if k.Role == voucher.RoleCredit {
			binary.BigEndian.PutUint32(claimed[keyIDOffset:], voucher.KeyID(k.Public))
		}
	}
	out = append(out, craftedVoucher{"attacker signature under the trusted key ID", claimed})
	// A genuine voucher for 10 L, quantity raised; and one for another meter
	// with the meter ID changed.
	g, err := lab.CreditVoucher(ctx, meterID, 2, 10)
	if err != nil {
		return nil, err
	}
	raised := append([]byte(nil), g...)
	binary.BigEndian.PutUint32(raised[voucher.HeaderSize+1:], 1_000_000)
	out = append(out, craftedVoucher{"genuine voucher, quantity raised", raised})
	o, err := lab.CreditVoucher(ctx, meterID+1, 3, 10)
	if err != nil {
		return nil, err
	}
	moved := append([]byte(nil), o...)
	binary.BigEndian.PutUint64(moved[meterIDOffset:], meterID)
	out = append(out, craftedVoucher{"other meter's voucher, meter ID changed", moved})
	return out, nil
}

// Offsets of the voucher header fields (docs/voucher.md): version (1),
// kind (1), meter ID (8), sequence (4), key ID (4), issued (4), expires (4).
const (
	meterIDOffset = 2
	keyIDOffset   = 14
)

func (l *Lab) trusted(ctx context.Context) (voucher.Keyring, error) {
	return keys.TrustedKeys(ctx, l.KM)
}
