// Package servertest drives a head-end's HTTP API from tests the way the
// operator console does: each Client is one logged-in console session, and
// Must asserts the exact status a call answers, so a test states 201 or
// 403 rather than "some success" or "some refusal". Programs that talk to a
// head-end use package client instead.
package servertest

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"testing"
)

// Client is one console session against a head-end at URL.
type Client struct {
	t    testing.TB
	url  string
	http *http.Client
}

// Login opens a console session for user at the head-end at url (the
// server's base URL, without /api/v1), failing the test if it is refused.
func Login(t testing.TB, url, user, password string) *Client {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	c := &Client{t: t, url: url, http: &http.Client{Jar: jar}}
	c.Must(http.StatusOK, "POST", "/auth/login", map[string]string{"username": user, "password": password}, nil)
	return c
}

// Do calls the API (path under /api/v1) with body as JSON, if not nil, and
// returns the status and the response body.
func (c *Client) Do(method, path string, body any) (int, []byte) {
	c.t.Helper()
	var rd io.Reader
	if body != nil {
		js, err := json.Marshal(body)
		if err != nil {
			c.t.Fatal(err)
		}
		rd = bytes.NewReader(js)
	}
	req, err := http.NewRequest(method, c.url+"/api/v1"+path, rd)
	if err != nil {
		c.t.Fatal(err)
	}
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	// The console's header: the server's CSRF defence for cookie sessions.
	req.Header.Set("X-Sluice-Console", "1")
	resp, err := c.http.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatal(err)
	}
	return resp.StatusCode, b
}

// Must calls the API, fails the test unless the answer has status, and
// decodes the body into out, if not nil.
func (c *Client) Must(status int, method, path string, body, out any) {
	c.t.Helper()
	code, b := c.Do(method, path, body)
	if code != status {
		c.t.Fatalf("%s %s = %d, want %d: %s", method, path, code, status, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			c.t.Fatal(err)
		}
	}
}
