package channel

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"

	"sluice/auth"
	"sluice/server"
	"sluice/store"
)

// Routes are the channel API routes for server.Config.Extra. The
// channel-facing ones take an API key of an operator of role vendor whose
// vending point is a channel.
func Routes(s *Service) []server.Route {
	sellers := []string{auth.Vendor}
	return []server.Route{
		{Method: "POST", Path: "/channel/trial", Roles: sellers, Tag: "channel", Request: TrialRequest{}, Response: Trial{},
			Summary: `Trial vend: meter lookup, breakdown and fee without issuing. Example: {"meter":"600727000000000009","amount_cents":20000}`,
			Handler: func(ctx context.Context, r *http.Request, p auth.Principal) (any, error) {
				var req TrialRequest
				if err := server.DecodeJSON(r, &req); err != nil {
					return nil, err
				}
				t, err := s.Trial(ctx, p, req)
				return t, httpErr(err)
			}},
		{Method: "POST", Path: "/channel/purchases", Roles: sellers, Tag: "channel", Request: PurchaseRequest{}, Response: Result{},
			Summary: `Purchase with the channel's client purchase ID; a retry with the same ID and request returns the same receipt and tokens (replayed: true). ` +
				`Example: {"client_purchase_id":"MM-2026-000123","meter":"600727000000000009","amount_cents":20000}`,
			Handler: func(ctx context.Context, r *http.Request, p auth.Principal) (any, error) {
				var req PurchaseRequest
				if err := server.DecodeJSON(r, &req); err != nil {
					return nil, err
				}
				res, err := s.Purchase(ctx, p, req)
				return res, httpErr(err)
			}},
		{Method: "GET", Path: "/channel/purchases/{client_id}", Roles: sellers, Tag: "channel", Response: LastResponse{},
			Summary: "Last response for a client purchase ID: the stored receipt and the stored advice answer, if any. Example: GET /api/v1/channel/purchases/MM-2026-000123",
			Handler: func(ctx context.Context, r *http.Request, p auth.Principal) (any, error) {
				lr, err := s.Lookup(ctx, p, r.PathValue("client_id"))
				return lr, httpErr(err)
			}},
		{Method: "POST", Path: "/channel/purchases/{client_id}/confirmation", Roles: sellers, Tag: "channel", Request: AdviceRequest{}, Response: Answer{},
			Summary: `Confirmation advice: the customer got the token. Repeat until answered; a repeat gets the stored answer, a confirmation after a reversal advice 409. Example body: {}`,
			Handler: func(ctx context.Context, r *http.Request, p auth.Principal) (any, error) {
				return advise(ctx, s, r, p, store.AdviceConfirmation)
			}},
		{Method: "POST", Path: "/channel/purchases/{client_id}/reversal", Roles: sellers, Tag: "channel", Request: AdviceRequest{}, Response: Answer{},
			Summary: `Reversal advice: the customer was not served. Reversed outright (money and fee back) only when no credit can have reached the meter; ` +
				`otherwise outcome "referred" and the purchase stands until a supervisor decides. Example: {"reason":"till crashed before printing"}`,
			Handler: func(ctx context.Context, r *http.Request, p auth.Principal) (any, error) {
				return advise(ctx, s, r, p, store.AdviceReversal)
			}},
		{Method: "GET", Path: "/channel/referred", Roles: []string{auth.Admin, auth.Supervisor, auth.Auditor}, Tag: "channel", Response: []Answer{},
			Summary: "Reversal advices referred to a supervisor, oldest first (?from= advice id to continue after, limit=)",
			Handler: func(ctx context.Context, r *http.Request, p auth.Principal) (any, error) {
				after, _ := strconv.ParseInt(r.URL.Query().Get("from"), 10, 64)
				limit, err := strconv.Atoi(r.URL.Query().Get("limit"))
				if err != nil || limit <= 0 || limit > 500 {
					limit = 100
				}
				return s.Referred(ctx, after, limit)
			}},
		{Method: "GET", Path: "/channel/channels", Roles: []string{auth.Admin, auth.Supervisor, auth.Auditor}, Tag: "channel", Response: []Channel{},
			Summary: "List payment channels with their fees and limits",
			Handler: func(ctx context.Context, r *http.Request, p auth.Principal) (any, error) { return s.List(ctx) }},
		{Method: "PUT", Path: "/channel/channels/{vendor}", Roles: []string{auth.Admin}, Tag: "channel", Request: Settings{}, Response: Channel{},
			Summary: `Make a vending point a payment channel or change its fee and limit. Example: {"fee_fixed_cents":150,"fee_rate_bp":50,"max_purchase_cents":200000}`,
			Handler: func(ctx context.Context, r *http.Request, p auth.Principal) (any, error) {
				var set Settings
				if err := server.DecodeJSON(r, &set); err != nil {
					return nil, err
				}
				return s.Configure(ctx, p, r.PathValue("vendor"), set)
			}},
	}
}

func advise(ctx context.Context, s *Service, r *http.Request, p auth.Principal, kind string) (any, error) {
	var req AdviceRequest
	if r.ContentLength != 0 {
		if err := server.DecodeJSON(r, &req); err != nil {
			return nil, err
		}
	}
	res, err := s.Advise(ctx, p, r.PathValue("client_id"), kind, req)
	if err != nil {
		return nil, httpErr(err)
	}
	return json.RawMessage(res.JSON), nil
}
