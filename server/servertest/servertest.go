// Package servertest drives a head-end's HTTP API from tests the way its two
// kinds of caller do: Login makes a Client that is one logged-in console
// session (cookie and console header), WithAPIKey one that is a terminal or
// integration sending Authorization: Bearer <API key> and nothing else, and
// Anonymous one with no credentials at all. All share Do and Must, and Must asserts the exact status a call answers, so a
// test states 201 or 403 rather than "some success" or "some refusal".
// Programs that talk to a head-end use package client instead.
package servertest

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"testing"
)

// Client is one caller of a head-end at URL: a console session (or, without
// one, an anonymous caller), or an API key when key is set.
type Client struct {
	t    testing.TB
	url  string
	key  string
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

// WithAPIKey returns a client that authenticates every call with key at the
// head-end at url (the server's base URL, without /api/v1). Unlike Login it
// makes no call: a key the server refuses shows as 401 on the first one, so
// tests of revoked or foreign keys can use it too. The client keeps no
// cookies and sends no console header, as a terminal does not; a route that
// worked only with them would fail here.
func WithAPIKey(t testing.TB, url, key string) *Client {
	t.Helper()
	if key == "" {
		// An empty key would send "Bearer " and test a malformed header,
		// not an anonymous caller.
		t.Fatal("servertest.WithAPIKey: empty key")
	}
	return &Client{t: t, url: url, key: key, http: &http.Client{}}
}

// Anonymous returns a client with no credentials for the head-end at url:
// no session, no API key. It sends the console's header like a console
// that has not logged in, so that a refusal is about the missing
// credentials; without a session cookie the header changes nothing.
func Anonymous(t testing.TB, url string) *Client {
	return &Client{t: t, url: url, http: &http.Client{}}
}

// Do calls the API (path under /api/v1) with body as JSON, if not nil, and
// returns the status and the response body. A body that is JSON already
// goes as json.RawMessage: a []byte would be marshalled as a base64 string.
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
	if c.key != "" {
		req.Header.Set("Authorization", "Bearer "+c.key)
	} else {
		// The console's header: the server's CSRF defence for cookie sessions.
		req.Header.Set("X-Sluice-Console", "1")
	}
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
// decodes the body into out, if not nil. It returns the body as received,
// for tests that compare answers byte for byte (a retried call, say).
func (c *Client) Must(status int, method, path string, body, out any) []byte {
	c.t.Helper()
	code, b := c.Do(method, path, body)
	if code != status {
		c.t.Fatalf("%s %s = %d, want %d: %s", method, path, code, status, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			c.t.Fatalf("%s %s: %v: %s", method, path, err, b)
		}
	}
	return b
}
