package protect

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"

	"sluice/auth"
	"sluice/server"
	"sluice/store"
)

// AlertView is an alert as the API shows it.
type AlertView struct {
	ID         int64           `json:"id"`
	Subject    string          `json:"subject"`
	Rule       string          `json:"rule"`
	Severity   string          `json:"severity"`
	State      string          `json:"state"`
	Summary    string          `json:"summary"`
	Details    json.RawMessage `json:"details"`
	FirstAt    time.Time       `json:"first_at"`
	LastAt     time.Time       `json:"last_at"`
	Count      int64           `json:"count"`
	AckedBy    string          `json:"acknowledged_by,omitempty"`
	AckedAt    *time.Time      `json:"acknowledged_at,omitempty"`
	ResolvedBy string          `json:"resolved_by,omitempty"`
	ResolvedAt *time.Time      `json:"resolved_at,omitempty"`
	Note       string          `json:"note,omitempty"`
}

// AlertList is the answer of GET /alerts.
type AlertList struct {
	Alerts []AlertView `json:"alerts"`
}

// ResolveRequest is the body of POST /alerts/{id}/resolve.
type ResolveRequest struct {
	Note string `json:"note"`
}

func view(a store.Alert) AlertView {
	v := AlertView{ID: a.ID, Subject: a.Subject, Rule: a.Rule, Severity: a.Severity, State: a.State, Summary: a.Summary,
		Details: json.RawMessage(a.Details), FirstAt: a.FirstAt, LastAt: a.LastAt, Count: a.Count,
		AckedBy: a.AckedBy, ResolvedBy: a.ResolvedBy, Note: a.Note}
	if len(v.Details) == 0 {
		v.Details = json.RawMessage("{}")
	}
	if !a.AckedAt.IsZero() {
		t := a.AckedAt
		v.AckedAt = &t
	}
	if !a.ResolvedAt.IsZero() {
		t := a.ResolvedAt
		v.ResolvedAt = &t
	}
	return v
}

// Routes are the alert API: auditors, supervisors and admins read;
// supervisors and admins act.
func Routes(s *Service) []server.Route {
	readers := []string{auth.Supervisor, auth.Admin, auth.Auditor}
	actors := []string{auth.Supervisor, auth.Admin}
	return []server.Route{
		{Method: http.MethodGet, Path: "/alerts", Roles: readers, Tag: "alerts", Response: AlertList{},
			Summary: "List revenue-protection alerts, newest first (query: state, rule, meter, since RFC 3339, limit 1-1000)",
			Handler: func(ctx context.Context, r *http.Request, _ auth.Principal) (any, error) { return s.list(ctx, r) }},
		{Method: http.MethodGet, Path: "/alerts/{id}", Roles: readers, Tag: "alerts", Response: AlertView{},
			Summary: "One alert",
			Handler: func(ctx context.Context, r *http.Request, _ auth.Principal) (any, error) {
				id, err := alertID(r)
				if err != nil {
					return nil, err
				}
				var a store.Alert
				err = s.cfg.Store.Read(ctx, func(tx store.Tx) error {
					var err error
					a, err = tx.Alerts().ByID(ctx, id)
					return err
				})
				if err != nil {
					return nil, err
				}
				return view(a), nil
			}},
		{Method: http.MethodPost, Path: "/alerts/{id}/acknowledge", Roles: actors, Tag: "alerts", Response: AlertView{},
			Summary: "Acknowledge an open alert (someone is on it)",
			Handler: func(ctx context.Context, r *http.Request, p auth.Principal) (any, error) {
				id, err := alertID(r)
				if err != nil {
					return nil, err
				}
				a, err := s.Acknowledge(ctx, id, p.Actor())
				if err != nil {
					return nil, err
				}
				return view(a), nil
			}},
		{Method: http.MethodPost, Path: "/alerts/{id}/resolve", Roles: actors, Tag: "alerts", Request: ResolveRequest{}, Response: AlertView{},
			Summary: "Resolve an alert with a note saying what was found",
			Handler: func(ctx context.Context, r *http.Request, p auth.Principal) (any, error) {
				id, err := alertID(r)
				if err != nil {
					return nil, err
				}
				var req ResolveRequest
				if err := server.DecodeJSON(r, &req); err != nil {
					return nil, err
				}
				req.Note = strings.TrimSpace(req.Note)
				if req.Note == "" || len(req.Note) > 2000 {
					return nil, server.Error(http.StatusBadRequest, "invalid_request", "note", "note is required (what was found), at most 2000 characters")
				}
				a, err := s.Resolve(ctx, id, p.Actor(), req.Note)
				if err != nil {
					return nil, err
				}
				return view(a), nil
			}},
	}
}

func alertID(r *http.Request) (int64, error) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id <= 0 {
		return 0, server.Error(http.StatusBadRequest, "invalid_request", "id", "id must be a positive integer")
	}
	return id, nil
}

func (s *Service) list(ctx context.Context, r *http.Request) (any, error) {
	q := r.URL.Query()
	f := store.AlertFilter{State: q.Get("state"), Rule: q.Get("rule"), Limit: 100}
	switch f.State {
	case "", store.AlertOpen, store.AlertAcknowledged, store.AlertResolved:
	default:
		return nil, server.Error(http.StatusBadRequest, "invalid_request", "state", "state must be open, acknowledged or resolved")
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			return nil, server.Error(http.StatusBadRequest, "invalid_request", "limit", "limit must be an integer from 1 to 1000")
		}
		f.Limit = n
	}
	if v := q.Get("since"); v != "" {
		t, err := time.Parse(time.RFC3339, v)
		if err != nil {
			return nil, server.Error(http.StatusBadRequest, "invalid_request", "since", "since must be an RFC 3339 time")
		}
		f.Since = t
	}
	var out []store.Alert
	err := s.cfg.Store.Read(ctx, func(tx store.Tx) error {
		if v := q.Get("meter"); v != "" {
			m, err := tx.Meters().ByNumber(ctx, v)
			if err != nil {
				return err
			}
			f.MeterID = m.ID
		}
		var err error
		out, err = tx.Alerts().List(ctx, f)
		return err
	})
	if err != nil {
		return nil, err
	}
	l := AlertList{Alerts: make([]AlertView, len(out))}
	for i, a := range out {
		l.Alerts[i] = view(a)
	}
	return l, nil
}
