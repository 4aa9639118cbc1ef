package client

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
)

// Error is a request the head-end refused: its HTTP status and the API's
// error body ({"error":{"code","message","field"}}).
type Error struct {
	Method, Path string
	Status       int
	// Code is the API's stable error code ("insufficient_float",
	// "idempotency_key_reused", ...): what programs branch on. Empty when
	// the answer was not an API error body (a proxy's page, say).
	Code    string
	Message string
	// Field names the request field at fault, when there is one.
	Field string
}

func (e *Error) Error() string {
	s := fmt.Sprintf("%s %s: %d", e.Method, e.Path, e.Status)
	if e.Code != "" {
		s += " " + e.Code
	}
	if e.Field != "" {
		s += " (" + e.Field + ")"
	}
	if e.Message != "" {
		s += ": " + e.Message
	}
	return s
}

// Sentinels for the error codes callers branch on; errors.Is(err,
// ErrInsufficientFloat) holds for an *Error with that code.
var (
	ErrUnauthenticated        = errors.New("unauthenticated")
	ErrForbidden              = errors.New("forbidden")
	ErrPasswordChangeRequired = errors.New("password change required")
	ErrCSRF                   = errors.New("cookie-authenticated write without the console header")
	ErrNotFound               = errors.New("not found")
	ErrInvalidRequest         = errors.New("invalid request")
	ErrConflict               = errors.New("conflict")
	ErrDuplicate              = errors.New("duplicate")
	ErrIdempotencyKeyReused   = errors.New("idempotency key reused with another request")
	ErrInsufficientFloat      = errors.New("insufficient float")
	ErrDailyLimit             = errors.New("daily limit reached")
	ErrBodyTooLarge           = errors.New("request body too large")
	ErrRateLimited            = errors.New("rate limited")
	ErrUnavailable            = errors.New("unavailable")
)

// Is matches e's code against the sentinels.
func (e *Error) Is(target error) bool {
	return target != nil && sentinel(e.Code) == target
}

// sentinel is the sentinel of an API error code, or nil.
func sentinel(code string) error {
	switch code {
	case "unauthenticated":
		return ErrUnauthenticated
	case "forbidden":
		return ErrForbidden
	case "password_change_required":
		return ErrPasswordChangeRequired
	case "csrf":
		return ErrCSRF
	case "not_found":
		return ErrNotFound
	case "invalid_request":
		return ErrInvalidRequest
	case "conflict":
		return ErrConflict
	case "duplicate":
		return ErrDuplicate
	case "idempotency_key_reused":
		return ErrIdempotencyKeyReused
	case "insufficient_float":
		return ErrInsufficientFloat
	case "daily_limit":
		return ErrDailyLimit
	case "body_too_large":
		return ErrBodyTooLarge
	case "rate_limited":
		return ErrRateLimited
	case "unavailable":
		return ErrUnavailable
	}
	return nil
}

// maxErrorBody bounds what is read of a refusal: an API error body is a few
// hundred bytes.
const maxErrorBody = 64 << 10

func decodeError(method, path string, resp *http.Response) error {
	e := &Error{Method: method, Path: path, Status: resp.StatusCode}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	if err != nil {
		e.Message = fmt.Sprintf("reading the answer: %v", err)
		return e
	}
	var body struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
			Field   string `json:"field"`
		} `json:"error"`
	}
	if json.Unmarshal(b, &body) == nil && body.Error.Code != "" {
		e.Code, e.Message, e.Field = body.Error.Code, body.Error.Message, body.Error.Field
	} else {
		e.Message = string(bytes.TrimSpace(b))
		if e.Message == "" {
			e.Message = http.StatusText(resp.StatusCode)
		}
	}
	return e
}
