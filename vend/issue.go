package vend

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"sluice/ledger"
	"sluice/store"
	"sluice/sts"
	"sluice/voucher"
)

// issuer makes the tokens or vouchers of one purchase (or engineering
// request) for one meter, and tracks the meter's counters as it goes.
type issuer struct {
	s     *Service
	tx    store.Tx
	m     store.Meter // updated in memory; written by commit
	now   time.Time
	g     store.SupplyGroup
	pan   sts.PAN
	coder *sts.Coder // under the meter's current key
	rows  []store.Token
	// bases are the STS base date each row's TID counts from.
	bases []int
	// issued is what the receipt shows, in order.
	issued []IssuedToken
}

func (s *Service) issuer(ctx context.Context, tx store.Tx, m store.Meter, now time.Time) (*issuer, error) {
	var g store.SupplyGroup
	if m.Kind == store.MeterSTS {
		var err error
		if g, err = tx.SupplyGroups().Get(ctx, m.SGC); err != nil {
			return nil, err
		}
	}
	return s.issuerIn(ctx, tx, m, g, now)
}

// issuerIn is issuer with the meter's supply group read already (a
// purchase reads it with its other inputs).
func (s *Service) issuerIn(ctx context.Context, tx store.Tx, m store.Meter, g store.SupplyGroup, now time.Time) (*issuer, error) {
	iss := &issuer{s: s, tx: tx, m: m, now: now, g: g}
	if m.Kind != store.MeterSTS {
		return iss, nil
	}
	if g.Code != m.SGC {
		return nil, fmt.Errorf("meter %s: supply group %s: %w", m.Number, m.SGC, store.ErrNotFound)
	}
	var err error
	if iss.pan, err = sts.ParsePAN(m.Number); err != nil {
		return nil, fmt.Errorf("meter %s: %w", m.Number, err)
	}
	iss.coder, err = s.coder(ctx, iss.g, iss.keyID(), iss.pan, sts.BaseDate(m.BaseDate))
	return iss, err
}

// keyID is the meter's current STS key identity.
func (iss *issuer) keyID() sts.KeyID {
	sgc, _ := sts.ParseSGC(iss.m.SGC)
	return sts.KeyID{KT: iss.m.KT, SGC: sgc, TI: iss.m.TI, KRN: iss.m.KRN}
}

// keyChangeIfDue issues the key-change set that moves an STS meter to its
// supply group's current key revision, tariff index and base date, and
// switches the issuer to the new key for what follows.
func (iss *issuer) keyChangeIfDue(ctx context.Context) error {
	if iss.m.Kind != store.MeterSTS {
		return nil
	}
	g, m := iss.g, iss.m
	if m.KRN == g.KRN && m.TI == g.TI && m.BaseDate == g.BaseDate && m.KT == 2 {
		return nil
	}
	sgc, err := sts.ParseSGC(g.Code)
	if err != nil {
		return err
	}
	newID := sts.KeyID{KT: 2, SGC: sgc, TI: g.TI, KRN: g.KRN}
	newBase := sts.BaseDate(g.BaseDate)
	newKey, err := iss.s.cfg.Keys.DecoderKey(ctx, g, g.KRN, newID, iss.pan, newBase)
	if err != nil {
		return fmt.Errorf("new decoder key of meter %s: %w", m.Number, err)
	}
	defer clear(newKey)
	toks, err := iss.coder.KeyChange(sts.KeyChange{
		NewKey: newKey, KEN: 255, KRN: g.KRN, RO: g.BaseDate != m.BaseDate, KT: 2, TI: g.TI, SGC: sgc,
	})
	if err != nil {
		return fmt.Errorf("key change for meter %s: %w", m.Number, err)
	}
	// Sections are entered in subclass order 3, 4 (and 8, 9 for 128-bit keys).
	subclasses := []int{3, 4, 8, 9}
	for i, t := range toks {
		iss.add(store.Token{Kind: store.TokenKeyChange, Class: int(sts.ClassManagement), Subclass: subclasses[i], Digits: t.String()},
			IssuedToken{Kind: store.TokenKeyChange, Label: fmt.Sprintf("Key change %d of %d", i+1, len(toks)), Token: t.String()})
	}
	if g.BaseDate != m.BaseDate {
		// A rollover clears the meter's TID memory; TIDs restart on the
		// new base date.
		iss.m.LastTID = 0
	}
	iss.m.KRN, iss.m.TI, iss.m.KT, iss.m.BaseDate = g.KRN, g.TI, 2, g.BaseDate
	iss.coder, err = iss.s.coder(ctx, g, newID, iss.pan, newBase)
	return err
}

// maxSTSUnits is the largest STS water quantity (0.1 m3 units) whose amount
// field is exact: above it the field rounds up, which would give water
// nobody paid for.
const maxSTSUnits = 16383

