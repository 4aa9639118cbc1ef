// Package console is the operator web console: a single-page application of
// plain HTML, CSS and JavaScript embedded in the binary, served next to the
// JSON API by `sluice serve`.
//
// The console has no privileges of its own. It talks only to the public API
// under /api/v1 with the operator's session cookie, so every rule the API
// enforces (roles, dual control, float checks, idempotent vending) holds for
// the console too, and nothing the console shows is reachable any other way.
//
// Pages (assets/js): login with the first-run password change (app.js);
// vend, receipt and reprint (vend.js); meters, customers and the meter page
// with its daily chart drawn as inline SVG (meter.js, chart.js); dashboard
// (dashboard.js); alerts and key-change campaigns (ops.js); engineering
// requests under dual control (engineering.js); reports (reports.js);
// operators, API keys and the audit log (admin.js). Which pages and buttons
// an operator sees comes from the API's own OpenAPI document (x-roles), so
// the console follows the server's role rules and shows routes other
// packages contribute as soon as the head-end serves them; a page whose API
// is missing says "no data yet" instead of failing.
//
// Security choices:
//
//   - Every page is served with a Content-Security-Policy that allows
//     scripts, styles, images and connections from the console's own origin
//     only: no inline script, no eval, no third-party host. The code builds
//     the DOM with textContent (never innerHTML with data), so a customer
//     name cannot become markup.
//   - The session cookie is HttpOnly and SameSite=Strict (set by the API);
//     every write sends the X-Sluice-Console header, which the API requires
//     of cookie-authenticated writes so that no cross-site form can make one.
//   - The console cannot be framed (frame-ancestors 'none',
//     X-Frame-Options), does not leak URLs (Referrer-Policy no-referrer),
//     and its HTML is never cached, so a new binary's console is what
//     operators get after an upgrade.
//   - A purchase is issued with an Idempotency-Key made by the browser
//     (crypto.randomUUID) before the first attempt and kept until the sale
//     is settled: a retry after a network error returns the same tokens
//     instead of selling twice.
package console

import (
	"embed"
	"io/fs"
	"net/http"
	"path"
	"strings"
)

//go:embed assets
var assets embed.FS

// CSP is the Content-Security-Policy of every console response.
const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; font-src 'self'; manifest-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// Handler serves the console's assets. Paths that name no asset get the
// application's page (index.html), because the application routes in the
// browser (/#/vend, /#/meters/...).
func Handler() http.Handler {
	sub, err := fs.Sub(assets, "assets")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	files := http.FileServerFS(sub)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		h := w.Header()
		h.Set("Content-Security-Policy", CSP)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		h.Set("Permissions-Policy", "camera=(), microphone=(), geolocation=(), payment=()")
		name := strings.TrimPrefix(path.Clean(r.URL.Path), "/")
		if name == "" || name == "index.html" || !exists(sub, name) {
			h.Set("Cache-Control", "no-store")
			serveIndex(w, r, sub)
			return
		}
		// Assets are small and change with the binary; revalidate every time
		// so an upgrade never mixes old scripts with a new page.
		h.Set("Cache-Control", "no-cache")
		r2 := r.Clone(r.Context())
		r2.URL.Path = "/" + name
		files.ServeHTTP(w, r2)
	})
}

func exists(fsys fs.FS, name string) bool {
	st, err := fs.Stat(fsys, name)
	return err == nil && !st.IsDir()
}

func serveIndex(w http.ResponseWriter, r *http.Request, fsys fs.FS) {
	b, err := fs.ReadFile(fsys, "index.html")
	if err != nil {
		http.Error(w, "console missing from this build", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		w.Write(b)
	}
}

// Mount returns a handler that sends the API and the probes (/api/,
// /healthz, /readyz, /metrics) to api and everything else to the console.
// It is how `sluice serve` puts the console at / next to the API:
//
//	Handler: console.Mount(srv.Handler()),
func Mount(api http.Handler) http.Handler {
	ui := Handler()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := r.URL.Path
		if strings.HasPrefix(p, "/api/") || p == "/api" || p == "/healthz" || p == "/readyz" || p == "/metrics" {
			api.ServeHTTP(w, r)
			return
		}
		ui.ServeHTTP(w, r)
	})
}
