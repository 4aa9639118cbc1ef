// Package channel is the payment-channel API: how third parties that sell
// water for the utility (shop chains, banks, mobile-money operators) vend
// over the network, with their own fee and limits.
//
// A channel is a vending point (store.Vendor, with its prepaid float and
// daily limit) plus channel settings (store.Channel: a fee per purchase and a
// cap on one purchase). Its terminals are operators of role vendor attached
// to that vending point, authenticated by API keys (package auth); nothing
// here is a second credential system.
//
// # Purchases and retries
//
// The channel names every purchase with its own client purchase ID, which
// is the Idempotency-Key of vend.Purchase: a retry after a timeout returns
// the stored receipt byte for byte, never a second token set. The fee
// (ledger.FeeEntry: Dr float:<vendor>, Cr fees:<vendor>) is posted after the
// purchase under the entry ID "fee:<vendor>.<client purchase ID>", unique, so
// a retry or an advice that finds it missing posts it once and never twice.
//
// # Advices
//
// The channel must tell the head-end how each purchase ended at its side:
// a confirmation advice (the customer got the token) or a reversal advice
// (the customer was not served, for example the till failed after the vend).
// The first advice for a purchase decides and is stored with its answer;
// the same advice again gets the stored answer byte for byte, and the other
// kind is refused with 409 and the stored answer, so a channel that repeats
// advices until acknowledged is always safe.
//
// A reversal advice follows vend.Reverse's rule. When no credit can have
// reached the meter (an AMI voucher still waiting at the head-end) the
// purchase is reversed outright: the float gets the money and the fee back.
// A 20-digit STS token or a card voucher may already be in the meter, so a
// channel cannot undo it: the advice is recorded as "referred" and the
// purchase stays sold until a supervisor decides (POST /purchases/{id}/reverse
// with compensate, which turns the water's value into customer debt, or
// nothing). A channel thus can never take back credit on its own word.
package channel

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"sluice/auth"
	"sluice/ledger"
	"sluice/server"
	"sluice/store"
	"sluice/vend"
)

// Sentinel errors callers branch on.
var (
	ErrNotChannel     = errors.New("vending point is not a payment channel")
	ErrDisabled       = errors.New("payment channel disabled")
	ErrOverMax        = errors.New("amount above the channel's per-purchase maximum")
	ErrAdviceConflict = errors.New("purchase already has a different advice")
)

// Service runs the channel API over the vending service.
type Service struct {
	st       store.Store
	vend     *vend.Service
	now      func() time.Time
	currency string
}

// New returns a Service; now nil means time.Now, currency "" means ZAR.
func New(st store.Store, v *vend.Service, now func() time.Time, currency string) *Service {
	if now == nil {
		now = time.Now
	}
	if currency == "" {
		currency = "ZAR"
	}
	return &Service{st: st, vend: v, now: now, currency: currency}
}

// Settings configure a vending point as a channel.
type Settings struct {
	FeeFixedCents    int64 `json:"fee_fixed_cents"`
	FeeRateBP        int64 `json:"fee_rate_bp"`
	MaxPurchaseCents int64 `json:"max_purchase_cents"`
	Disabled         bool  `json:"disabled,omitempty"`
}

// Channel is a channel as the API shows it.
type Channel struct {
	Vendor string `json:"vendor"`
	Settings
}

// Fee is what a purchase paying paid cents costs the channel: the fixed
// part plus the rate, rounded half up.
func Fee(c store.Channel, paid int64) int64 {
	return c.FeeFixedCents + (paid*c.FeeRateBP+5000)/10000
}

func fieldErr(field, msg string) error {
	return &vend.FieldError{Field: field, Msg: msg}
}

