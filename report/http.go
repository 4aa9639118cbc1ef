package report

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"

	"sluice/auth"
	"sluice/server"
)

// Roles that may read reports.
var Roles = []string{auth.Admin, auth.Supervisor, auth.Auditor}

// Routes are the report API routes for server.Config.Extra. The JSON route
// answers with the whole report (at most MaxRows lines); ExportHandler
// streams reports of any size as CSV or JSON.
func Routes(s *Service) []server.Route {
	return []server.Route{
		{Method: "GET", Path: "/reports", Roles: Roles, Tag: "reports", Summary: "List the reports and the filters each honours",
			Response: []Info{}, Handler: func(ctx context.Context, r *http.Request, p auth.Principal) (any, error) { return List(), nil }},
		{Method: "GET", Path: "/reports/{name}", Roles: Roles, Tag: "reports",
			Summary: "Run a report (?from=&to= dates YYYY-MM-DD or RFC 3339, to inclusive when a date; optional supply_group=, vendor=, operator=). " +
				"Example: GET /api/v1/reports/settlement?from=2026-07-01&to=2026-07-31&vendor=OFFICE1. " +
				"Answers at most 20000 rows; GET /api/v1/reports/{name}/export?format=csv|json streams any size.",
			Response: Document{}, Handler: func(ctx context.Context, r *http.Request, _ auth.Principal) (any, error) {
				p, err := s.paramsFrom(r)
				if err != nil {
					return nil, apiErr(err)
				}
				d := &Document{}
				if _, err := s.Run(ctx, r.PathValue("name"), p, &docSink{d}); err != nil {
					return nil, apiErr(err)
				}
				return d, nil
			}},
	}
}

func (s *Service) paramsFrom(r *http.Request) (Params, error) {
	q := r.URL.Query()
	from, to, err := ParseRange(q.Get("from"), q.Get("to"), s.loc)
	if err != nil {
		return Params{}, err
	}
	return Params{From: from, To: to, SupplyGroup: q.Get("supply_group"), Vendor: q.Get("vendor"), Operator: q.Get("operator")}, nil
}

func apiErr(err error) error {
	var fe *FieldError
	switch {
	case errors.As(err, &fe):
		return server.Error(http.StatusUnprocessableEntity, "invalid_request", fe.Field, fe.Error())
	case errors.Is(err, ErrUnknown):
		return server.Error(http.StatusNotFound, "not_found", "name", err.Error())
	case errors.Is(err, ErrTooLarge):
		return server.Error(http.StatusUnprocessableEntity, "too_large", "to", err.Error())
	}
	return err
}

// Authenticator is what the export handler needs of package auth.
type Authenticator interface {
	Authenticate(ctx context.Context, sessionToken, apiKey string) (auth.Principal, error)
}

// ExportHandler streams GET /api/v1/reports/{name}/export?format=csv|json
// (default csv) with the query parameters of the JSON route. The server's
// route table can only answer with one buffered JSON value, so this handler
// is mounted beside it; it applies the same rules: a Bearer API key or the
// console session cookie, no one-time password, a report role.
func (s *Service) ExportHandler(a Authenticator) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var key, session string
		if h := r.Header.Get("Authorization"); h != "" {
			key, _ = strings.CutPrefix(h, "Bearer ")
		} else if c, err := r.Cookie("sluice_session"); err == nil {
			session = c.Value
		}
		p, err := a.Authenticate(r.Context(), session, key)
		if err != nil {
			w.Header().Set("WWW-Authenticate", `Bearer realm="sluice"`)
			writeError(w, http.StatusUnauthorized, "unauthenticated", "", "authenticate with an API key or a session")
			return
		}
		if p.Operator.MustChangePassword {
			writeError(w, http.StatusForbidden, "password_change_required", "", "change the one-time password first")
			return
		}
		if !slices.Contains(Roles, p.Operator.Role) {
			writeError(w, http.StatusForbidden, "forbidden", "", "role "+p.Operator.Role+" may not read reports")
			return
		}
		format := r.URL.Query().Get("format")
		if format == "" {
			format = CSV
		}
		params, err := s.paramsFrom(r)
		if err == nil {
			_, err = lookup(r.PathValue("name"))
		}
		if err == nil && format != CSV && format != JSON {
			err = fieldErr("format", "must be csv or json")
		}
		if err != nil {
			writeErr(w, err)
			return
		}
		name := r.PathValue("name")
		ct := "text/csv; charset=utf-8"
		if format == JSON {
			ct = "application/json"
		}
		w.Header().Set("Content-Type", ct)
		w.Header().Set("Content-Disposition", `attachment; filename="`+name+"."+format+`"`)
		w.Header().Set("Cache-Control", "no-store")
		sink, _ := NewSink(format, &flushWriter{w: w})
		started := &startSink{Sink: sink}
		if _, err := s.Run(auth.WithPrincipal(r.Context(), p), name, params, started); err != nil {
			if !started.begun {
				writeErr(w, err)
			}
			// Past the header the status is sent; a truncated body without
			// its totals line (CSV) or closing brace (JSON) tells the client.
			return
		}
	})
}

type startSink struct {
	Sink
	begun bool
}

func (s *startSink) Begin(m Meta) error { s.begun = true; return s.Sink.Begin(m) }

// flushWriter pushes each chunk the sinks write to the client.
type flushWriter struct{ w http.ResponseWriter }

func (f *flushWriter) Write(b []byte) (int, error) {
	n, err := f.w.Write(b)
	if fl, ok := f.w.(http.Flusher); ok {
		fl.Flush()
	}
	return n, err
}

func writeErr(w http.ResponseWriter, err error) {
	var fe *FieldError
	switch {
	case errors.As(err, &fe):
		writeError(w, http.StatusUnprocessableEntity, "invalid_request", fe.Field, fe.Error())
	case errors.Is(err, ErrUnknown):
		writeError(w, http.StatusNotFound, "not_found", "name", err.Error())
	default:
		writeError(w, http.StatusInternalServerError, "internal", "", "internal error")
	}
}

func writeError(w http.ResponseWriter, status int, code, field, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	body := map[string]any{"code": code, "message": msg}
	if field != "" {
		body["field"] = field
	}
	_ = jsonEncode(w, map[string]any{"error": body})
}
