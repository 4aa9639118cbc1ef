// Package engineeringapi is the HTTP face of dual control: engineers file
// engineering requests and read their own, supervisors and admins list and
// decide them, auditors read them. The rules themselves (who may decide,
// that the decider differs from the requester, what is issued) live in
// package vend, so the API cannot bypass them; this package only maps
// routes and roles.
package engineeringapi

import (
	"context"
	"net/http"
	"strconv"

	"sluice/auth"
	"sluice/server"
	"sluice/vend"
)

// RejectBody is the body of a rejection.
type RejectBody struct {
	Reason string `json:"reason"`
}

// Routes returns the engineering-request routes for server.Config.Extra.
func Routes(svc *vend.Service) []server.Route {
	readers := []string{auth.Engineer, auth.Supervisor, auth.Admin, auth.Auditor}
	deciders := []string{auth.Supervisor, auth.Admin}
	return []server.Route{
		{Method: "POST", Path: "/engineering-requests", Roles: []string{auth.Engineer}, Tag: "engineering", Status: http.StatusCreated,
			Summary: "File an engineering request (STS management token or key change, engineering voucher) for a second operator to approve",
			Request: vend.EngineeringRequest{}, Response: vend.EngineeringView{},
			Handler: func(ctx context.Context, r *http.Request, p auth.Principal) (any, error) {
				var req vend.EngineeringRequest
				if err := server.DecodeJSON(r, &req); err != nil {
					return nil, err
				}
				return svc.RequestEngineering(ctx, actor(p), req)
			}},
		{Method: "GET", Path: "/engineering-requests", Roles: readers, Tag: "engineering",
			Summary:  "List engineering requests, newest first (engineers see their own); ?state=pending|issued|rejected&limit=",
			Response: []vend.EngineeringView{},
			Handler: func(ctx context.Context, r *http.Request, p auth.Principal) (any, error) {
				limit := 100
				if s := r.URL.Query().Get("limit"); s != "" {
					n, err := strconv.Atoi(s)
					if err != nil || n < 1 || n > 500 {
						return nil, server.Error(http.StatusUnprocessableEntity, "invalid_request", "limit", "limit must be 1 to 500")
					}
					limit = n
				}
				out, err := svc.EngineeringRequests(ctx, actor(p), r.URL.Query().Get("state"), limit)
				if out == nil && err == nil {
					out = []vend.EngineeringView{}
				}
				return out, err
			}},
		{Method: "GET", Path: "/engineering-requests/{id}", Roles: readers, Tag: "engineering",
			Summary: "One engineering request with its tokens once issued", Response: vend.EngineeringView{},
			Handler: func(ctx context.Context, r *http.Request, p auth.Principal) (any, error) {
				id, err := pathID(r)
				if err != nil {
					return nil, err
				}
				return svc.EngineeringRequestByID(ctx, actor(p), id)
			}},
		{Method: "POST", Path: "/engineering-requests/{id}/approve", Roles: deciders, Tag: "engineering",
			Summary:  "Approve a pending request of another operator and issue its tokens (dual control)",
			Response: vend.EngineeringView{},
			Handler: func(ctx context.Context, r *http.Request, p auth.Principal) (any, error) {
				id, err := pathID(r)
				if err != nil {
					return nil, err
				}
				return svc.ApproveEngineering(ctx, actor(p), id)
			}},
		{Method: "POST", Path: "/engineering-requests/{id}/reject", Roles: deciders, Tag: "engineering",
			Summary: "Reject a pending request of another operator; nothing is issued",
			Request: RejectBody{}, Response: vend.EngineeringView{},
			Handler: func(ctx context.Context, r *http.Request, p auth.Principal) (any, error) {
				id, err := pathID(r)
				if err != nil {
					return nil, err
				}
				var body RejectBody
				if err := server.DecodeJSON(r, &body); err != nil {
					return nil, err
				}
				return svc.RejectEngineering(ctx, actor(p), id, body.Reason)
			}},
	}
}

func actor(p auth.Principal) vend.Actor {
	o := p.Operator
	return vend.Actor{OperatorID: o.ID, Username: o.Username, Role: o.Role, VendorID: o.VendorID}
}

func pathID(r *http.Request) (int64, error) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id <= 0 {
		return 0, server.Error(http.StatusUnprocessableEntity, "invalid_request", "id", "id must be a positive integer")
	}
	return id, nil
}
