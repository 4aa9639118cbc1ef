package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"sluice/auth"
	"sluice/store"
	"sluice/tariff"
	"sluice/vend"
)

// route is one API endpoint. Every route names the roles allowed to call it
// (nil: public), which the middleware enforces before the handler runs and
// the role-matrix test checks for every role; the OpenAPI document is
// generated from the same table, so the two cannot drift apart.
type route struct {
	Method  string
	Path    string // net/http pattern, under /api/v1
	Roles   []string
	Summary string
	Tag     string
	// Request and Response are zero values of the JSON bodies, for the
	// OpenAPI schemas; nil when there is none.
	Request  any
	Response any
	Status   int // success status, 200 when 0
	// BeforePasswordChange marks the few routes an operator with a one-time
	// password may call before choosing its own.
	BeforePasswordChange bool
	// Headers names required request headers (Idempotency-Key).
	Headers []string
	h       func(c *call) error
}

// call is one request in flight.
type call struct {
	w http.ResponseWriter
	r *http.Request
	p auth.Principal
	s *Server
	// session is the caller's session token, for logout.
	session string
}

func (c *call) ctx() context.Context { return c.r.Context() }

// actor is the principal as the vending service sees it.
func (c *call) actor() vend.Actor {
	o := c.p.Operator
	return vend.Actor{OperatorID: o.ID, Username: o.Username, Role: o.Role, VendorID: o.VendorID}
}

// maxBody bounds request bodies: the largest legitimate one (a tariff) is a
// few kilobytes.
const maxBody = 64 << 10

// decode reads a JSON body strictly: one object, known fields only.
func (c *call) decode(v any) error {
	if ct := c.r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		return &apiError{Status: http.StatusUnsupportedMediaType, Code: "unsupported_media_type", Message: "send the body as application/json"}
	}
	body, err := io.ReadAll(http.MaxBytesReader(c.w, c.r.Body, maxBody))
	if err != nil {
		return &apiError{Status: http.StatusRequestEntityTooLarge, Code: "body_too_large", Message: fmt.Sprintf("request body exceeds %d bytes", maxBody)}
	}
	dec := json.NewDecoder(strings.NewReader(string(body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonError(err)
	}
	if dec.More() {
		return &apiError{Status: http.StatusBadRequest, Code: "invalid_json", Message: "body must hold exactly one JSON object"}
	}
	return nil
}

// rawBody reads a JSON body without decoding it (tariffs are parsed by
// their own strict parser).
func (c *call) rawBody() ([]byte, error) {
	if ct := c.r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		return nil, &apiError{Status: http.StatusUnsupportedMediaType, Code: "unsupported_media_type", Message: "send the body as application/json"}
	}
	body, err := io.ReadAll(http.MaxBytesReader(c.w, c.r.Body, maxBody))
	if err != nil {
		return nil, &apiError{Status: http.StatusRequestEntityTooLarge, Code: "body_too_large", Message: fmt.Sprintf("request body exceeds %d bytes", maxBody)}
	}
	return body, nil
}

func jsonError(err error) error {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return &apiError{Status: http.StatusBadRequest, Code: "invalid_json", Message: fmt.Sprintf("malformed JSON at byte %d", se.Offset)}
	case errors.As(err, &te):
		return &apiError{Status: http.StatusBadRequest, Code: "invalid_request", Field: te.Field, Message: fmt.Sprintf("%s must be %s", te.Field, te.Type)}
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		f := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		return &apiError{Status: http.StatusBadRequest, Code: "invalid_request", Field: f, Message: "unknown field " + strconv.Quote(f)}
	case errors.Is(err, io.EOF):
		return &apiError{Status: http.StatusBadRequest, Code: "invalid_json", Message: "empty body"}
	}
	return &apiError{Status: http.StatusBadRequest, Code: "invalid_json", Message: err.Error()}
}

func (c *call) json(status int, v any) error {
	writeJSON(c.w, status, v)
	return nil
}

// pathID parses a numeric path value.
func (c *call) pathID(name string) (int64, error) {
	id, err := strconv.ParseInt(c.r.PathValue(name), 10, 64)
	if err != nil || id <= 0 {
		return 0, &apiError{Status: http.StatusBadRequest, Code: "invalid_request", Field: name, Message: name + " must be a positive integer"}
	}
	return id, nil
}