// Configure makes a vending point a channel or changes its settings.
func (s *Service) Configure(ctx context.Context, by auth.Principal, vendor string, set Settings) (Channel, error) {
	switch {
	case set.FeeFixedCents < 0 || set.FeeFixedCents > 100000:
		return Channel{}, fieldErr("fee_fixed_cents", "must be 0 to 100000")
	case set.FeeRateBP < 0 || set.FeeRateBP > 1000:
		return Channel{}, fieldErr("fee_rate_bp", "must be 0 to 1000 (10%)")
	case set.MaxPurchaseCents <= 0 || set.MaxPurchaseCents > vend.MaxAmountCents:
		return Channel{}, fieldErr("max_purchase_cents", fmt.Sprintf("must be 1 to %d", vend.MaxAmountCents))
	}
	err := s.st.Tx(ctx, func(tx store.Tx) error {
		v, err := tx.Vendors().ByCode(ctx, vendor)
		if errors.Is(err, store.ErrNotFound) {
			return fieldErr("vendor", "no vending point "+strconv.Quote(vendor))
		}
		if err != nil {
			return err
		}
		now := s.now().UTC()
		if err := tx.Channels().Put(ctx, store.Channel{VendorID: v.ID, FeeFixedCents: set.FeeFixedCents, FeeRateBP: set.FeeRateBP,
			MaxPurchaseCents: set.MaxPurchaseCents, Disabled: set.Disabled, UpdatedAt: now}); err != nil {
			return err
		}
		details, _ := json.Marshal(set)
		return tx.Audit().Append(ctx, store.AuditRecord{At: now, Actor: by.Actor(), Action: "channel.configure", Object: "vendor/" + v.Code, Details: details})
	})
	return Channel{Vendor: vendor, Settings: set}, err
}

// List returns every channel.
func (s *Service) List(ctx context.Context) ([]Channel, error) {
	out := []Channel{}
	err := s.st.Read(ctx, func(tx store.Tx) error {
		cs, err := tx.Channels().List(ctx)
		for _, c := range cs {
			out = append(out, view(c))
		}
		return err
	})
	return out, err
}

func view(c store.Channel) Channel {
	return Channel{Vendor: c.VendorCode, Settings: Settings{FeeFixedCents: c.FeeFixedCents, FeeRateBP: c.FeeRateBP, MaxPurchaseCents: c.MaxPurchaseCents, Disabled: c.Disabled}}
}

// caller is the channel a principal sells for.
func (s *Service) caller(ctx context.Context, p auth.Principal) (store.Channel, vend.Actor, error) {
	o := p.Operator
	a := vend.Actor{OperatorID: o.ID, Username: o.Username, Role: o.Role, VendorID: o.VendorID}
	if o.VendorID == 0 {
		return store.Channel{}, a, vend.ErrNoVendor
	}
	var c store.Channel
	err := s.st.Read(ctx, func(tx store.Tx) error {
		var err error
		c, err = tx.Channels().Get(ctx, o.VendorID)
		return err
	})
	if errors.Is(err, store.ErrNotFound) {
		return c, a, ErrNotChannel
	}
	if err == nil && c.Disabled {
		err = ErrDisabled
	}
	return c, a, err
}

// TrialRequest asks what a purchase would give.
type TrialRequest struct {
	Meter       string `json:"meter"`
	AmountCents int64  `json:"amount_cents"`
}

// Trial is a trial vend's answer: the meter, the customer, the breakdown
// and the fee, with nothing issued.
type Trial struct {
	vend.Preview
	FeeCents int64 `json:"fee_cents"`
	// Refusal says why the purchase would be refused now (float, daily
	// limit), or is empty.
	Refusal string `json:"refusal,omitempty"`
}

