package server

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"sluice/store/storetest"
)

func get(t *testing.T, h http.Handler, path string) (int, map[string]any) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
	var body map[string]any
	if strings.HasPrefix(rec.Header().Get("Content-Type"), "application/json") {
		if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
			t.Fatalf("%s: bad JSON %q", path, rec.Body.String())
		}
	}
	return rec.Code, body
}

func TestProbes(t *testing.T) {
	for _, b := range storetest.Backends() {
		t.Run(b.Name, func(t *testing.T) {
			db := b.Open(t, true)
			h := New(Config{Store: db, Version: "test"}).Handler()
			if code, body := get(t, h, "/healthz"); code != 200 || body["status"] != "ok" {
				t.Fatalf("healthz = %d %v", code, body)
			}
			if code, body := get(t, h, "/readyz"); code != 503 || !strings.Contains(body["reason"].(string), "not up to date") {
				t.Fatalf("readyz before migrations = %d %v, want 503 naming the schema", code, body)
			}
			if _, err := db.Migrate(context.Background()); err != nil {
				t.Fatal(err)
			}
			if code, body := get(t, h, "/readyz"); code != 200 || body["database"] != b.Name {
				t.Fatalf("readyz after migrations = %d %v", code, body)
			}
			db.Close()
			if code, _ := get(t, h, "/readyz"); code != 503 {
				t.Fatalf("readyz with the database closed = %d, want 503", code)
			}
		})
	}
}

func TestMetrics(t *testing.T) {
	db := storetest.OpenSQLite(t, false)
	h := New(Config{Store: db}).Handler()
	get(t, h, "/healthz")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if !strings.Contains(rec.Body.String(), `sluice_http_requests_total{code="2xx",route="GET /healthz"} 1`) {
		t.Fatalf("metrics lack the healthz request:\n%s", rec.Body.String())
	}
}
