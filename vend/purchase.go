package vend

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"sluice/ledger"
	"sluice/store"
	"sluice/tariff"
)

// PurchaseRequest is what a vending clerk or terminal asks for.
type PurchaseRequest struct {
	// Meter is the meter number: an STS meter's 18-digit PAN, or the serial
	// of a card or AMI meter.
	Meter string `json:"meter"`
	// AmountCents is the money tendered, in minor units.
	AmountCents int64 `json:"amount_cents"`
}

// MaxAmountCents bounds one purchase (a million rand): far above any
// household purchase, and a guard against a mistyped amount.
const MaxAmountCents = 100_000_000

func (r PurchaseRequest) validate() error {
	if r.Meter == "" {
		return fieldErr("meter", "is required")
	}
	if len(r.Meter) > 32 || strings.TrimSpace(r.Meter) != r.Meter {
		return fieldErr("meter", "is not a meter number")
	}
	if r.AmountCents <= 0 {
		return fieldErr("amount_cents", "must be positive")
	}
	if r.AmountCents > MaxAmountCents {
		return fieldErr("amount_cents", "must not exceed %d", MaxAmountCents)
	}
	return nil
}

func validKey(key string) error {
	if key == "" {
		return fieldErr("Idempotency-Key", "header is required")
	}
	if len(key) > 128 {
		return fieldErr("Idempotency-Key", "must be at most 128 characters")
	}
	for _, c := range key {
		if c < 0x21 || c > 0x7e {
			return fieldErr("Idempotency-Key", "must be printable ASCII without spaces")
		}
	}
	return nil
}

// Receipt is the result of a purchase: what the clerk prints and what a
// retry returns again, byte for byte.
type Receipt struct {
	PurchaseID int64        `json:"purchase_id"`
	Reference  string       `json:"reference"`
	State      string       `json:"state"`
	Time       time.Time    `json:"time"`
	Vendor     string       `json:"vendor"`
	Operator   string       `json:"operator"`
	Meter      string       `json:"meter"`
	MeterKind  string       `json:"meter_kind"`
	Customer   *CustomerRef `json:"customer,omitempty"`
	Tendered   int64        `json:"tendered_cents"`
	Paid       int64        `json:"paid_cents"`
	Change     int64        `json:"change_cents"`
	Litres     int64        `json:"litres"`
	FreeLitres int64        `json:"free_litres"`
	// Tokens are in the order the meter must take them: key change first.
	Tokens    []IssuedToken     `json:"tokens"`
	Breakdown *tariff.Breakdown `json:"breakdown"`
}

// CustomerRef names the account a purchase was for.
type CustomerRef struct {
	Account string `json:"account"`
	Name    string `json:"name"`
}

// IssuedToken is one token or voucher of a receipt.
type IssuedToken struct {
	Kind  string `json:"kind"`
	Label string `json:"label"`
	// Token is the 20-digit STS token; Voucher the signed voucher (base64
	// in JSON) for card and AMI meters.
	Token    string `json:"token,omitempty"`
	Voucher  []byte `json:"voucher,omitempty"`
	TID      uint32 `json:"tid,omitempty"`
	Sequence uint32 `json:"sequence,omitempty"`
	Litres   int64  `json:"litres,omitempty"`
}

// Result is a purchase and whether it was a replay of an earlier one.
type Result struct {
	Receipt Receipt
	// Replayed is true when the idempotency key had been used with this
	// request already: the receipt is the stored one.
	Replayed bool
	// JSON is the receipt exactly as stored, for responses.
	JSON []byte
}

// errDuplicate is returned from inside a transaction that lost the race
// for an idempotency key; the caller re-reads the winner's purchase.
var errDuplicate = errors.New("duplicate idempotency key")

// Purchase sells AmountCents of water to a meter.
func (s *Service) Purchase(ctx context.Context, a Actor, key string, req PurchaseRequest) (Result, error) {
	if err := validKey(key); err != nil {
		return Result{}, err
	}
	if err := req.validate(); err != nil {
		return Result{}, err
	}
	if a.VendorID == 0 {
		return Result{}, ErrNoVendor
	}
	hash := requestHash(req.Meter, req.AmountCents)
	// No separate look-up of the key first: the transaction's first
	// statement is that look-up, and a used key ends it (errDuplicate)
	// before anything is locked or written. A first purchase, the common
	// case, saves a read transaction (three round trips on PostgreSQL).
	var out Result
	err := s.cfg.Store.Tx(ctx, func(tx store.Tx) error {
		var err error
		out, err = s.purchase(ctx, tx, a, key, hash, req)
		return err
	})
	if errors.Is(err, errDuplicate) {
		return s.replay(ctx, a.VendorID, key, hash)
	}
	if err != nil {
		return Result{}, err
	}
	return out, nil
}

