package vend

import (
	"context"
	"errors"
	"fmt"

	"sluice/ledger"
	"sluice/store"
)

// DepositRequest records money a vending point handed in to top up its float.
type DepositRequest struct {
	Vendor      string `json:"vendor"`
	AmountCents int64  `json:"amount_cents"`
	// Bank is the account (or cash office) that received the money.
	Bank string `json:"bank"`
	// Reference is the deposit slip or bank reference; a deposit is recorded
	// once per reference, so a repeated submission changes nothing.
	Reference string `json:"reference"`
}

// ErrDuplicate reports a reference recorded already.
var ErrDuplicate = errors.New("already recorded")

func checkRef(field, v string) error {
	if v == "" {
		return fieldErr(field, "is required")
	}
	if len(v) > 64 {
		return fieldErr(field, "must be at most 64 characters")
	}
	for _, r := range v {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return fieldErr(field, "may contain only letters, digits, '-' and '_'")
		}
	}
	return nil
}

// Deposit credits a vendor's float and posts it to the ledger.
func (s *Service) Deposit(ctx context.Context, a Actor, req DepositRequest) (store.Vendor, error) {
	if req.AmountCents <= 0 || req.AmountCents > 1_000_000_000 {
		return store.Vendor{}, fieldErr("amount_cents", "must be between 1 and 1000000000")
	}
	if req.Bank == "" {
		req.Bank = "main"
	}
	if err := checkRef("bank", req.Bank); err != nil {
		return store.Vendor{}, err
	}
	if err := checkRef("reference", req.Reference); err != nil {
		return store.Vendor{}, err
	}
	var out store.Vendor
	err := s.cfg.Store.Tx(ctx, func(tx store.Tx) error {
		v, err := tx.Vendors().ByCode(ctx, req.Vendor)
		if errors.Is(err, store.ErrNotFound) {
			return fieldErr("vendor", "no vending point %q", req.Vendor)
		}
		if err != nil {
			return err
		}
		now := s.now().UTC()
		e, err := ledger.DepositEntry(ledger.Deposit{ID: v.Code + "." + req.Reference, Vendor: v.Code, Bank: req.Bank,
			Currency: s.currency(), Amount: req.AmountCents, Time: now})
		if err != nil {
			return fmt.Errorf("%w: %v", ErrInvalid, err)
		}
		if _, err := tx.Ledger().Append(ctx, storeEntry(e)); err != nil {
			if errors.Is(err, store.ErrConflict) {
				return fmt.Errorf("deposit %s for %s: %w", req.Reference, v.Code, ErrDuplicate)
			}
			return err
		}
		after, err := tx.Vendors().AdjustFloat(ctx, v.ID, req.AmountCents)
		if err != nil {
			return err
		}
		v.FloatCents = after
		out = v
		return store.AppendAudit(ctx, tx, now, a.String(), "vendor.deposit", "vendor/"+v.Code, map[string]any{
			"amount_cents": req.AmountCents, "bank": req.Bank, "reference": req.Reference, "float_after": after,
		})
	})
	return out, err
}

// DebtRequest loads arrears onto a customer's account, to be recovered by a
// share of each purchase.
type DebtRequest struct {
	Account     string `json:"account"`
	AmountCents int64  `json:"amount_cents"`
	Reference   string `json:"reference"`
}

// TakeOnDebt adds arrears to a customer's debt and posts them.
func (s *Service) TakeOnDebt(ctx context.Context, a Actor, req DebtRequest) (store.Customer, error) {
	if req.AmountCents <= 0 || req.AmountCents > 1_000_000_000 {
		return store.Customer{}, fieldErr("amount_cents", "must be between 1 and 1000000000")
	}
	if err := checkRef("reference", req.Reference); err != nil {
		return store.Customer{}, err
	}
	var out store.Customer
	err := s.cfg.Store.Tx(ctx, func(tx store.Tx) error {
		c, err := tx.Customers().ByAccount(ctx, req.Account)
		if errors.Is(err, store.ErrNotFound) {
			return fieldErr("account", "no customer %q", req.Account)
		}
		if err != nil {
			return err
		}
		now := s.now().UTC()
		e, err := ledger.DebtEntry(ledger.DebtTakeOn{ID: c.Account + "." + req.Reference, Customer: c.Account,
			Currency: s.currency(), Amount: req.AmountCents, Time: now})
		if err != nil {
			return fmt.Errorf("%w: %v", ErrInvalid, err)
		}
		if _, err := tx.Ledger().Append(ctx, storeEntry(e)); err != nil {
			if errors.Is(err, store.ErrConflict) {
				return fmt.Errorf("debt %s for %s: %w", req.Reference, c.Account, ErrDuplicate)
			}
			return err
		}
		if err := tx.Customers().AdjustDebt(ctx, c.ID, req.AmountCents); err != nil {
			return err
		}
		c.DebtCents += req.AmountCents
		out = c
		return store.AppendAudit(ctx, tx, now, a.String(), "customer.debt", "customer/"+c.Account, map[string]any{
			"amount_cents": req.AmountCents, "reference": req.Reference, "debt_after": c.DebtCents,
		})
	})
	return out, err
}

func (s *Service) currency() string {
	if s.cfg.Currency != "" {
		return s.cfg.Currency
	}
	return "ZAR"
}