// Trial looks the meter up and computes the breakdown without issuing.
func (s *Service) Trial(ctx context.Context, p auth.Principal, req TrialRequest) (Trial, error) {
	c, _, err := s.caller(ctx, p)
	if err != nil {
		return Trial{}, err
	}
	if req.AmountCents > c.MaxPurchaseCents {
		return Trial{}, fieldErr("amount_cents", fmt.Sprintf("%v: %d cents", ErrOverMax, c.MaxPurchaseCents))
	}
	pv, err := s.vend.Preview(ctx, vend.PurchaseRequest{Meter: req.Meter, AmountCents: req.AmountCents})
	if err != nil {
		return Trial{}, err
	}
	paid := int64(pv.Breakdown.Paid())
	t := Trial{Preview: pv, FeeCents: Fee(c, paid)}
	err = s.st.Read(ctx, func(tx store.Tx) error {
		v, err := tx.Vendors().ByID(ctx, c.VendorID)
		if err != nil {
			return err
		}
		sold, err := tx.Vendors().DaySales(ctx, v.ID, s.vend.Today())
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		switch {
		case v.FloatCents < paid+t.FeeCents:
			t.Refusal = "insufficient_float"
		case sold+paid > v.DailyLimitCents:
			t.Refusal = "daily_limit"
		}
		return nil
	})
	return t, err
}

// PurchaseRequest is a channel's purchase.
type PurchaseRequest struct {
	ClientPurchaseID string `json:"client_purchase_id"`
	Meter            string `json:"meter"`
	AmountCents      int64  `json:"amount_cents"`
}

// Result is a purchase's answer, the same on every retry.
type Result struct {
	ClientPurchaseID string `json:"client_purchase_id"`
	Replayed         bool   `json:"replayed"`
	FeeCents         int64  `json:"fee_cents"`
	// FeePending is set when the float could not cover the fee after the
	// sale; the confirmation advice posts it.
	FeePending bool            `json:"fee_pending,omitempty"`
	Receipt    json.RawMessage `json:"receipt"`
}

// Purchase sells water; a retry with the same client purchase ID and
// request returns the stored receipt.
func (s *Service) Purchase(ctx context.Context, p auth.Principal, req PurchaseRequest) (Result, error) {
	c, a, err := s.caller(ctx, p)
	if err != nil {
		return Result{}, err
	}
	if req.ClientPurchaseID == "" {
		return Result{}, fieldErr("client_purchase_id", "is required")
	}
	if req.AmountCents > c.MaxPurchaseCents {
		return Result{}, fieldErr("amount_cents", fmt.Sprintf("%v: %d cents", ErrOverMax, c.MaxPurchaseCents))
	}
	res, err := s.vend.Purchase(ctx, a, req.ClientPurchaseID, vend.PurchaseRequest{Meter: req.Meter, AmountCents: req.AmountCents})
	if err != nil {
		var fe *vend.FieldError
		if errors.As(err, &fe) && fe.Field == "Idempotency-Key" {
			fe.Field = "client_purchase_id"
		}
		return Result{}, err
	}
	out := Result{ClientPurchaseID: req.ClientPurchaseID, Replayed: res.Replayed, FeeCents: Fee(c, res.Receipt.Paid), Receipt: res.JSON}
	err = s.st.Tx(ctx, func(tx store.Tx) error { return s.postFee(ctx, tx, c, req.ClientPurchaseID, out.FeeCents) })
	switch {
	case errors.Is(err, store.ErrConflict):
		// A concurrent duplicate posted it.
	case errors.Is(err, store.ErrConstraint):
		// The float cannot cover the fee now: the sale stands, and a retry
		// or the confirmation advice posts the fee.
		out.FeePending = true
	case err != nil:
		return Result{}, fmt.Errorf("fee of purchase %s: %w", req.ClientPurchaseID, err)
	}
	return out, nil
}

func feeID(c store.Channel, clientID string) string { return c.VendorCode + "." + clientID }