// replay returns the stored result of an idempotency key, ErrNotFound when
// the key is unused, or ErrIdempotencyMismatch when it was used for another
// request.
func (s *Service) replay(ctx context.Context, vendorID int64, key string, hash []byte) (Result, error) {
	var p store.Purchase
	err := s.cfg.Store.Read(ctx, func(tx store.Tx) error {
		var err error
		p, err = tx.Purchases().ByKey(ctx, vendorID, key)
		return err
	})
	if errors.Is(err, store.ErrNotFound) {
		return Result{}, ErrNotFound
	}
	if err != nil {
		return Result{}, err
	}
	if !bytes.Equal(p.RequestHash, hash) {
		return Result{}, ErrIdempotencyMismatch
	}
	var r Receipt
	if err := json.Unmarshal(p.Response, &r); err != nil {
		return Result{}, fmt.Errorf("stored receipt of purchase %d: %w", p.ID, err)
	}
	return Result{Receipt: r, Replayed: true, JSON: p.Response}, nil
}

func (s *Service) purchase(ctx context.Context, tx store.Tx, a Actor, key string, hash []byte, req PurchaseRequest) (Result, error) {
	// Lock order for every vend: meter, then vendor float, then the day's
	// sales, then the customer's debt. One order means no deadlock between
	// concurrent vends (and reversals take the same order). The vendor's
	// rows are shared by every till of the vending point, so they are
	// written last, just before the commit: that is how long they stay
	// locked.
	//
	// The first statement locks the meter, looks the idempotency key up
	// and reserves the purchase's ID; a used key ends the transaction
	// (errDuplicate) before anything is written.
	st, err := tx.Purchases().Start(ctx, a.VendorID, key, req.Meter)
	if errors.Is(err, store.ErrNotFound) {
		// A retry names the meter it named the first time; only when the
		// meter is unknown can the key have been used for another one.
		if _, err := tx.Purchases().ByKey(ctx, a.VendorID, key); err == nil {
			return Result{}, errDuplicate
		}
		return Result{}, &FieldError{Field: "meter", Msg: "no meter " + strconv.Quote(req.Meter)}
	}
	if err != nil {
		return Result{}, err
	}
	if st.KeyUsed {
		return Result{}, errDuplicate
	}
	m := st.Meter
	if m.Status != "active" {
		return Result{}, fmt.Errorf("meter %s is %s: %w", m.Number, m.Status, ErrMeterBlocked)
	}
	if m.CustomerID == 0 {
		// The customer's account carries the debt and is on every receipt.
		return Result{}, &FieldError{Field: "meter", Msg: "meter " + m.Number + " is not assigned to a customer"}
	}
	now := s.now().UTC().Truncate(time.Second)
	local := now.In(s.loc)
	in, err := tx.Purchases().Inputs(ctx, a.VendorID, m, local.Format("2006-01"))
	if err != nil {
		return Result{}, err
	}
	v, cust, mm := in.Vendor, in.Customer, in.Month
	if v.Disabled {
		return Result{}, ErrVendorDisabled
	}
	t, err := s.tariffAt(ctx, tx, m.TariffCode, in.TariffUpdatedAt)
	if err != nil {
		return Result{}, err
	}
	bd, err := t.Purchase(tariff.Request{
		Date:    tariff.DateOf(local),
		Usage:   tariff.Usage{PaidLitres: tariff.Litres(mm.PaidLitres), FreeIssued: mm.FreeIssued, FixedCollected: tariff.Cents(mm.FixedCollected)},
		Debt:    tariff.Cents(cust.DebtCents),
		Quantum: quantum(m),
	}, tariff.Cents(req.AmountCents))
	if err != nil {
		if errors.Is(err, tariff.ErrInvalid) {
			return Result{}, &FieldError{Field: "amount_cents", Msg: err.Error()}
		}
		return Result{}, fmt.Errorf("tariff %s: %w", m.TariffCode, err)
	}
	paid := int64(bd.Paid())
	if paid == 0 {
		return Result{}, fmt.Errorf("%w: %d cents is less than the price of the smallest quantity", ErrNothingToBuy, req.AmountCents)
	}

	// Tokens and receipt are made before anything is written, so that the
	// purchase row is inserted once, with its receipt, under the ID
	// reserved by Start.
	iss, err := s.issuerIn(ctx, tx, m, in.SupplyGroup, now)
	if err != nil {
		return Result{}, err
	}
	if err := iss.keyChangeIfDue(ctx); err != nil {
		return Result{}, err
	}
	if bd.FreeLitres > 0 {
		if err := iss.credit(ctx, store.TokenFreeWater, "Free basic water", int64(bd.FreeLitres)); err != nil {
			return Result{}, err
		}
	}
	if bd.Litres > 0 {
		if err := iss.credit(ctx, store.TokenCredit, "Water credit", int64(bd.Litres)); err != nil {
			return Result{}, err
		}
	}
	id := st.NextID
	r := Receipt{
		PurchaseID: id, Reference: Reference(id), State: store.PurchaseCompleted, Time: now, Vendor: v.Code, Operator: a.Username,
		Meter: m.Number, MeterKind: m.Kind, Customer: &CustomerRef{Account: cust.Account, Name: cust.Name},
		Tendered: req.AmountCents, Paid: paid, Change: int64(bd.Change),
		Litres: int64(bd.Litres), FreeLitres: int64(bd.FreeLitres), Tokens: iss.issued, Breakdown: &bd,
	}
	js, err := json.Marshal(r)
	if err != nil {
		return Result{}, err
	}
	mm.PaidLitres, mm.FreeIssued, mm.FixedCollected = int64(bd.UsageAfter.PaidLitres), bd.UsageAfter.FreeIssued, int64(bd.UsageAfter.FixedCollected)
	entry, err := ledger.PurchaseEntry(ledger.Purchase{
		ID: strconv.FormatInt(id, 10), Vendor: v.Code, Meter: m.Number, Customer: cust.Account,
		Time: now, Breakdown: &bd, Tokens: iss.ledgerTokens(),
	})
	if err != nil {
		return Result{}, fmt.Errorf("ledger: %w", err)
	}
	audit, err := store.NewAuditRecord(now, a.String(), "vend.purchase", "purchase/"+strconv.FormatInt(id, 10), map[string]any{
		"meter": m.Number, "vendor": v.Code, "idempotency_key": key, "tendered_cents": req.AmountCents,
		"paid_cents": paid, "litres": bd.Litres, "free_litres": bd.FreeLitres, "tokens": len(iss.issued),
	})
	if err != nil {
		return Result{}, err
	}
	// Every write of the purchase in one call, in the lock order above:
	// purchase row, tokens, meter counters, block ladder, ledger, audit,
	// then the vendor's float and day's sales, then the debt. PostgreSQL
	// gets them in one round trip.
	err = tx.Purchases().Record(ctx, store.PurchaseRecord{
		Purchase: store.Purchase{
			ID: id, VendorID: v.ID, IdempotencyKey: key, RequestHash: hash, OperatorID: a.OperatorID, MeterID: m.ID, CustomerID: m.CustomerID,
			TenderedCents: req.AmountCents, PaidCents: paid, Litres: int64(bd.Litres), State: store.PurchaseCompleted,
			Response: js, CreatedAt: now,
		},
		Tokens: iss.rows, Meter: iss.m, Month: mm, Ledger: storeEntry(entry), Audit: audit,
		Day: local.Format("2006-01-02"), DebtRecovered: int64(bd.Debt),
	})
	switch {
	case errors.Is(err, store.ErrKeyUsed):
		return Result{}, errDuplicate
	case errors.Is(err, store.ErrFloatShort):
		return Result{}, ErrInsufficientFloat
	case errors.Is(err, store.ErrOverDailyLimit):
		return Result{}, ErrDailyLimit
	case err != nil:
		return Result{}, err
	}
	return Result{Receipt: r, JSON: js}, nil
}

