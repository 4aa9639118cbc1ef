// Package client is a Go client of the head-end's public JSON API (/api/v1),
// for the programs that drive a head-end from outside the way an operator's
// console or a vending terminal does: sluice demo, the vending load of sluice
// bench and the attack lab's head-end attacks. They used to carry three
// copies of the same request code; this is the one that remains.
//
// A Client is either a console session (Login sets the session cookie in the
// http.Client's jar, and every request carries the X-Sluice-Console header
// the API demands of cookie-authenticated writes) or a terminal holding an
// API key (WithAPIKey: Authorization: Bearer). Request and response bodies
// are the server's own wire types, so a change to the API breaks this
// package's build rather than its callers at run time. A refused request
// returns an *Error carrying the HTTP status and the API's stable error code
// and field; errors.Is matches it against the sentinels below.
//
// The client is cheap per request on purpose: the bench's load generator
// shares the CPU with the head-end it measures.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"time"
)

// Client calls one head-end as one principal. It is safe for concurrent use.
type Client struct {
	url string // head-end base URL, without /api/v1
	api string // url + "/api/v1"
	hc  *http.Client
	// auth is the Authorization header value (API key) or nil (session).
	auth []string
}

// Option configures a Client.
type Option func(*Client)

// WithHTTPClient makes the client send through hc (its transport, timeout
// and cookie jar) instead of its own. A session needs hc.Jar; a client with
// an API key does not, and many of them may share one hc.
func WithHTTPClient(hc *http.Client) Option { return func(c *Client) { c.hc = hc } }

// WithAPIKey authenticates every request with key (Authorization: Bearer),
// as a vending terminal or channel does.
func WithAPIKey(key string) Option {
	return func(c *Client) { c.auth = []string{"Bearer " + key} }
}

// DefaultTimeout bounds a request of a client with its own http.Client.
const DefaultTimeout = 30 * time.Second

// New returns a client of the head-end at baseURL (scheme, host and port,
// as headend.Headend.URL gives it). Without WithHTTPClient it has an
// http.Client of its own with a fresh cookie jar, ready to log in.
func New(baseURL string, opts ...Option) *Client {
	c := &Client{url: baseURL, api: baseURL + "/api/v1"}
	for _, o := range opts {
		o(c)
	}
	if c.hc == nil {
		jar, _ := cookiejar.New(nil) // never fails without options
		c.hc = &http.Client{Jar: jar, Timeout: DefaultTimeout}
	}
	return c
}

// Shared header values: the transport only reads them, so one slice serves
// every request and a request allocates none.
var (
	jsonType = []string{"application/json"}
	console  = []string{"sluice/client"}
)

// Do sends in to the API route method path (relative to /api/v1, with its
// query) and decodes a 2xx answer into out. in is encoded as JSON unless it
// is a json.RawMessage, which is sent as it is; nil sends no body. out nil
// discards the answer; out a *[]byte receives it as it is. It returns the
// HTTP status, also with an *Error when the head-end refused the request.
func (c *Client) Do(ctx context.Context, method, path string, in, out any) (int, error) {
	return c.send(ctx, "", method, c.api+path, path, in, out)
}

// DoIdempotent is Do with an Idempotency-Key header (none when key is
// empty): the head-end answers a retry under the same key with the first
// answer instead of acting twice.
func (c *Client) DoIdempotent(ctx context.Context, key, method, path string, in, out any) (int, error) {
	return c.send(ctx, key, method, c.api+path, path, in, out)
}

// Probe asks the head-end's liveness (/healthz) or readiness (/readyz)
// probe, outside the API, and returns what it says.
func (c *Client) Probe(ctx context.Context, path string) (map[string]any, error) {
	var out map[string]any
	_, err := c.send(ctx, "", http.MethodGet, c.url+path, path, nil, &out)
	return out, err
}

// Metrics scrapes the head-end's Prometheus text from /metrics.
func (c *Client) Metrics(ctx context.Context) ([]byte, error) {
	var out []byte
	_, err := c.send(ctx, "", http.MethodGet, c.url+"/metrics", "/metrics", nil, &out)
	return out, err
}

// send makes one request to url; path names it in errors.
func (c *Client) send(ctx context.Context, key, method, url, path string, in, out any) (int, error) {
	var body io.Reader
	switch b := in.(type) {
	case nil:
	case json.RawMessage:
		body = bytes.NewReader(b)
	default:
		js, err := json.Marshal(in)
		if err != nil {
			return 0, fmt.Errorf("%s %s: encode request: %w", method, path, err)
		}
		body = bytes.NewReader(js)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, body)
	if err != nil {
		return 0, err
	}
	if body != nil {
		req.Header["Content-Type"] = jsonType
	}
	if c.auth != nil {
		req.Header["Authorization"] = c.auth
	} else {
		req.Header["X-Sluice-Console"] = console
	}
	if key != "" {
		req.Header["Idempotency-Key"] = []string{key}
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return resp.StatusCode, decodeError(method, path, resp)
	}
	switch o := out.(type) {
	case nil:
	case *[]byte:
		if *o, err = io.ReadAll(resp.Body); err != nil {
			return resp.StatusCode, fmt.Errorf("%s %s: read answer: %w", method, path, err)
		}
	default:
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			return resp.StatusCode, fmt.Errorf("%s %s: decode answer: %w", method, path, err)
		}
	}
	// Read to the end so the connection goes back to the pool.
	io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, nil
}
