package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"sluice/client"
)

func TestErrorDecoding(t *testing.T) {
	ctx := context.Background()
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/api/v1/api-error":
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnprocessableEntity)
			io.WriteString(w, `{"error":{"code":"invalid_request","message":"amount must be positive","field":"amount_cents"}}`)
		case "/api/v1/proxy":
			w.WriteHeader(http.StatusBadGateway)
			io.WriteString(w, "upstream down\n")
		case "/api/v1/empty":
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	defer ts.Close()
	c := client.New(ts.URL)

	status, err := c.Do(ctx, "POST", "/api-error", map[string]int{"amount_cents": 0}, nil)
	var e *client.Error
	if !errors.As(err, &e) {
		t.Fatalf("err = %v (%T)", err, err)
	}
	want := client.Error{Method: "POST", Path: "/api-error", Status: 422, Code: "invalid_request", Message: "amount must be positive", Field: "amount_cents"}
	if *e != want || status != 422 {
		t.Errorf("status %d, err %+v, want %+v", status, *e, want)
	}
	if !errors.Is(err, client.ErrInvalidRequest) || errors.Is(err, client.ErrNotFound) {
		t.Errorf("sentinels of %v", err)
	}
	if s := err.Error(); !strings.Contains(s, "422 invalid_request (amount_cents): amount must be positive") {
		t.Errorf("Error() = %q", s)
	}

	// Not an API error body: the status and the text, no code.
	_, err = c.Do(ctx, "GET", "/proxy", nil, nil)
	if !errors.As(err, &e) || e.Status != 502 || e.Code != "" || e.Message != "upstream down" {
		t.Errorf("err = %+v", err)
	}
	if errors.Is(err, client.ErrUnavailable) {
		t.Error("a code-less error matched a sentinel")
	}
	_, err = c.Do(ctx, "GET", "/empty", nil, nil)
	if !errors.As(err, &e) || e.Status != 503 || e.Message != "Service Unavailable" {
		t.Errorf("err = %+v", err)
	}
}

func TestRequestHeaders(t *testing.T) {
	ctx := context.Background()
	var got *http.Request
	var body string
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got, body = r, string(b)
		w.WriteHeader(http.StatusCreated)
		io.WriteString(w, `{"ok":true}`)
	}))
	defer ts.Close()

	// A session: the console header, no Authorization.
	var out struct{ OK bool }
	status, err := client.New(ts.URL).DoIdempotent(ctx, "k-1", "POST", "/x?y=1", json.RawMessage(` {"raw": 1}`), &out)
	if err != nil || status != 201 || !out.OK {
		t.Fatalf("status %d, out %+v, %v", status, out, err)
	}
	if got.URL.RequestURI() != "/api/v1/x?y=1" || body != ` {"raw": 1}` || got.Header.Get("Content-Type") != "application/json" ||
		got.Header.Get("Idempotency-Key") != "k-1" || got.Header.Get("X-Sluice-Console") == "" || got.Header.Get("Authorization") != "" {
		t.Errorf("session request %s %q %v", got.URL, body, got.Header)
	}

	// A terminal: the API key, no console header; no body, no content type.
	hc := &http.Client{}
	if _, err := client.New(ts.URL, client.WithAPIKey("slk_x"), client.WithHTTPClient(hc)).Do(ctx, "GET", "/y", nil, nil); err != nil {
		t.Fatal(err)
	}
	if got.Header.Get("Authorization") != "Bearer slk_x" || got.Header.Get("X-Sluice-Console") != "" ||
		got.Header.Get("Content-Type") != "" || got.Header.Get("Idempotency-Key") != "" || body != "" {
		t.Errorf("terminal request %v %q", got.Header, body)
	}

	// The context bounds every call.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := client.New(ts.URL).Do(cctx, "GET", "/z", nil, nil); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
}
