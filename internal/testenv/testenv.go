// Package testenv decides what a test does when a service it needs (the
// PostgreSQL server, Mosquitto, SoftHSM2, pcscd, Chromium) is missing.
//
// On a developer's machine the test is skipped with the reason. Under CI
// (the CI environment variable is set) it fails instead, so that a broken
// set-up cannot turn the suite green by skipping what it should prove.
package testenv

import (
	"net"
	"os"
	"testing"
	"time"
)

// Missing reports a missing service: skip locally, fail under CI.
func Missing(t testing.TB, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf("required service missing under CI: "+format, args...)
	}
	t.Skipf("service missing: "+format, args...)
}

// RequireTCP reports addr as missing unless something accepts a TCP
// connection there.
func RequireTCP(t testing.TB, addr string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		Missing(t, "%s: %v", addr, err)
		return
	}
	c.Close()
}

// RequireFile reports path as missing unless it exists.
func RequireFile(t testing.TB, path string) {
	t.Helper()
	if _, err := os.Stat(path); err != nil {
		Missing(t, "%v", err)
	}
}
