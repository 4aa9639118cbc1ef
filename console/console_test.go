package console

import (
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func get(t *testing.T, h http.Handler, method, path string) *http.Response {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, path, nil))
	return rec.Result()
}

func TestEveryResponseCarriesTheSecurityHeaders(t *testing.T) {
	h := Handler()
	for _, p := range []string{"/", "/index.html", "/app.css", "/js/app.js", "/favicon.svg", "/no/such/page"} {
		res := get(t, h, "GET", p)
		if res.StatusCode != 200 {
			t.Errorf("%s: status %d", p, res.StatusCode)
		}
		csp := res.Header.Get("Content-Security-Policy")
		if csp != CSP {
			t.Errorf("%s: CSP %q", p, csp)
		}
		if res.Header.Get("X-Content-Type-Options") != "nosniff" || res.Header.Get("X-Frame-Options") != "DENY" {
			t.Errorf("%s: missing nosniff or frame denial: %v", p, res.Header)
		}
	}
	if strings.Contains(CSP, "unsafe-inline") || strings.Contains(CSP, "unsafe-eval") || strings.Contains(CSP, "http") {
		t.Fatalf("CSP allows inline code, eval or another host: %s", CSP)
	}
}

func TestUnknownPathsGetTheApplicationUncached(t *testing.T) {
	res := get(t, Handler(), "GET", "/meters/600727000000000009")
	body, _ := io.ReadAll(res.Body)
	if !strings.Contains(string(body), `<script type="module" src="js/app.js">`) {
		t.Fatalf("not the application page: %.200s", body)
	}
	if res.Header.Get("Cache-Control") != "no-store" || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("headers %v", res.Header)
	}
	if ct := get(t, Handler(), "GET", "/js/app.js").Header.Get("Content-Type"); !strings.Contains(ct, "javascript") {
		t.Fatalf("app.js served as %q; module scripts need a JavaScript type", ct)
	}
}

func TestOnlyReads(t *testing.T) {
	if res := get(t, Handler(), "POST", "/"); res.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("POST /: %d", res.StatusCode)
	}
	if res := get(t, Handler(), "HEAD", "/"); res.StatusCode != 200 {
		t.Fatalf("HEAD /: %d", res.StatusCode)
	}
}

// TestNoInlineCodeInAssets keeps the assets compatible with the CSP: no
// inline scripts or handlers, no style attributes, nothing from elsewhere.
func TestNoInlineCodeInAssets(t *testing.T) {
	var names []string
	fs.WalkDir(assets, "assets", func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && (strings.HasSuffix(p, ".js") || strings.HasSuffix(p, ".html") || strings.HasSuffix(p, ".css")) {
			names = append(names, p)
		}
		return err
	})
	if len(names) < 5 {
		t.Fatalf("assets %v", names)
	}
	for _, name := range names {
		b, err := assets.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		s := string(b)
		for _, bad := range []string{"<script>", " onclick=\"", " style=\"", "innerHTML", "eval(", "new Function", "http://", "https://", "@import", "setAttribute(\"style\""} {
			if strings.Contains(s, bad) && !(bad == "http://" && strings.Contains(s, `"http://www.w3.org/2000/svg"`) && strings.Count(s, "http://") == strings.Count(s, "http://www.w3.org/2000/svg")) {
				t.Errorf("%s contains %q", name, bad)
			}
		}
	}
}

func TestMountSendsAPIAndProbesToTheAPI(t *testing.T) {
	api := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Header().Set("X-From", "api") })
	h := Mount(api)
	for p, want := range map[string]string{"/api/v1/auth/me": "api", "/healthz": "api", "/readyz": "api", "/metrics": "api", "/": "", "/vend": "", "/apix": ""} {
		if got := get(t, h, "GET", p).Header.Get("X-From"); got != want {
			t.Errorf("%s went to %q, want %q", p, got, want)
		}
	}
}
