package vend

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"sluice/ledger"
	"sluice/store"
	"sluice/tariff"
)

// Preview is what a purchase would give, computed without issuing anything.
type Preview struct {
	Meter        string            `json:"meter"`
	MeterKind    string            `json:"meter_kind"`
	Customer     *CustomerRef      `json:"customer,omitempty"`
	Breakdown    *tariff.Breakdown `json:"breakdown"`
	KeyChangeDue bool              `json:"key_change_due"`
}

// Preview shows the breakdown of a purchase before the customer pays.
func (s *Service) Preview(ctx context.Context, req PurchaseRequest) (Preview, error) {
	if err := req.validate(); err != nil {
		return Preview{}, err
	}
	var out Preview
	err := s.cfg.Store.Read(ctx, func(tx store.Tx) error {
		m, err := tx.Meters().ByNumber(ctx, req.Meter)
		if errors.Is(err, store.ErrNotFound) {
			return fieldErr("meter", "no meter %q", req.Meter)
		}
		if err != nil {
			return err
		}
		if m.CustomerID == 0 {
			return fieldErr("meter", "meter %s is not assigned to a customer", m.Number)
		}
		cust, err := tx.Customers().ByID(ctx, m.CustomerID)
		if err != nil {
			return err
		}
		t, err := s.tariff(ctx, tx, m.TariffCode)
		if err != nil {
			return err
		}
		local := s.now().In(s.loc)
		mm, err := tx.MeterMonths().Get(ctx, m.ID, local.Format("2006-01"))
		if err != nil {
			return err
		}
		bd, err := t.Purchase(tariff.Request{
			Date:    tariff.DateOf(local),
			Usage:   tariff.Usage{PaidLitres: tariff.Litres(mm.PaidLitres), FreeIssued: mm.FreeIssued, FixedCollected: tariff.Cents(mm.FixedCollected)},
			Debt:    tariff.Cents(cust.DebtCents),
			Quantum: quantum(m),
		}, tariff.Cents(req.AmountCents))
		if err != nil {
			return fieldErr("amount_cents", "%v", err)
		}
		out = Preview{Meter: m.Number, MeterKind: m.Kind, Customer: &CustomerRef{Account: cust.Account, Name: cust.Name}, Breakdown: &bd}
		if m.Kind == store.MeterSTS {
			g, err := tx.SupplyGroups().Get(ctx, m.SGC)
			if err != nil {
				return err
			}
			out.KeyChangeDue = g.KRN != m.KRN || g.TI != m.TI || g.BaseDate != m.BaseDate || m.KT != 2
		}
		return nil
	})
	return out, err
}

// Receipt returns a stored purchase's receipt (a reprint: the same tokens).
// A cashier sees only the purchases of its own vending point. Every reprint
// is audited, because a reprinted token is a second copy of money.
func (s *Service) Receipt(ctx context.Context, a Actor, id int64, restrictToVendor bool) (Receipt, []byte, error) {
	var p store.Purchase
	err := s.cfg.Store.Tx(ctx, func(tx store.Tx) error {
		var err error
		if p, err = tx.Purchases().ByID(ctx, id); err != nil {
			return err
		}
		if restrictToVendor && p.VendorID != a.VendorID {
			// Not found rather than forbidden: purchase IDs of other
			// vending points are none of a cashier's business.
			return fmt.Errorf("purchase %d: %w", id, store.ErrNotFound)
		}
		return store.AppendAudit(ctx, tx, s.now().UTC(), a.String(), "vend.reprint", "purchase/"+strconv.FormatInt(id, 10), map[string]any{})
	})
	if err != nil {
		return Receipt{}, nil, err
	}
	var r Receipt
	if err := json.Unmarshal(p.Response, &r); err != nil {
		return Receipt{}, nil, err
	}
	r.State = p.State
	js, err := json.Marshal(r)
	return r, js, err
}

// ReversalRequest asks to undo a purchase.
type ReversalRequest struct {
	Reason string `json:"reason"`
	// Compensate accepts, for a purchase whose credit may have reached the
	// meter, a compensating entry instead: the money goes back to the
	// vendor's float and the water's value becomes the customer's debt.
	Compensate bool `json:"compensate,omitempty"`
}

// Reversal is the outcome of Reverse.
type Reversal struct {
	PurchaseID int64  `json:"purchase_id"`
	Mode       string `json:"mode"` // "reversed" or "compensated"
	Refunded   int64  `json:"refunded_cents"`
	DebtRaised int64  `json:"debt_raised_cents"`
}