// credit issues litres of water credit as one token or voucher.
func (iss *issuer) credit(ctx context.Context, kind, label string, litres int64) error {
	if iss.m.Kind != store.MeterSTS {
		return iss.voucher(ctx, kind, label, &voucher.Voucher{Kind: voucher.KindCredit, Unit: voucher.UnitLitres, Quantity: uint32(litres)}, litres)
	}
	units := litres / 100
	if units > maxSTSUnits {
		return &FieldError{Field: "amount_cents", Msg: fmt.Sprintf("buys %d litres, more than one STS token carries exactly (%d)", litres, maxSTSUnits*100)}
	}
	tid, err := iss.nextTID()
	if err != nil {
		return err
	}
	t, err := iss.coder.Credit(sts.SubWater, randomNibble(), tid, uint64(units))
	if err != nil {
		return fmt.Errorf("credit token for meter %s: %w", iss.m.Number, err)
	}
	iss.add(store.Token{Kind: kind, Class: int(sts.ClassCredit), Subclass: int(sts.SubWater), TID: int64(tid), Digits: t.String(), Litres: units * 100},
		IssuedToken{Kind: kind, Label: label, Token: t.String(), TID: tid, Litres: units * 100})
	return nil
}

// management issues a TID-bearing STS management token.
func (iss *issuer) management(subclass uint8, value uint16, label string) error {
	tid, err := iss.nextTID()
	if err != nil {
		return err
	}
	t, err := iss.coder.Management(subclass, randomNibble(), tid, value)
	if err != nil {
		return fmt.Errorf("management token for meter %s: %w", iss.m.Number, err)
	}
	iss.add(store.Token{Kind: store.TokenEngineering, Class: int(sts.ClassManagement), Subclass: int(subclass), TID: int64(tid), Digits: t.String()},
		IssuedToken{Kind: store.TokenEngineering, Label: label, Token: t.String(), TID: tid})
	return nil
}

func (iss *issuer) nextTID() (uint32, error) {
	last := iss.m.LastTID
	if last == 0 {
		last = -1
	}
	tid, err := sts.NextTID(sts.BaseDate(iss.m.BaseDate), last, iss.now)
	if err != nil {
		return 0, fmt.Errorf("TID for meter %s: %w", iss.m.Number, err)
	}
	iss.m.LastTID = int64(tid)
	return tid, nil
}

// voucher signs v for the meter with its next sequence number.
func (iss *issuer) voucher(ctx context.Context, kind, label string, v *voucher.Voucher, litres int64) error {
	id, err := strconv.ParseUint(iss.m.Number, 10, 64)
	if err != nil || id == 0 {
		return fmt.Errorf("meter %s: voucher meters need a numeric serial: %w", iss.m.Number, ErrInvalid)
	}
	iss.m.VoucherSeq++
	v.MeterID, v.Sequence = id, uint32(iss.m.VoucherSeq)
	v.Issued, v.Expires = iss.now, iss.now.Add(iss.s.cfg.VoucherTTL)
	b, err := iss.s.cfg.Keys.SignVoucher(ctx, v)
	if err != nil {
		return fmt.Errorf("sign voucher for meter %s: %w", iss.m.Number, err)
	}
	iss.add(store.Token{Kind: kind, Voucher: b, VoucherSeq: iss.m.VoucherSeq, Litres: litres},
		IssuedToken{Kind: kind, Label: label, Voucher: b, Sequence: v.Sequence, Litres: litres})
	return nil
}

func (iss *issuer) add(row store.Token, shown IssuedToken) {
	row.MeterID, row.Ordinal, row.CreatedAt = iss.m.ID, len(iss.rows), iss.now
	iss.rows = append(iss.rows, row)
	iss.bases = append(iss.bases, iss.m.BaseDate)
	iss.issued = append(iss.issued, shown)
}

// commitRequest writes engineering tokens issued for a request.
func (iss *issuer) commitRequest(ctx context.Context, requestID int64) error {
	for _, r := range iss.rows {
		r.RequestID = requestID
		if _, err := iss.tx.Tokens().Create(ctx, r); err != nil {
			return err
		}
	}
	return iss.tx.Meters().Update(ctx, iss.m)
}

// ledgerTokens lists what was delivered, for the ledger's invariants.
func (iss *issuer) ledgerTokens() []ledger.Token {
	var out []ledger.Token
	for i, r := range iss.rows {
		t := ledger.Token{Meter: iss.m.Number, TID: uint32(r.TID), Seq: uint64(r.VoucherSeq)}
		if r.TID != 0 {
			t.Base = uint16(iss.bases[i])
		}
		switch r.Kind {
		case store.TokenKeyChange:
			t.Purpose = ledger.PurposeKeyChange
		case store.TokenFreeWater:
			t.Purpose = ledger.PurposeFree
		case store.TokenEngineering:
			t.Purpose = ledger.PurposeEngineering
		default:
			t.Purpose = ledger.PurposeCredit
		}
		out = append(out, t)
	}
	return out
}
