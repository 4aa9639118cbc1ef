package servertest

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestCallersSendTheirOwnCredentials: a server's CSRF and authentication
// tests rest on which headers each kind of client sends, so they are pinned
// here rather than assumed.
func TestCallersSendTheirOwnCredentials(t *testing.T) {
	type seen struct {
		Auth, Console, Cookie, Body string
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/v1/auth/login", func(w http.ResponseWriter, r *http.Request) {
		http.SetCookie(w, &http.Cookie{Name: "session", Value: "s1", Path: "/"})
	})
	mux.HandleFunc("/api/v1/echo", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var ck string
		if c, err := r.Cookie("session"); err == nil {
			ck = c.Value
		}
		json.NewEncoder(w).Encode(seen{r.Header.Get("Authorization"), r.Header.Get("X-Sluice-Console"), ck, string(b)})
	})
	ts := httptest.NewServer(mux)
	defer ts.Close()

	var got seen
	WithAPIKey(t, ts.URL, "slk_test").Must(200, "POST", "/echo", json.RawMessage(`{"a":1}`), &got)
	if got != (seen{Auth: "Bearer slk_test", Body: `{"a":1}`}) {
		t.Errorf("API-key client sent %+v", got)
	}
	Anonymous(t, ts.URL).Must(200, "POST", "/echo", nil, &got)
	if got != (seen{Console: "1"}) {
		t.Errorf("anonymous caller sent %+v", got)
	}
	Login(t, ts.URL, "admin", "pw").Must(200, "POST", "/echo", nil, &got)
	if got != (seen{Console: "1", Cookie: "s1"}) {
		t.Errorf("console session sent %+v", got)
	}
}