// postFee posts the fee once: its entry ID is unique, so a second post
// finds it and does nothing.
func (s *Service) postFee(ctx context.Context, tx store.Tx, c store.Channel, clientID string, fee int64) error {
	if fee <= 0 {
		return nil
	}
	id := feeID(c, clientID)
	if _, err := tx.Ledger().ByID(ctx, "fee:"+id); err == nil {
		return nil
	} else if !errors.Is(err, store.ErrNotFound) {
		return err
	}
	now := s.now().UTC()
	e, err := ledger.FeeEntry(ledger.Fee{ID: id, Vendor: c.VendorCode, Channel: c.VendorCode, Currency: s.currency, Amount: fee, Time: now})
	if err != nil {
		return fmt.Errorf("%w: %v", vend.ErrInvalid, err)
	}
	if _, err := tx.Ledger().Append(ctx, storeEntry(e)); err != nil {
		return err
	}
	if _, err := tx.Vendors().AdjustFloat(ctx, c.VendorID, -fee); err != nil {
		return err
	}
	details, _ := json.Marshal(map[string]any{"client_purchase_id": clientID, "fee_cents": fee})
	return tx.Audit().Append(ctx, store.AuditRecord{At: now, Actor: "system", Action: "channel.fee", Object: "vendor/" + c.VendorCode, Details: details})
}

func storeEntry(e ledger.Entry) store.LedgerEntry {
	se := store.LedgerEntry{ID: e.ID, Type: string(e.Type), Purchase: e.Purchase, Reverses: e.Reverses, Time: e.Time, Tokens: []byte("[]")}
	for _, p := range e.Postings {
		se.Postings = append(se.Postings, store.Posting{Account: p.Account.String(), Unit: p.Unit, Amount: p.Amount})
	}
	return se
}

// LastResponse is what the head-end answered for a client purchase ID.
type LastResponse struct {
	ClientPurchaseID string          `json:"client_purchase_id"`
	State            string          `json:"state"`
	Receipt          json.RawMessage `json:"receipt"`
	Advice           json.RawMessage `json:"advice,omitempty"`
}

// Lookup returns the answer for a client purchase ID: the receipt with its
// tokens, as it stands now, and the stored advice answer. Handing out the
// tokens again is a reprint, so it goes through vend.Receipt and is audited
// (vend.reprint) like one.
func (s *Service) Lookup(ctx context.Context, p auth.Principal, clientID string) (LastResponse, error) {
	c, a, err := s.caller(ctx, p)
	if err != nil {
		return LastResponse{}, err
	}
	var pu store.Purchase
	var advice json.RawMessage
	err = s.st.Read(ctx, func(tx store.Tx) error {
		if pu, err = tx.Purchases().ByKey(ctx, c.VendorID, clientID); err != nil {
			return fmt.Errorf("purchase %s: %w", clientID, err)
		}
		if ad, err := tx.Channels().Advice(ctx, c.VendorID, clientID); err == nil {
			advice = ad.Response
		} else if !errors.Is(err, store.ErrNotFound) {
			return err
		}
		return nil
	})
	if err != nil {
		return LastResponse{}, err
	}
	r, js, err := s.vend.Receipt(ctx, a, pu.ID, true)
	if err != nil {
		return LastResponse{}, err
	}
	return LastResponse{ClientPurchaseID: clientID, State: r.State, Receipt: js, Advice: advice}, nil
}

// AdviceRequest carries a reversal advice's reason.
type AdviceRequest struct {
	Reason string `json:"reason,omitempty"`
}

// Answer is the head-end's answer to an advice, stored and repeated.
type Answer struct {
	ClientPurchaseID string    `json:"client_purchase_id"`
	PurchaseID       int64     `json:"purchase_id"`
	Reference        string    `json:"reference"`
	Advice           string    `json:"advice"`  // confirmation or reversal
	Outcome          string    `json:"outcome"` // confirmed, reversed or referred
	Message          string    `json:"message"`
	RefundedCents    int64     `json:"refunded_cents,omitempty"`
	At               time.Time `json:"at"`
}

// AdviceResult is an answer and whether it is a repeat.
type AdviceResult struct {
	JSON     json.RawMessage
	Repeated bool
}

