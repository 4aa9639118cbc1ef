package headend

import (
	"context"
	"encoding/json"
	"log/slog"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"sluice/server/servertest"
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

	admin := servertest.Login(t, h.URL(), "admin", h.BootstrapPassword)
	admin.Must(200, "POST", "/auth/password", map[string]string{"current_password": h.BootstrapPassword, "new_password": "administrator password"}, nil)
	admin.Must(201, "POST", "/vendors", json.RawMessage(`{"code":"V1","name":"V1","daily_limit_cents":100}`), nil)
	callers := map[string]func(method, path string, body any) (int, []byte){
		"admin":     admin.Do,
		"anonymous": servertest.Anonymous(t, h.URL()).Do,
	}
	for _, role := range []string{"supervisor", "vendor", "engineer", "auditor"} {
		body := map[string]string{"username": role + "1", "display_name": role, "role": role}
		if role == "vendor" {
			body["vendor"] = "V1"
		}
		var created struct {
			OneTimePassword string `json:"one_time_password"`
		}
		admin.Must(201, "POST", "/operators", body, &created)
		c := servertest.Login(t, h.URL(), role+"1", created.OneTimePassword)
		c.Must(200, "POST", "/auth/password", map[string]string{"current_password": created.OneTimePassword, "new_password": "a password for " + role}, nil)
		callers[role] = c.Do
	}

	code, doc := servertest.Anonymous(t, h.URL()).Do("GET", "/openapi.json", nil)
	if code != 200 {
		t.Fatalf("openapi.json without credentials: %d %.200s", code, doc)
	}
	var spec struct {
		Paths map[string]map[string]struct {
			Roles    []string `json:"x-roles"`
			Security *[]any   `json:"security"`
		} `json:"paths"`
	}
	if err := json.Unmarshal(doc, &spec); err != nil {
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
			target, ok := strings.CutPrefix(param.ReplaceAllString(path, "1"), "/api/v1")
			if !ok {
				t.Errorf("%s %s: not under /api/v1", method, path)
				continue
			}
			var body any // an untyped nil sends no body; a nil RawMessage would send null
			if method != "get" && method != "delete" {
				body = json.RawMessage("{}")
			}
			for who, call := range callers {
				code, resp := call(strings.ToUpper(method), target, body)
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
					if code == 401 || code == 403 && roleRefused(string(resp)) {
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
	t.Logf("%d operations x %d callers checked", ops, len(callers))
}

// roleRefused recognises the server's answer to a role not allowed.
func roleRefused(body string) bool { return strings.Contains(body, " may not ") }
