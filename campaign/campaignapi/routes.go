// Package campaignapi is the HTTP face of key-rotation campaigns (package
// campaign): admins start and cancel campaigns; admins, supervisors,
// auditors and engineers follow progress, per-meter state and reports;
// field roles read a meter's tokens and mark them delivered. Runs happen in
// `sluice keys campaign run`, which holds the key manager for the whole run.
package campaignapi

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"

	"sluice/auth"
	"sluice/campaign"
	"sluice/server"
	"sluice/store"
)

// StartBody is the API's campaign start.
type StartBody struct {
	Name        string   `json:"name"`
	Kind        string   `json:"kind"`
	Meters      []string `json:"meters,omitempty"`
	SupplyGroup string   `json:"supply_group,omitempty"`
	// KRN 0 keeps the group's revision; TI null keeps its tariff index;
	// BaseDate 0 keeps its base date (2014 for the TID rollover).
	KRN        int    `json:"krn,omitempty"`
	TI         *int   `json:"ti,omitempty"`
	BaseDate   int    `json:"base_date,omitempty"`
	Role       string `json:"role,omitempty"`
	New        int    `json:"new_version,omitempty"`
	Old        int    `json:"old_version,omitempty"`
	Signer     int    `json:"signer_version,omitempty"`
	KeepOld    bool   `json:"keep_old,omitempty"`
	ValidDays  int    `json:"valid_days,omitempty"`
	KeyVersion int    `json:"key_version,omitempty"`
}

// Spec converts the body.
func (b StartBody) Spec() campaign.Spec {
	s := campaign.Spec{Name: b.Name, Kind: b.Kind, Meters: b.Meters, SupplyGroup: b.SupplyGroup, KRN: b.KRN, TI: -1, BaseDate: b.BaseDate,
		Role: b.Role, New: b.New, Old: b.Old, Signer: b.Signer, KeepOld: b.KeepOld, ValidDays: b.ValidDays, KeyVersion: b.KeyVersion}
	if b.TI != nil {
		s.TI = *b.TI
	}
	return s
}

// StartResult answers a start.
type StartResult struct {
	Status   campaign.Status `json:"status"`
	Enrolled int             `json:"enrolled"`
}

// MeterPage is a page of a campaign's meters; Next is the cursor of the
// following page (0: none).
type MeterPage struct {
	Meters []campaign.MeterState `json:"meters"`
	Next   int64                 `json:"next,omitempty"`
}

// IssuedItem is one token or voucher a campaign issued to a meter.
type IssuedItem struct {
	Ordinal  int    `json:"ordinal"`
	Kind     string `json:"kind"`
	Token    string `json:"token,omitempty"`
	Voucher  []byte `json:"voucher,omitempty"`
	Sequence int64  `json:"sequence,omitempty"`
}

// MeterDetail is one meter's campaign state and what it was issued, in the
// order the meter takes it.
type MeterDetail struct {
	campaign.MeterState
	Issued []IssuedItem `json:"issued"`
}

