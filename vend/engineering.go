package vend

// Dual control for engineering.
//
// An engineering token can do what money cannot buy: clear a tamper flag
// that reports theft, clear a meter's credit, change its calibration or
// move it to another key. So no single operator can make one. An engineer
// files a request bound to one meter and one action; a different operator,
// a supervisor or an admin, approves or rejects it. The tokens (or signed
// vouchers) are made only in the approving transaction, under the same
// per-meter counters and uniqueness constraints as a purchase ((meter, TID),
// (meter, voucher sequence), and (request, ordinal) since migration 0004),
// so an approval that is retried or raced issues one set or none.
//
// "A different operator" is checked twice: here, where it becomes
// ErrForbidden (403) with a reason, and by the database, whose CHECK
// (decided_by <> requested_by) refuses the write even from code that
// forgets the first check. Every request, approval, rejection and issue is
// audited in the transaction that makes it.
//
// Engineering vouchers are signed by the management key (keys.VoucherSigner
// picks it for engineering kinds): a meter accepts them only under a key it
// trusts for the management role, so the credit key of a stolen vending
// point cannot clear a tamper flag. They expire after ValidHours (24 by
// default, at most 30 days), shorter than credit, because an engineering
// voucher in an engineer's pocket is a standing permission.

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"sluice/store"
	"sluice/sts"
	"sluice/voucher"
)

// Engineering actions.
const (
	// STS management tokens (class 2), TID-bearing.
	ActClearTamper      = "clear_tamper"           // STS subclass 5; vouchers: KindClearTamper with Value as the mask
	ActClearCredit      = "clear_credit"           // STS subclass 1 (Value: the register, 0 = all)
	ActWaterMeterFactor = "set_water_meter_factor" // STS subclass 7
	ActMaxPowerLimit    = "set_max_power_limit"    // STS subclass 0
	ActPhaseUnbalance   = "set_phase_unbalance"    // STS subclass 6
	// ActKeyChange moves an STS meter to its supply group's current key
	// revision, tariff index and base date without a purchase; for card and
	// AMI meters it is a KindKeyChange voucher trusting PublicKey for Role
	// (and retiring key Retire).
	ActKeyChange = "key_change"
	// ActSetParameter is a KindSetParameter voucher (card and AMI meters).
	ActSetParameter = "set_parameter"
)

// Roles allowed to decide engineering requests (package auth's names).
const (
	roleEngineer   = "engineer"
	roleSupervisor = "supervisor"
	roleAdmin      = "admin"
)

// Limits of engineering requests.
const (
	// RequestTTL is how long a request waits for a decision; an older one
	// can only be rejected, so a forgotten request cannot be approved
	// months later out of context.
	RequestTTL = 72 * time.Hour
	// DefaultVoucherHours and MaxVoucherHours bound an engineering
	// voucher's validity.
	DefaultVoucherHours = 24
	MaxVoucherHours     = 30 * 24
	maxReason           = 500
)

// stsManagement maps actions to STS management subclasses.
var stsManagement = map[string]uint8{
	ActClearTamper:      sts.SubClearTamper,
	ActClearCredit:      sts.SubClearCredit,
	ActWaterMeterFactor: sts.SubSetWaterMeterFactor,
	ActMaxPowerLimit:    sts.SubSetMaxPowerLimit,
	ActPhaseUnbalance:   sts.SubSetPhaseUnbalance,
}

// EngineeringRequest is what an engineer asks for.
type EngineeringRequest struct {
	Meter  string `json:"meter"`
	Action string `json:"action"`
	EngineeringParams
	Reason string `json:"reason"`
}

// EngineeringParams are an action's parameters: what the request table
// keeps of a request besides meter, action and reason, and what the API
// shows of it again.
type EngineeringParams struct {
	// Value is the STS management token's 16-bit value, the voucher tamper
	// mask (0 means all flags) or the parameter value.
	Value uint32 `json:"value,omitempty"`
	// Param is the meter parameter of set_parameter.
	Param uint16 `json:"param,omitempty"`
	// Role ("credit" or "management"), PublicKey (32-byte Ed25519, base64)
	// and Retire (key ID to stop trusting, 0 for none) are a key-change
	// voucher's.
	Role      string `json:"role,omitempty"`
	PublicKey []byte `json:"public_key,omitempty"`
	Retire    uint32 `json:"retire,omitempty"`
	// ValidHours is an engineering voucher's validity (default 24).
	ValidHours int `json:"valid_hours,omitempty"`
}