// queryInt reads an optional bounded integer query parameter.
func (c *call) queryInt(name string, def, min, max int) (int, error) {
	v := c.r.URL.Query().Get(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < min || n > max {
		return 0, &apiError{Status: http.StatusBadRequest, Code: "invalid_request", Field: name, Message: fmt.Sprintf("%s must be an integer from %d to %d", name, min, max)}
	}
	return n, nil
}

// search reads the q and limit parameters of a search route.
func (c *call) search() (string, int, error) {
	limit, err := c.queryInt("limit", 20, 1, 200)
	return strings.TrimSpace(c.r.URL.Query().Get("q")), limit, err
}

// apiError is the JSON error body: a stable code for programs, a message
// for people, and the field at fault when there is one.
type apiError struct {
	Status  int    `json:"-"`
	Code    string `json:"code"`
	Message string `json:"message"`
	Field   string `json:"field,omitempty"`
}

func (e *apiError) Error() string { return e.Message }

// ErrorBody is what every error response carries.
type ErrorBody struct {
	Error apiError `json:"error"`
}

// toAPIError maps domain errors to HTTP.
func toAPIError(err error) *apiError {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae
	}
	var vfe *vend.FieldError
	var afe *auth.FieldError
	var tfe *tariff.FieldError
	switch {
	case errors.As(err, &vfe):
		return &apiError{Status: http.StatusUnprocessableEntity, Code: "invalid_request", Field: vfe.Field, Message: vfe.Error()}
	case errors.As(err, &afe):
		return &apiError{Status: http.StatusUnprocessableEntity, Code: "invalid_request", Field: afe.Field, Message: afe.Error()}
	case errors.As(err, &tfe):
		return &apiError{Status: http.StatusUnprocessableEntity, Code: "invalid_request", Field: tfe.Field, Message: tfe.Error()}
	case errors.Is(err, auth.ErrUnauthenticated), errors.Is(err, auth.ErrBadCredentials):
		return &apiError{Status: http.StatusUnauthorized, Code: "unauthenticated", Message: err.Error()}
	case errors.Is(err, auth.ErrDisabled):
		return &apiError{Status: http.StatusForbidden, Code: "operator_disabled", Message: err.Error()}
	case errors.Is(err, auth.ErrRateLimited):
		return &apiError{Status: http.StatusTooManyRequests, Code: "rate_limited", Message: err.Error()}
	case errors.Is(err, vend.ErrIdempotencyMismatch):
		return &apiError{Status: http.StatusUnprocessableEntity, Code: "idempotency_key_reused", Field: "Idempotency-Key", Message: err.Error()}
	case errors.Is(err, vend.ErrInsufficientFloat):
		return &apiError{Status: http.StatusConflict, Code: "insufficient_float", Message: err.Error()}
	case errors.Is(err, vend.ErrDailyLimit):
		return &apiError{Status: http.StatusConflict, Code: "daily_limit", Message: err.Error()}
	case errors.Is(err, vend.ErrNoVendor), errors.Is(err, vend.ErrVendorDisabled), errors.Is(err, vend.ErrForbidden):
		return &apiError{Status: http.StatusForbidden, Code: "forbidden", Message: err.Error()}
	case errors.Is(err, vend.ErrMeterBlocked):
		return &apiError{Status: http.StatusConflict, Code: "meter_blocked", Message: err.Error()}
	case errors.Is(err, vend.ErrNothingToBuy):
		return &apiError{Status: http.StatusUnprocessableEntity, Code: "amount_too_small", Field: "amount_cents", Message: err.Error()}
	case errors.Is(err, vend.ErrNotReversible):
		return &apiError{Status: http.StatusConflict, Code: "not_reversible", Message: err.Error()}
	case errors.Is(err, vend.ErrDuplicate):
		return &apiError{Status: http.StatusConflict, Code: "duplicate", Message: err.Error()}
	case errors.Is(err, vend.ErrInvalid), errors.Is(err, auth.ErrInvalid):
		return &apiError{Status: http.StatusUnprocessableEntity, Code: "invalid_request", Message: err.Error()}
	case errors.Is(err, store.ErrNotFound), errors.Is(err, vend.ErrNotFound):
		return &apiError{Status: http.StatusNotFound, Code: "not_found", Message: err.Error()}
	case errors.Is(err, store.ErrConflict):
		return &apiError{Status: http.StatusConflict, Code: "conflict", Message: err.Error()}
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return &apiError{Status: http.StatusServiceUnavailable, Code: "unavailable", Message: "request cancelled or timed out; retry with the same Idempotency-Key"}
	}
	return &apiError{Status: http.StatusInternalServerError, Code: "internal", Message: "internal error; retry later (purchases: with the same Idempotency-Key)"}
}

// sessionCookie is the console's session cookie: HttpOnly so scripts
// cannot read it, SameSite=Strict so other sites cannot ride on it.
const sessionCookie = "sluice_session"