// Advise records a confirmation or reversal advice (kind
// store.AdviceConfirmation or store.AdviceReversal) and answers it; see the
// package comment for the rules.
func (s *Service) Advise(ctx context.Context, p auth.Principal, clientID, kind string, req AdviceRequest) (AdviceResult, error) {
	c, a, err := s.caller(ctx, p)
	if err != nil {
		return AdviceResult{}, err
	}
	if kind == store.AdviceReversal && (len(req.Reason) < 3 || len(req.Reason) > 200) {
		return AdviceResult{}, fieldErr("reason", "must be 3 to 200 characters")
	}
	if r, ok, err := s.storedAdvice(ctx, c, clientID, kind); ok || err != nil {
		return r, err
	}
	var pu store.Purchase
	if err := s.st.Read(ctx, func(tx store.Tx) error {
		var err error
		pu, err = tx.Purchases().ByKey(ctx, c.VendorID, clientID)
		return err
	}); err != nil {
		return AdviceResult{}, fmt.Errorf("purchase %s: %w", clientID, err)
	}
	ans := Answer{ClientPurchaseID: clientID, PurchaseID: pu.ID, Reference: vend.Reference(pu.ID), Advice: kind, At: s.now().UTC()}
	switch kind {
	case store.AdviceConfirmation:
		ans.Outcome, ans.Message = store.AdviceConfirmed, "purchase confirmed"
	case store.AdviceReversal:
		rv, err := s.vend.Reverse(ctx, a, pu.ID, vend.ReversalRequest{Reason: "channel reversal advice: " + req.Reason})
		switch {
		case err == nil:
			ans.Outcome, ans.RefundedCents = store.AdviceReversed, rv.Refunded
			ans.Message = "purchase reversed: no credit had reached the meter"
		case errors.Is(err, vend.ErrNotReversible), errors.Is(err, store.ErrConflict):
			// Reversed already (a concurrent repeat of this advice, or a
			// supervisor; racing, the loser meets the unique reversal entry
			// ID), or credit may be in the meter.
			var now store.Purchase
			if err := s.st.Read(ctx, func(tx store.Tx) error {
				var err error
				now, err = tx.Purchases().ByID(ctx, pu.ID)
				return err
			}); err != nil {
				return AdviceResult{}, err
			}
			if now.State == store.PurchaseReversed {
				ans.Outcome, ans.RefundedCents = store.AdviceReversed, pu.PaidCents
				ans.Message = "purchase reversed"
			} else {
				ans.Outcome = store.AdviceReferred
				ans.Message = "credit may have reached the meter: the purchase stands until a supervisor decides"
			}
		default:
			return AdviceResult{}, err
		}
	}
	js, _ := json.Marshal(ans)
	err = s.st.Tx(ctx, func(tx store.Tx) error {
		fee := int64(0)
		if ans.Outcome != store.AdviceReversed {
			var rc struct {
				Paid int64 `json:"paid_cents"`
			}
			_ = json.Unmarshal(pu.Response, &rc)
			fee = Fee(c, rc.Paid)
			if err := s.postFee(ctx, tx, c, clientID, fee); err != nil {
				return err
			}
		} else if err := s.refundFee(ctx, tx, c, clientID); err != nil {
			return err
		}
		if _, err := tx.Channels().CreateAdvice(ctx, store.ChannelAdvice{VendorID: c.VendorID, ClientPurchaseID: clientID, PurchaseID: pu.ID,
			Kind: kind, Outcome: ans.Outcome, Reason: req.Reason, Response: js, CreatedAt: ans.At}); err != nil {
			return err
		}
		details, _ := json.Marshal(map[string]any{"client_purchase_id": clientID, "advice": kind, "outcome": ans.Outcome, "reason": req.Reason})
		return tx.Audit().Append(ctx, store.AuditRecord{At: ans.At, Actor: p.Actor(), Action: "channel.advice", Object: "purchase/" + strconv.FormatInt(pu.ID, 10), Details: details})
	})
	if errors.Is(err, store.ErrConflict) {
		// A concurrent duplicate stored its answer (and posted or refunded
		// the fee) first.
		if r, ok, err := s.storedAdvice(ctx, c, clientID, kind); ok || err != nil {
			return r, err
		}
	}
	if err != nil {
		return AdviceResult{}, err
	}
	return AdviceResult{JSON: js}, nil
}