// EngineeringView is a request as the API shows it, with its tokens once
// issued.
type EngineeringView struct {
	ID        int64  `json:"id"`
	Meter     string `json:"meter"`
	MeterKind string `json:"meter_kind"`
	Action    string `json:"action"`
	EngineeringParams
	Reason      string        `json:"reason"`
	State       string        `json:"state"`
	RequestedBy string        `json:"requested_by"`
	RequestedAt time.Time     `json:"requested_at"`
	DecidedBy   string        `json:"decided_by,omitempty"`
	DecidedAt   *time.Time    `json:"decided_at,omitempty"`
	Tokens      []IssuedToken `json:"tokens,omitempty"`
}

// checkFor validates a request against the meter it names.
func (r *EngineeringRequest) checkFor(m store.Meter) error {
	if r.Reason = strings.TrimSpace(r.Reason); r.Reason == "" {
		return fieldErr("reason", "is required: say why the meter needs it")
	}
	if len(r.Reason) > maxReason {
		return fieldErr("reason", "must be at most %d characters", maxReason)
	}
	if m.Status == "removed" {
		return fmt.Errorf("meter %s: %w", m.Number, ErrMeterBlocked)
	}
	sub, isMgmt := stsManagement[r.Action]
	if m.Kind == store.MeterSTS {
		switch {
		case isMgmt:
			if r.Value > 0xffff {
				return fieldErr("value", "must fit the 16-bit STS field (0 to 65535)")
			}
			if sub == sts.SubClearTamper && r.Value != 0 {
				return fieldErr("value", "must be 0 for clear_tamper on an STS meter")
			}
		case r.Action == ActKeyChange:
			if r.Value != 0 {
				return fieldErr("value", "key_change takes no value: it moves the meter to its supply group's key")
			}
		default:
			return fieldErr("action", "%q is not an engineering action for STS meters (clear_tamper, clear_credit, set_water_meter_factor, set_max_power_limit, set_phase_unbalance, key_change)", r.Action)
		}
		if r.Role != "" || r.PublicKey != nil || r.Retire != 0 || r.Param != 0 || r.ValidHours != 0 {
			return fieldErr("action", "STS tokens take only value")
		}
		return nil
	}
	if id, err := strconv.ParseUint(m.Number, 10, 64); err != nil || id == 0 {
		return fieldErr("meter", "voucher meters need a numeric serial")
	}
	switch r.Action {
	case ActClearTamper:
		if r.Value == 0 {
			r.Value = 0xffffffff
		}
	case ActSetParameter:
		if r.Param == 0 {
			return fieldErr("param", "is required for set_parameter")
		}
	case ActKeyChange:
		if r.Role != voucher.RoleCredit.String() && r.Role != voucher.RoleManagement.String() {
			return fieldErr("role", "must be credit or management")
		}
		if len(r.PublicKey) != ed25519.PublicKeySize {
			return fieldErr("public_key", "must be a %d-byte Ed25519 public key", ed25519.PublicKeySize)
		}
		if r.Retire == voucher.KeyID(r.PublicKey) {
			return fieldErr("retire", "retires the key being trusted")
		}
	default:
		return fieldErr("action", "%q is not an engineering action for %s meters (clear_tamper, set_parameter, key_change)", r.Action, m.Kind)
	}
	if r.ValidHours == 0 {
		r.ValidHours = DefaultVoucherHours
	}
	if r.ValidHours < 1 || r.ValidHours > MaxVoucherHours {
		return fieldErr("valid_hours", "must be 1 to %d", MaxVoucherHours)
	}
	return nil
}