// serveRoute wraps a route's handler with authentication, role checks and
// error mapping.
func (s *Server) serveRoute(rt route) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		c := &call{w: w, r: r, s: s}
		err := s.authorize(c, rt)
		if err == nil {
			err = rt.h(c)
		}
		if err != nil {
			ae := toAPIError(err)
			if ae.Status >= 500 {
				s.log.Error("api", "route", rt.Method+" "+rt.Path, "err", err)
			}
			if ae.Status == http.StatusUnauthorized {
				w.Header().Set("WWW-Authenticate", `Bearer realm="sluice"`)
			}
			writeJSON(w, ae.Status, ErrorBody{Error: *ae})
		}
	}
}

func (s *Server) authorize(c *call, rt route) error {
	if rt.Roles == nil {
		return nil
	}
	var apiKey string
	if h := c.r.Header.Get("Authorization"); h != "" {
		k, ok := strings.CutPrefix(h, "Bearer ")
		if !ok || k == "" {
			return &apiError{Status: http.StatusUnauthorized, Code: "unauthenticated", Message: "Authorization must be Bearer <api key>"}
		}
		apiKey = k
	} else if ck, err := c.r.Cookie(sessionCookie); err == nil {
		c.session = ck.Value
		// A cookie rides along with any request the browser makes, so
		// state-changing calls must also prove they come from the console:
		// a custom header no cross-site form can set.
		if c.r.Method != http.MethodGet && c.r.Header.Get("X-Sluice-Console") == "" {
			return &apiError{Status: http.StatusForbidden, Code: "csrf", Message: "cookie-authenticated writes need the X-Sluice-Console header"}
		}
	}
	p, err := s.cfg.Auth.Authenticate(c.ctx(), c.session, apiKey)
	if err != nil {
		return err
	}
	c.p = p
	c.r = c.r.WithContext(auth.WithPrincipal(c.r.Context(), p))
	if p.Operator.MustChangePassword && !rt.BeforePasswordChange {
		return &apiError{Status: http.StatusForbidden, Code: "password_change_required", Message: "change the one-time password first (POST /api/v1/auth/password)"}
	}
	if !slices.Contains(rt.Roles, p.Operator.Role) {
		return &apiError{Status: http.StatusForbidden, Code: "forbidden", Message: fmt.Sprintf("role %s may not %s %s", p.Operator.Role, rt.Method, rt.Path)}
	}
	return nil
}

// remoteIP is the client's address for rate limiting. Behind a proxy the
// operator sets the proxy to overwrite X-Real-IP; without one, the socket.
func remoteIP(r *http.Request) string {
	if ip := r.Header.Get("X-Real-IP"); ip != "" && net.ParseIP(ip) != nil {
		return ip
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

var allRoles = auth.Roles

func roles(r ...string) []string { return r }

func cookie(tok string, secure bool, expires time.Time) *http.Cookie {
	return &http.Cookie{Name: sessionCookie, Value: tok, Path: "/", HttpOnly: true, Secure: secure,
		SameSite: http.SameSiteStrictMode, Expires: expires}
}

// Route is an API route contributed by another part of the head-end
// (telemetry, reports, campaigns). It gets the same authentication, role
// enforcement, error mapping and OpenAPI documentation as the built-in
// routes.
type Route struct {
	Method   string
	Path     string   // under /api/v1, e.g. "/alerts/{id}"
	Roles    []string // nil: public
	Summary  string
	Tag      string
	Request  any // zero value of the JSON body, or nil
	Response any // zero value of the JSON answer
	Status   int // success status, 200 when 0
	// Handler returns the value to send as JSON, or an error: a *FieldError
	// of package vend or auth, a store sentinel, or one made by Error.
	Handler func(ctx context.Context, r *http.Request, p auth.Principal) (any, error)
}

func internalRoutes(extra []Route) []route {
	var out []route
	for _, x := range extra {
		x := x
		out = append(out, route{Method: x.Method, Path: x.Path, Roles: x.Roles, Summary: x.Summary, Tag: x.Tag,
			Request: x.Request, Response: x.Response, Status: x.Status,
			h: func(c *call) error {
				v, err := x.Handler(c.ctx(), c.r, c.p)
				if err != nil {
					return err
				}
				st := x.Status
				if st == 0 {
					st = http.StatusOK
				}
				return c.json(st, v)
			}})
	}
	return out
}

// Error makes an API error with a status, a stable code and, optionally,
// the field at fault.
func Error(status int, code, field, message string) error {
	return &apiError{Status: status, Code: code, Field: field, Message: message}
}

// DecodeJSON reads a request body the way every API route does: JSON
// content type, at most 64 KiB, one object, known fields only.
func DecodeJSON(r *http.Request, v any) error {
	return (&call{r: r}).decode(v)
}