// Reverse undoes a purchase, under the rule in docs/vending.md: a purchase
// whose credit cannot have reached the meter (it issued no credit, or only
// vouchers for a networked meter that were never delivered) is reversed
// outright; otherwise only a compensating entry is possible, because a token
// once printed or a voucher once on a card may already be in the meter.
func (s *Service) Reverse(ctx context.Context, a Actor, id int64, req ReversalRequest) (Reversal, error) {
	if err := text("reason", req.Reason, 3, 256); err != nil {
		return Reversal{}, err
	}
	var out Reversal
	err := s.cfg.Store.Tx(ctx, func(tx store.Tx) error {
		p, err := tx.Purchases().ByID(ctx, id)
		if err != nil {
			return err
		}
		// Lock the meter, then read the purchase again: a concurrent
		// reversal of the same purchase waits here and then sees it done.
		m, err := tx.Meters().ForUpdate(ctx, p.MeterID)
		if err != nil {
			return err
		}
		if p, err = tx.Purchases().ByID(ctx, id); err != nil {
			return err
		}
		if p.State != store.PurchaseCompleted {
			return fmt.Errorf("purchase %d is %s: %w", id, p.State, ErrNotReversible)
		}
		toks, err := tx.Tokens().ByPurchase(ctx, p.ID)
		if err != nil {
			return err
		}
		reachable := false
		var litres int64
		for _, t := range toks {
			if t.Kind == store.TokenCredit || t.Kind == store.TokenFreeWater {
				litres += t.Litres
				// Only a networked meter's vouchers wait at the head-end
				// until delivered; anything else is in the customer's hands.
				if m.Kind != store.MeterAMI || delivered(t) {
					reachable = true
				}
			}
		}
		var r Receipt
		if err := json.Unmarshal(p.Response, &r); err != nil {
			return err
		}
		if reachable && !req.Compensate {
			return fmt.Errorf("%w: purchase %d issued credit that may have reached meter %s; ask for a compensating entry instead", ErrNotReversible, id, m.Number)
		}
		se, err := tx.Ledger().ByID(ctx, "purchase:"+strconv.FormatInt(p.ID, 10))
		if err != nil {
			return err
		}
		orig, err := LedgerEntry(se)
		if err != nil {
			return err
		}
		now := s.now().UTC()
		rev, err := ledger.Reverse(orig, "purchase-"+strconv.FormatInt(p.ID, 10), now)
		if err != nil {
			return fmt.Errorf("%w: %v", ErrNotReversible, err)
		}
		if _, err := tx.Ledger().Append(ctx, storeEntry(rev)); err != nil {
			return err
		}
		if _, err := tx.Vendors().AdjustFloat(ctx, p.VendorID, p.PaidCents); err != nil {
			return err
		}
		cust, err := tx.Customers().ByID(ctx, p.CustomerID)
		if err != nil {
			return err
		}
		// The reversal gives back the debt the purchase recovered.
		debt := int64(r.Breakdown.Debt)
		out = Reversal{PurchaseID: p.ID, Mode: "reversed", Refunded: p.PaidCents}
		if reachable {
			// The credit stays with the meter; its value (water and its
			// VAT) becomes debt, recovered from later purchases.
			out.Mode, out.DebtRaised = "compensated", int64(r.Breakdown.Water)
			de, err := ledger.DebtEntry(ledger.DebtTakeOn{ID: cust.Account + ".purchase-" + strconv.FormatInt(p.ID, 10),
				Customer: cust.Account, Currency: s.currency(), Amount: out.DebtRaised, Time: now})
			if err != nil {
				return err
			}
			if out.DebtRaised > 0 {
				if _, err := tx.Ledger().Append(ctx, storeEntry(de)); err != nil {
					return err
				}
			}
			debt += out.DebtRaised
		}
		if debt > 0 {
			if err := tx.Customers().AdjustDebt(ctx, cust.ID, debt); err != nil {
				return err
			}
		}
		if !reachable {
			// The block ladder forgets what was never delivered.
			month := r.Time.In(s.loc).Format("2006-01")
			mm, err := tx.MeterMonths().Get(ctx, m.ID, month)
			if err != nil {
				return err
			}
			mm.PaidLitres = max(0, mm.PaidLitres-r.Litres)
			mm.FixedCollected = max(0, mm.FixedCollected-int64(r.Breakdown.FixedTotal()))
			if r.FreeLitres > 0 {
				mm.FreeIssued = false
			}
			if err := tx.MeterMonths().Put(ctx, mm); err != nil {
				return err
			}
		}
		if err := tx.Purchases().SetState(ctx, p.ID, store.PurchaseReversed); err != nil {
			return err
		}
		_ = litres
		return store.AppendAudit(ctx, tx, now, a.String(), "vend.reverse", "purchase/"+strconv.FormatInt(p.ID, 10), map[string]any{
			"mode": out.Mode, "reason": req.Reason, "refunded_cents": out.Refunded, "debt_raised_cents": out.DebtRaised,
		})
	})
	return out, err
}

// delivered reports whether a voucher has reached its meter. Delivery is
// acknowledged by the meter's telemetry; until that is recorded, a networked
// meter's voucher counts as waiting at the head-end.
func delivered(t store.Token) bool { return !t.DeliveredAt.IsZero() }