// RequestEngineering files an engineering request for a second operator to
// decide. Only engineers file requests.
func (s *Service) RequestEngineering(ctx context.Context, a Actor, req EngineeringRequest) (EngineeringView, error) {
	if a.Role != roleEngineer {
		return EngineeringView{}, fmt.Errorf("%w: only engineers request engineering tokens", ErrForbidden)
	}
	if req.Meter == "" {
		return EngineeringView{}, fieldErr("meter", "is required")
	}
	var out EngineeringView
	err := s.cfg.Store.Tx(ctx, func(tx store.Tx) error {
		m, err := tx.Meters().ByNumber(ctx, req.Meter)
		if errors.Is(err, store.ErrNotFound) {
			return fieldErr("meter", "no meter %s", req.Meter)
		}
		if err != nil {
			return err
		}
		r := req
		if err := r.checkFor(m); err != nil {
			return err
		}
		params, err := json.Marshal(r.EngineeringParams)
		if err != nil {
			return err
		}
		row, err := tx.EngineeringRequests().Create(ctx, store.EngineeringRequest{MeterID: m.ID, Action: r.Action, Params: params, Reason: r.Reason, RequestedBy: a.OperatorID})
		if err != nil {
			return err
		}
		if err := store.AppendAudit(ctx, tx, s.now(), a.String(), "engineering.request", fmt.Sprintf("engineering-request:%d", row.ID),
			map[string]any{"meter": m.Number, "action": r.Action, "params": json.RawMessage(params), "reason": r.Reason}); err != nil {
			return err
		}
		out, err = s.engView(ctx, tx, row)
		return err
	})
	return out, err
}

// mayDecide is the service's half of dual control.
func mayDecide(a Actor, r store.EngineeringRequest) error {
	if a.Role != roleSupervisor && a.Role != roleAdmin {
		return fmt.Errorf("%w: only a supervisor or an admin decides engineering requests", ErrForbidden)
	}
	if a.OperatorID == r.RequestedBy {
		return fmt.Errorf("%w: dual control: the operator who requested engineering request %d cannot decide it", ErrForbidden, r.ID)
	}
	return nil
}

// ErrRequestClosed reports a decision on a request that is no longer
// pending (decided already, or expired); it wraps store.ErrConflict (409).
var ErrRequestClosed = fmt.Errorf("engineering request is not pending: %w", store.ErrConflict)

// ApproveEngineering approves a pending request and issues its tokens or
// vouchers in the same transaction.
func (s *Service) ApproveEngineering(ctx context.Context, a Actor, id int64) (EngineeringView, error) {
	var out EngineeringView
	err := s.cfg.Store.Tx(ctx, func(tx store.Tx) error {
		now := s.now()
		r, err := pendingFor(ctx, tx, a, id)
		if err != nil {
			return err
		}
		if now.Sub(r.RequestedAt) > RequestTTL {
			return fmt.Errorf("request %d was filed %s ago (limit %s); reject it and file a new one: %w", id, now.Sub(r.RequestedAt).Round(time.Minute), RequestTTL, ErrRequestClosed)
		}
		if err := tx.EngineeringRequests().Decide(ctx, id, store.RequestIssued, a.OperatorID, now); err != nil {
			return err
		}
		m, err := tx.Meters().ForUpdate(ctx, r.MeterID)
		if err != nil {
			return err
		}
		var p EngineeringParams
		if err := json.Unmarshal(r.Params, &p); err != nil {
			return fmt.Errorf("engineering request %d params: %w", id, err)
		}
		req := EngineeringRequest{Meter: m.Number, Action: r.Action, EngineeringParams: p, Reason: r.Reason}
		// The meter may have changed since the request (kind, status).
		if err := req.checkFor(m); err != nil {
			return err
		}
		iss, err := s.issuer(ctx, tx, m, now)
		if err != nil {
			return err
		}
		if err := iss.engineering(ctx, req); err != nil {
			return err
		}
		if err := iss.commitRequest(ctx, id); err != nil {
			return err
		}
		obj := fmt.Sprintf("engineering-request:%d", id)
		if err := store.AppendAudit(ctx, tx, now, a.String(), "engineering.approve", obj, map[string]any{"meter": m.Number, "action": r.Action}); err != nil {
			return err
		}
		if err := store.AppendAudit(ctx, tx, now, a.String(), "engineering.issue", obj, map[string]any{"meter": m.Number, "tokens": auditTokens(iss.rows)}); err != nil {
			return err
		}
		r.State, r.DecidedBy, r.DecidedAt = store.RequestIssued, a.OperatorID, now
		out, err = s.engView(ctx, tx, r)
		return err
	})
	return out, err
}

// pendingFor reads request id for a to decide: a must be allowed to
// (mayDecide) and the request still pending.
func pendingFor(ctx context.Context, tx store.Tx, a Actor, id int64) (store.EngineeringRequest, error) {
	r, err := tx.EngineeringRequests().ByID(ctx, id)
	if err != nil {
		return store.EngineeringRequest{}, err
	}
	if err := mayDecide(a, r); err != nil {
		return store.EngineeringRequest{}, err
	}
	if r.State != store.RequestPending {
		return store.EngineeringRequest{}, fmt.Errorf("request %d is %s: %w", id, r.State, ErrRequestClosed)
	}
	return r, nil
}