// storedAdvice answers a repeated advice from the store.
func (s *Service) storedAdvice(ctx context.Context, c store.Channel, clientID, kind string) (AdviceResult, bool, error) {
	var ad store.ChannelAdvice
	err := s.st.Read(ctx, func(tx store.Tx) error {
		var err error
		ad, err = tx.Channels().Advice(ctx, c.VendorID, clientID)
		return err
	})
	if errors.Is(err, store.ErrNotFound) {
		return AdviceResult{}, false, nil
	}
	if err != nil {
		return AdviceResult{}, false, err
	}
	if ad.Kind != kind {
		return AdviceResult{JSON: ad.Response, Repeated: true}, true, &conflict{stored: ad.Response}
	}
	return AdviceResult{JSON: ad.Response, Repeated: true}, true, nil
}

// conflict is ErrAdviceConflict with the stored answer.
type conflict struct{ stored json.RawMessage }

func (c *conflict) Error() string {
	return ErrAdviceConflict.Error() + ": " + string(c.stored)
}
func (c *conflict) Unwrap() error { return ErrAdviceConflict }

// refundFee reverses a posted fee, once.
func (s *Service) refundFee(ctx context.Context, tx store.Tx, c store.Channel, clientID string) error {
	se, err := tx.Ledger().ByID(ctx, "fee:"+feeID(c, clientID))
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	// Checked first: a unique violation would abort a PostgreSQL
	// transaction, so a refund done already must not be tried again.
	if _, err := tx.Ledger().ByID(ctx, "reversal:fee-"+feeID(c, clientID)); err == nil {
		return nil
	} else if !errors.Is(err, store.ErrNotFound) {
		return err
	}
	orig, err := vend.LedgerEntry(se)
	if err != nil {
		return err
	}
	rev, err := ledger.Reverse(orig, "fee-"+feeID(c, clientID), s.now().UTC())
	if err != nil {
		return err
	}
	if _, err := tx.Ledger().Append(ctx, storeEntry(rev)); err != nil {
		return err
	}
	var fee int64
	for _, p := range orig.Postings {
		if p.Account.Kind == ledger.Float {
			fee = p.Amount
		}
	}
	_, err = tx.Vendors().AdjustFloat(ctx, c.VendorID, fee)
	return err
}

// Referred lists reversal advices a supervisor has to decide, oldest first.
func (s *Service) Referred(ctx context.Context, after int64, limit int) ([]json.RawMessage, error) {
	out := []json.RawMessage{}
	err := s.st.Read(ctx, func(tx store.Tx) error {
		ads, err := tx.Channels().Advices(ctx, store.AdviceReferred, after, limit)
		for _, ad := range ads {
			out = append(out, ad.Response)
		}
		return err
	})
	return out, err
}

// httpErr maps the package's errors for the API.
func httpErr(err error) error {
	var c *conflict
	switch {
	case errors.As(err, &c):
		return server.Error(http.StatusConflict, "advice_conflict", "", c.Error())
	case errors.Is(err, ErrNotChannel), errors.Is(err, ErrDisabled):
		return server.Error(http.StatusForbidden, "not_a_channel", "", err.Error())
	case errors.Is(err, store.ErrConstraint):
		// The only constraint an advice can meet: the float below the fee.
		return server.Error(http.StatusConflict, "insufficient_float", "", "the float cannot cover the channel fee; deposit, then repeat the advice")
	}
	return err
}
