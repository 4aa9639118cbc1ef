package headend

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestEveryRouteHasItsRoleRule walks every operation of the served OpenAPI
// document (the head-end's own routes and those other packages contribute)
// with every role and with no credentials, and checks each answer against
// the operation's x-roles: 401 without credentials, 403 for a role not
// listed, neither for a role listed.
func TestEveryRouteHasItsRoleRule(t *testing.T) {
	ctx := context.Background()
	h, err := Start(ctx, testConfig(t, filepath.Join(t.TempDir(), "data")), slog.New(slog.DiscardHandler), opts)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Shutdown(ctx)

	call := func(c *http.Client, method, path, body string) (int, string) {
		t.Helper()
		var rd io.Reader
		if body != "" {
			rd = strings.NewReader(body)
		}
		req, _ := http.NewRequest(method, h.URL()+path, rd)
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		req.Header.Set("X-Sluice-Console", "1")
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	login := func(user, pass string) *http.Client {
		jar, _ := cookiejar.New(nil)
		c := &http.Client{Jar: jar}
		if code, b := call(c, "POST", "/api/v1/auth/login", `{"username":"`+user+`","password":"`+pass+`"}`); code != 200 {
			t.Fatalf("login %s: %d %s", user, code, b)
		}
		return c
	}
	jsonBody := func(v any) string { b, _ := json.Marshal(v); return string(b) }

	admin := login("admin", h.BootstrapPassword)
	call(admin, "POST", "/api/v1/auth/password", jsonBody(map[string]string{"current_password": h.BootstrapPassword, "new_password": "administrator password"}))
	if code, b := call(admin, "POST", "/api/v1/vendors", `{"code":"V1","name":"V1","daily_limit_cents":100}`); code != 201 {
		t.Fatalf("vendor: %d %s", code, b)
	}
	clients := map[string]*http.Client{"admin": admin, "anonymous": {}}
	for _, role := range []string{"supervisor", "vendor", "engineer", "auditor"} {
		body := map[string]string{"username": role + "1", "display_name": role, "role": role}
		if role == "vendor" {
			body["vendor"] = "V1"
		}
		code, b := call(admin, "POST", "/api/v1/operators", jsonBody(body))
		if code != 201 {
			t.Fatalf("operator %s: %d %s", role, code, b)
		}
		var created struct {
			OneTimePassword string `json:"one_time_password"`
		}
		json.Unmarshal([]byte(b), &created)
		c := login(role+"1", created.OneTimePassword)
		call(c, "POST", "/api/v1/auth/password", jsonBody(map[string]string{"current_password": created.OneTimePassword, "new_password": "a password for " + role}))
		clients[role] = c
	}

	_, doc := call(&http.Client{}, "GET", "/api/v1/openapi.json", "")
	var spec struct {
		Paths map[string]map[string]struct {
			Roles    []string `json:"x-roles"`
			Security *[]any   `json:"security"`
		} `json:"paths"`
	}
	if err := json.Unmarshal([]byte(doc), &spec); err != nil {
		t.Fatal(err)
	}
	param := regexp.MustCompile(`\{[a-z_]+\}`)
	ops := 0
	for path, methods := range spec.Paths {
		for method, op := range methods {
			ops++
			public := op.Security != nil && len(*op.Security) == 0
			if !public && len(op.Roles) == 0 {
				t.Errorf("%s %s: neither public nor any role", method, path)
				continue
			}
			if strings.HasSuffix(path, "/auth/logout") {
				continue // would end the sessions the walk rides on
			}
			target := param.ReplaceAllString(path, "1")
			body := ""
			if method != "get" && method != "delete" {
				body = "{}"
			}
			for who, c := range clients {
				code, resp := call(c, strings.ToUpper(method), target, body)
				switch {
				case public:
					if code == 401 || code == 403 {
						t.Errorf("%s %s as %s: %d on a public route", method, path, who, code)
					}
				case who == "anonymous":
					if code != 401 {
						t.Errorf("%s %s without credentials: %d, want 401: %.200s", method, path, code, resp)
					}
				case slices.Contains(op.Roles, who):
					// A listed role may still meet a business rule that answers
					// 403 (a cashier who is not a payment channel); never the
					// role refusal itself.
					if code == 401 || code == 403 && roleRefused(resp) {
						t.Errorf("%s %s as %s: %d, but the role is allowed: %.200s", method, path, who, code, resp)
					}
				default:
					if code != 403 {
						t.Errorf("%s %s as %s: %d, want 403: %.200s", method, path, who, code, resp)
					}
				}
			}
		}
	}
	if ops < 40 {
		t.Fatalf("only %d operations documented", ops)
	}
	t.Logf("%d operations x %d callers checked", ops, len(clients))
}

// roleRefused recognises the server's answer to a role not allowed.
func roleRefused(body string) bool { return strings.Contains(body, " may not ") }