// RejectEngineering closes a pending request without issuing anything.
func (s *Service) RejectEngineering(ctx context.Context, a Actor, id int64, reason string) (EngineeringView, error) {
	var out EngineeringView
	err := s.cfg.Store.Tx(ctx, func(tx store.Tx) error {
		now := s.now()
		r, err := pendingFor(ctx, tx, a, id)
		if err != nil {
			return err
		}
		if err := tx.EngineeringRequests().Decide(ctx, id, store.RequestRejected, a.OperatorID, now); err != nil {
			return err
		}
		if err := store.AppendAudit(ctx, tx, now, a.String(), "engineering.reject", fmt.Sprintf("engineering-request:%d", id),
			map[string]any{"reason": strings.TrimSpace(reason)}); err != nil {
			return err
		}
		r.State, r.DecidedBy, r.DecidedAt = store.RequestRejected, a.OperatorID, now
		out, err = s.engView(ctx, tx, r)
		return err
	})
	return out, err
}

// EngineeringRequests lists requests, newest first, in one state or all
// (""). Engineers see only their own; supervisors, admins and auditors see
// every request.
func (s *Service) EngineeringRequests(ctx context.Context, a Actor, state string, limit int) ([]EngineeringView, error) {
	switch state {
	case "", store.RequestPending, store.RequestIssued, store.RequestRejected:
	default:
		return nil, fieldErr("state", "must be pending, issued or rejected")
	}
	if limit <= 0 || limit > 500 {
		limit = 100
	}
	var out []EngineeringView
	err := s.cfg.Store.Read(ctx, func(tx store.Tx) error {
		// An engineer's own requests are filtered from a wider window.
		fetch := limit
		if a.Role == roleEngineer {
			fetch = 10 * limit
		}
		rows, err := tx.EngineeringRequests().List(ctx, state, fetch)
		if err != nil {
			return err
		}
		out = out[:0]
		for _, r := range rows {
			if a.Role == roleEngineer && r.RequestedBy != a.OperatorID {
				continue
			}
			v, err := s.engView(ctx, tx, r)
			if err != nil {
				return err
			}
			out = append(out, v)
			if len(out) == limit {
				break
			}
		}
		return nil
	})
	return out, err
}

// EngineeringRequestByID returns one request; an engineer only their own.
func (s *Service) EngineeringRequestByID(ctx context.Context, a Actor, id int64) (EngineeringView, error) {
	var out EngineeringView
	err := s.cfg.Store.Read(ctx, func(tx store.Tx) error {
		r, err := tx.EngineeringRequests().ByID(ctx, id)
		if err != nil {
			return err
		}
		if a.Role == roleEngineer && r.RequestedBy != a.OperatorID {
			// Not found rather than forbidden: IDs of others' requests
			// are not the engineer's business.
			return fmt.Errorf("engineering request %d: %w", id, ErrNotFound)
		}
		out, err = s.engView(ctx, tx, r)
		return err
	})
	return out, err
}

func (s *Service) engView(ctx context.Context, tx store.Tx, r store.EngineeringRequest) (EngineeringView, error) {
	m, err := tx.Meters().ByID(ctx, r.MeterID)
	if err != nil {
		return EngineeringView{}, err
	}
	var p EngineeringParams
	if err := json.Unmarshal(r.Params, &p); err != nil {
		return EngineeringView{}, fmt.Errorf("engineering request %d params: %w", r.ID, err)
	}
	v := EngineeringView{ID: r.ID, Meter: m.Number, MeterKind: m.Kind, Action: r.Action, EngineeringParams: p, Reason: r.Reason,
		State: r.State, RequestedAt: r.RequestedAt}
	if v.RequestedBy, err = operatorName(ctx, tx, r.RequestedBy); err != nil {
		return EngineeringView{}, err
	}
	if r.DecidedBy != 0 {
		if v.DecidedBy, err = operatorName(ctx, tx, r.DecidedBy); err != nil {
			return EngineeringView{}, err
		}
		at := r.DecidedAt
		v.DecidedAt = &at
	}
	if r.State == store.RequestIssued {
		toks, err := tx.Campaigns().RequestTokens(ctx, r.ID)
		if err != nil {
			return EngineeringView{}, err
		}
		for _, t := range toks {
			v.Tokens = append(v.Tokens, issuedFromRow(t, len(toks)))
		}
	}
	return v, nil
}

