// Package cardtest holds what the card tests share: a deterministic world of
// keys and signed vouchers, and a minimal meter that accepts vouchers the
// way the reference meter must (voucher.Open, sequence memory, credit
// committed before the receipt is returned).
package cardtest

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"io"
	"math/rand/v2"
	"testing"
	"time"

	"sluice/card"
	"sluice/voucher"
)

// Rand returns a deterministic random stream for a test.
func Rand(seed byte) io.Reader {
	var s [32]byte
	s[0] = seed
	return rand.NewChaCha8(s)
}

// World is one meter with its keys and a credit signer.
type World struct {
	MeterID      uint64
	MeterCardKey []byte // the meter's card key (from the KMS)
	BatchKey     []byte // the card manufacturer's batch key
	Credit       ed25519.PrivateKey
	Management   ed25519.PrivateKey
	Now          time.Time
}

// NewWorld returns a world for meter id.
func NewWorld(id uint64) *World {
	r := Rand(byte(id))
	_, credit, _ := ed25519.GenerateKey(r)
	_, mgmt, _ := ed25519.GenerateKey(r)
	return &World{
		MeterID:      id,
		MeterCardKey: bytes.Repeat([]byte{byte(id)}, 16),
		BatchKey:     bytes.Repeat([]byte{0xBA}, 16),
		Credit:       credit,
		Management:   mgmt,
		Now:          time.Date(2026, 11, 25, 8, 0, 0, 0, time.UTC),
	}
}

// BlankCard returns a blank emulated card with this UID.
func (w *World) BlankCard(t testing.TB, uid card.UID, seed byte) *card.Card {
	t.Helper()
	tk, err := card.TransportKey(w.BatchKey, uid)
	if err != nil {
		t.Fatal(err)
	}
	img, err := card.NewBlank(uid, tk)
	if err != nil {
		t.Fatal(err)
	}
	c, err := card.New(img, Rand(seed), nil)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Personalization returns the binding the office writes for kind.
func (w *World) Personalization(kind card.Kind) card.Personalization {
	return card.Personalization{KeyVersion: 1, Kind: kind, MeterID: w.MeterID, Issued: w.Now}
}

// CreditVoucher signs a credit voucher of litres for meter id.
func (w *World) CreditVoucher(t testing.TB, meterID uint64, seq, litres uint32) []byte {
	t.Helper()
	b, err := voucher.Sign(&voucher.Voucher{
		Kind: voucher.KindCredit, MeterID: meterID, Sequence: seq,
		Issued: w.Now.Add(-time.Hour), Expires: w.Now.Add(30 * 24 * time.Hour),
		Unit: voucher.UnitLitres, Quantity: litres,
	}, w.Credit)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TamperVoucher signs an engineering voucher clearing tamper flags, valid
// until expires.
func (w *World) TamperVoucher(t testing.TB, seq uint32, expires time.Time) []byte {
	t.Helper()
	b, err := voucher.Sign(&voucher.Voucher{
		Kind: voucher.KindClearTamper, MeterID: w.MeterID, Sequence: seq,
		Issued: w.Now.Add(-time.Hour), Expires: expires, TamperMask: 1,
	}, w.Management)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Meter is a minimal meter: it accepts vouchers exactly as card.Meter
// requires and keeps its state in memory.
type Meter struct {
	ID      uint64
	Ring    voucher.Keyring
	Now     time.Time
	Last    uint32 // highest sequence accepted
	Balance int64  // litres
	Loads   int    // vouchers credited
	Fail    bool   // the journal fails: Accept cannot decide
}

// NewMeter returns the world's meter.
func (w *World) NewMeter() *Meter {
	return &Meter{
		ID: w.MeterID, Now: w.Now,
		Ring: voucher.Keyring{
			{Role: voucher.RoleCredit, Public: w.Credit.Public().(ed25519.PublicKey)},
			{Role: voucher.RoleManagement, Public: w.Management.Public().(ed25519.PublicKey)},
		},
	}
}

// Accept implements card.Meter.
func (m *Meter) Accept(b []byte) (card.Receipt, error) {
	if m.Fail {
		return card.Receipt{}, errors.New("journal write failed")
	}
	r := card.Receipt{Balance: m.Balance, At: m.Now}
	v, err := voucher.Open(b, m.Ring, m.ID, m.Now)
	if err != nil {
		r.Status = card.Rejected
		return r, nil
	}
	r.Sequence = v.Sequence
	if v.CheckSequence(m.Last) != nil {
		r.Status = card.AlreadyLoaded
		return r, nil
	}
	// The commit: sequence and credit in one step.
	m.Last = v.Sequence
	if v.Kind == voucher.KindCredit {
		m.Balance += int64(v.Quantity)
		m.Loads++
		r.Amount = int64(v.Quantity)
	}
	r.Status, r.Balance = card.Loaded, m.Balance
	return r, nil
}