// quantum is the smallest quantity a meter's credit can carry: STS water
// tokens count 0.1 m3 (100 litres); vouchers count litres.
func quantum(m store.Meter) tariff.Litres {
	if m.Kind == store.MeterSTS {
		return 100
	}
	return 1
}

// Reference is the purchase number printed on receipts.
func Reference(id int64) string { return fmt.Sprintf("P%08d", id) }

// storeEntry converts a ledger entry for storage.
func storeEntry(e ledger.Entry) store.LedgerEntry {
	se := store.LedgerEntry{ID: e.ID, Type: string(e.Type), Purchase: e.Purchase, Reverses: e.Reverses, Time: e.Time}
	for _, p := range e.Postings {
		se.Postings = append(se.Postings, store.Posting{Account: p.Account.String(), Unit: p.Unit, Amount: p.Amount})
	}
	se.Tokens, _ = json.Marshal(e.Tokens)
	if e.Tokens == nil {
		se.Tokens = []byte("[]")
	}
	return se
}

// LedgerEntry converts a stored entry back for package ledger.
func LedgerEntry(se store.LedgerEntry) (*ledger.Entry, error) {
	e := &ledger.Entry{Seq: uint64(se.Seq), ID: se.ID, Type: ledger.Type(se.Type), Purchase: se.Purchase, Reverses: se.Reverses, Time: se.Time}
	for _, p := range se.Postings {
		acc, err := ledger.ParseAccount(p.Account)
		if err != nil {
			return nil, fmt.Errorf("entry %s: %w", se.ID, err)
		}
		e.Postings = append(e.Postings, ledger.Posting{Account: acc, Unit: p.Unit, Amount: p.Amount})
	}
	if len(se.Tokens) > 0 {
		if err := json.Unmarshal(se.Tokens, &e.Tokens); err != nil {
			return nil, fmt.Errorf("entry %s tokens: %w", se.ID, err)
		}
	}
	return e, nil
}

// randomNibble is an STS token's RND field.
func randomNibble() uint8 {
	var b [1]byte
	rand.Read(b[:])
	return b[0] & 0x0f
}