// Routes returns the campaign routes for server.Config.Extra. Campaigns
// are started and run from the CLI (`sluice keys campaign`), which holds
// the key manager for the whole run; the API starts them too (admins), and
// shows progress, per-meter state and reports, and takes delivery marks.
func Routes(s *campaign.Service) []server.Route {
	readers := []string{auth.Admin, auth.Supervisor, auth.Auditor, auth.Engineer}
	field := []string{auth.Admin, auth.Supervisor, auth.Engineer}
	return []server.Route{
		{Method: "POST", Path: "/campaigns", Roles: []string{auth.Admin}, Tag: "campaigns", Status: http.StatusCreated,
			Summary: "Propose a key-rotation campaign and enrol its meters; a second operator approves it, then sluice keys campaign run issues",
			Request: StartBody{}, Response: StartResult{},
			Handler: func(ctx context.Context, r *http.Request, p auth.Principal) (any, error) {
				var b StartBody
				if err := server.DecodeJSON(r, &b); err != nil {
					return nil, err
				}
				c, n, err := s.Start(ctx, p.Actor(), b.Spec())
				if err != nil {
					return nil, apiErr(err)
				}
				st, err := s.Status(ctx, c.ID)
				return StartResult{Status: st, Enrolled: n}, apiErr(err)
			}},
		{Method: "GET", Path: "/campaigns", Roles: readers, Tag: "campaigns", Summary: "List campaigns, newest first, with progress",
			Response: []campaign.Status{},
			Handler: func(ctx context.Context, r *http.Request, p auth.Principal) (any, error) {
				out, err := s.List(ctx, 100)
				return out, apiErr(err)
			}},
		{Method: "GET", Path: "/campaigns/{id}", Roles: readers, Tag: "campaigns", Summary: "A campaign's target and progress (per-state counts)",
			Response: campaign.Status{},
			Handler: func(ctx context.Context, r *http.Request, p auth.Principal) (any, error) {
				id, err := pathID(r)
				if err != nil {
					return nil, err
				}
				st, err := s.Status(ctx, id)
				return st, apiErr(err)
			}},
		{Method: "GET", Path: "/campaigns/{id}/report", Roles: readers, Tag: "campaigns",
			Summary: "A campaign's report: counts, failed meters with reasons, unconfirmed meters", Response: campaign.Report{},
			Handler: func(ctx context.Context, r *http.Request, p auth.Principal) (any, error) {
				id, err := pathID(r)
				if err != nil {
					return nil, err
				}
				rep, err := s.Report(ctx, id)
				return rep, apiErr(err)
			}},
		{Method: "GET", Path: "/campaigns/{id}/meters", Roles: readers, Tag: "campaigns",
			Summary: "A campaign's meters in meter order; ?state=pending|issued|delivered|confirmed|failed&after=CURSOR&limit=", Response: MeterPage{},
			Handler: func(ctx context.Context, r *http.Request, p auth.Principal) (any, error) {
				id, err := pathID(r)
				if err != nil {
					return nil, err
				}
				q := r.URL.Query()
				after, limit := int64(0), 100
				if v := q.Get("after"); v != "" {
					if after, err = strconv.ParseInt(v, 10, 64); err != nil || after < 0 {
						return nil, server.Error(http.StatusUnprocessableEntity, "invalid_request", "after", "after must be a cursor from a previous page")
					}
				}
				if v := q.Get("limit"); v != "" {
					if limit, err = strconv.Atoi(v); err != nil || limit < 1 || limit > 1000 {
						return nil, server.Error(http.StatusUnprocessableEntity, "invalid_request", "limit", "limit must be 1 to 1000")
					}
				}
				ms, next, err := s.Meters(ctx, id, q.Get("state"), after, limit)
				return MeterPage{Meters: ms, Next: next}, apiErr(err)
			}},
		{Method: "GET", Path: "/campaigns/{id}/meters/{meter}", Roles: field, Tag: "campaigns",
			Summary: "One meter's campaign state and the tokens or voucher issued to it, in the order the meter takes them", Response: MeterDetail{},
			Handler: func(ctx context.Context, r *http.Request, p auth.Principal) (any, error) {
				id, err := pathID(r)
				if err != nil {
					return nil, err
				}
				ms, toks, err := s.MeterTokens(ctx, id, r.PathValue("meter"))
				if err != nil {
					return nil, apiErr(err)
				}
				d := MeterDetail{MeterState: ms, Issued: []IssuedItem{}}
				for _, t := range toks {
					d.Issued = append(d.Issued, IssuedItem{Ordinal: t.Ordinal, Kind: t.Kind, Token: t.Digits, Voucher: t.Voucher, Sequence: t.VoucherSeq})
				}
				return d, nil
			}},
		{Method: "POST", Path: "/campaigns/{id}/meters/{meter}/delivered", Roles: field, Tag: "campaigns",
			Summary: "Mark a meter's campaign tokens delivered (printed, loaded on a card, sent)", Response: campaign.MeterState{},
			Handler: func(ctx context.Context, r *http.Request, p auth.Principal) (any, error) {
				id, err := pathID(r)
				if err != nil {
					return nil, err
				}
				meter := r.PathValue("meter")
				if err := s.Deliver(ctx, p.Actor(), id, meter); err != nil {
					return nil, apiErr(err)
				}
				ms, _, err := s.MeterTokens(ctx, id, meter)
				return ms, apiErr(err)
			}},
		{Method: "POST", Path: "/campaigns/{id}/approve", Roles: []string{auth.Admin, auth.Supervisor}, Tag: "campaigns",
			Summary:  "Approve a campaign another operator proposed (dual control): moves an STS supply group to the target and lets the campaign run",
			Response: campaign.Status{},
			Handler: func(ctx context.Context, r *http.Request, p auth.Principal) (any, error) {
				id, err := pathID(r)
				if err != nil {
					return nil, err
				}
				st, err := s.Approve(ctx, p.Actor(), id)
				return st, apiErr(err)
			}},
		{Method: "POST", Path: "/campaigns/{id}/cancel", Roles: []string{auth.Admin}, Tag: "campaigns",
			Summary: "Cancel a running campaign (issued tokens stay valid)", Response: campaign.Status{},
			Handler: func(ctx context.Context, r *http.Request, p auth.Principal) (any, error) {
				id, err := pathID(r)
				if err != nil {
					return nil, err
				}
				if err := s.Cancel(ctx, p.Actor(), id); err != nil {
					return nil, apiErr(err)
				}
				st, err := s.Status(ctx, id)
				return st, apiErr(err)
			}},
	}
}

// apiErr maps the package's sentinels to API errors; others pass through
// to the server's mapping (store sentinels).
func apiErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, campaign.ErrInvalid):
		msg := strings.TrimPrefix(err.Error(), campaign.ErrInvalid.Error()+": ")
		f, _, _ := strings.Cut(msg, ":")
		return server.Error(http.StatusUnprocessableEntity, "invalid_request", f, msg)
	case errors.Is(err, campaign.ErrNotFound):
		return server.Error(http.StatusNotFound, "not_found", "", err.Error())
	case errors.Is(err, campaign.ErrForbidden):
		return server.Error(http.StatusForbidden, "forbidden", "", err.Error())
	case errors.Is(err, campaign.ErrNotApproved):
		return server.Error(http.StatusConflict, "not_approved", "", err.Error())
	case errors.Is(err, campaign.ErrFinished):
		return server.Error(http.StatusConflict, "campaign_finished", "", err.Error())
	case errors.Is(err, store.ErrConflict):
		return server.Error(http.StatusConflict, "conflict", "", err.Error())
	}
	return err
}

func pathID(r *http.Request) (int64, error) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id <= 0 {
		return 0, server.Error(http.StatusUnprocessableEntity, "invalid_request", "id", "id must be a positive integer")
	}
	return id, nil
}