func operatorName(ctx context.Context, tx store.Tx, id int64) (string, error) {
	o, err := tx.Operators().ByID(ctx, id)
	if err != nil {
		return "", fmt.Errorf("operator %d: %w", id, err)
	}
	return o.Username, nil
}

// issuedFromRow is a stored engineering token as the API shows it.
func issuedFromRow(t store.Token, of int) IssuedToken {
	it := IssuedToken{Kind: t.Kind, Token: t.Digits, Voucher: t.Voucher, TID: uint32(t.TID), Sequence: uint32(t.VoucherSeq)}
	switch {
	case t.Kind == store.TokenKeyChange && t.Digits != "":
		it.Label = fmt.Sprintf("Key change %d of %d", t.Ordinal+1, of)
	case t.Kind == store.TokenKeyChange:
		it.Label = "Key change voucher"
	default:
		it.Label = "Engineering"
	}
	return it
}

// auditTokens describes issued tokens for the audit log by counter, not by
// digits: the log proves what was issued without being a token store.
func auditTokens(rows []store.Token) []map[string]any {
	out := make([]map[string]any, 0, len(rows))
	for _, r := range rows {
		t := map[string]any{"kind": r.Kind, "ordinal": r.Ordinal}
		if r.Digits != "" {
			t["class"], t["subclass"] = r.Class, r.Subclass
		}
		if r.TID != 0 {
			t["tid"] = r.TID
		}
		if r.VoucherSeq != 0 {
			t["voucher_seq"] = r.VoucherSeq
		}
		out = append(out, t)
	}
	return out
}

// engineering issues one approved request's tokens or voucher.
func (iss *issuer) engineering(ctx context.Context, r EngineeringRequest) error {
	if iss.m.Kind == store.MeterSTS {
		if r.Action == ActKeyChange {
			if err := iss.keyChangeIfDue(ctx); err != nil {
				return err
			}
			if len(iss.rows) == 0 {
				return fieldErr("action", "meter %s is on its supply group's key already: no key change is due", iss.m.Number)
			}
			return nil
		}
		// As with a purchase, a key change that is due goes first: the
		// management token is then made under the key the meter will hold
		// (and a meter still counting TIDs from 1993 gets any token at all).
		if err := iss.keyChangeIfDue(ctx); err != nil {
			return err
		}
		return iss.management(stsManagement[r.Action], uint16(r.Value), "Engineering: "+r.Action)
	}
	v := &voucher.Voucher{}
	kind := store.TokenEngineering
	switch r.Action {
	case ActClearTamper:
		v.Kind, v.TamperMask = voucher.KindClearTamper, r.Value
	case ActSetParameter:
		v.Kind, v.Param, v.Value = voucher.KindSetParameter, r.Param, r.Value
	case ActKeyChange:
		v.Kind, v.NewKey, v.Retire, kind = voucher.KindKeyChange, ed25519.PublicKey(r.PublicKey), r.Retire, store.TokenKeyChange
		v.Slot = voucher.RoleCredit
		if r.Role == voucher.RoleManagement.String() {
			v.Slot = voucher.RoleManagement
		}
	}
	return iss.engineeringVoucher(ctx, kind, "Engineering: "+r.Action, v, time.Duration(r.ValidHours)*time.Hour)
}

// engineeringVoucher signs an engineering voucher (the management key, by
// its kind) with the meter's next sequence number and a short validity.
func (iss *issuer) engineeringVoucher(ctx context.Context, kind, label string, v *voucher.Voucher, ttl time.Duration) error {
	id, err := strconv.ParseUint(iss.m.Number, 10, 64)
	if err != nil || id == 0 {
		return fmt.Errorf("meter %s: voucher meters need a numeric serial: %w", iss.m.Number, ErrInvalid)
	}
	iss.m.VoucherSeq++
	v.MeterID, v.Sequence = id, uint32(iss.m.VoucherSeq)
	v.Issued, v.Expires = iss.now, iss.now.Add(ttl)
	b, err := iss.s.cfg.Keys.SignVoucher(ctx, v)
	if err != nil {
		return fmt.Errorf("sign engineering voucher for meter %s: %w", iss.m.Number, err)
	}
	iss.add(store.Token{Kind: kind, Voucher: b, VoucherSeq: iss.m.VoucherSeq},
		IssuedToken{Kind: kind, Label: label, Voucher: b, Sequence: v.Sequence})
	return nil
}
