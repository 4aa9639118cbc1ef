package main

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// runCLI runs one command line in-process.
func runCLI(t *testing.T, stdin string, env map[string]string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(context.Background(), stdio{
		in: strings.NewReader(stdin), out: &out, err: &errb,
		getenv: func(k string) string { return env[k] },
	}, args)
	return code, out.String(), errb.String()
}

func TestUsage(t *testing.T) {
	code, out, _ := runCLI(t, "", nil, "--help")
	if code != 0 || !strings.Contains(out, "serve") || !strings.Contains(out, "demo") {
		t.Fatalf("help: %d %q", code, out)
	}
	if code, _, errs := runCLI(t, "", nil, "frobnicate"); code != 2 || !strings.Contains(errs, "unknown command") {
		t.Fatalf("unknown command: %d %q", code, errs)
	}
	for _, c := range commands() {
		if code, _, errs := runCLI(t, "", nil, c.name, "--help"); code != 0 || !strings.Contains(errs, "Usage: sluice "+c.name) {
			t.Errorf("%s --help: %d %q", c.name, code, errs)
		}
	}
}

func TestVersion(t *testing.T) {
	code, out, _ := runCLI(t, "", nil, "version")
	if code != 0 || !strings.HasPrefix(out, "sluice ") {
		t.Fatalf("version: %d %q", code, out)
	}
}

func TestBadConfigIsOneLineNamingTheKey(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		args []string
		env  map[string]string
		key  string
	}{
		{[]string{"serve", "--listen", "nonsense"}, nil, "listen"},
		{[]string{"serve", "--data", dir, "--db-driver", "oracle"}, nil, "database.driver"},
		{[]string{"migrate", "--data", dir}, map[string]string{"SLUICE_DATABASE_MAX_CONNS": "-3"}, "database.max_conns"},
		{[]string{"serve", "--data", dir, "--mqtt-listen", "x"}, nil, "mqtt.listen"},
	}
	for _, c := range cases {
		code, _, errs := runCLI(t, "", c.env, c.args...)
		if code != 2 {
			t.Errorf("%v: exit %d, want 2", c.args, code)
		}
		lines := strings.Split(strings.TrimSpace(errs), "\n")
		if len(lines) != 1 || !strings.Contains(errs, c.key) {
			t.Errorf("%v: stderr %q is not one line naming %s", c.args, errs, c.key)
		}
	}
}

func TestMigrateCommand(t *testing.T) {
	dir := t.TempDir()
	code, out, errs := runCLI(t, "", nil, "migrate", "--data", dir)
	if code != 0 || !strings.Contains(out, "applied ") || strings.Contains(out, "applied 0 ") {
		t.Fatalf("migrate: %d %q %q", code, out, errs)
	}
	code, out, _ = runCLI(t, "", nil, "migrate", "--data", dir, "--status")
	m := regexp.MustCompile(`sqlite schema at version (\d+) of (\d+)`).FindStringSubmatch(out)
	if code != 0 || m == nil || m[1] != m[2] {
		t.Fatalf("migrate --status: %d %q", code, out)
	}
}

func TestDemo(t *testing.T) {
	code, out, errs := runCLI(t, "", nil, "demo")
	if code != 0 || !strings.Contains(out, "Demo finished") {
		t.Fatalf("demo: %d\n%s\n%s", code, out, errs)
	}
}

// TestServeProcess runs the real binary on an empty data directory, probes
// it, and stops it with SIGTERM as an orchestrator would.
func TestServeProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := filepath.Join(t.TempDir(), "sluice")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	data := filepath.Join(t.TempDir(), "data")
	cmd := exec.Command(bin, "serve", "--data", data, "--listen", "127.0.0.1:0", "--mqtt-listen", "127.0.0.1:0")
	stdout, _ := cmd.StdoutPipe()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	lines := bufio.NewReader(stdout)
	first, err := lines.ReadString('\n')
	if err != nil {
		t.Fatalf("no output: %v\n%s", err, stderr.String())
	}
	url := regexp.MustCompile(`http://[0-9.:]+`).FindString(first)
	if url == "" {
		t.Fatalf("no URL in %q", first)
	}
	rest, _ := lines.ReadString('\n')
	if !strings.Contains(rest, "bootstrap-admin.txt") {
		t.Errorf("first run does not say how to log in: %q", rest)
	}
	fi, err := os.Stat(filepath.Join(data, "bootstrap-admin.txt"))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("bootstrap credential: %v %v", fi, err)
	}
	for _, p := range []string{"/healthz", "/readyz"} {
		resp, err := http.Get(url + p)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("%s = %d %s", p, resp.StatusCode, body)
		}
	}
	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { io.Copy(io.Discard, lines); done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("serve did not exit cleanly on SIGTERM: %v\n%s", err, stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not stop within 30s of SIGTERM")
	}
	if !strings.Contains(stderr.String(), "head-end stopped") {
		t.Errorf("no shutdown log line:\n%s", stderr.String())
	}
}

// A bench run asked for no rounds is refused before anything runs.
func TestBenchRepeatMustBePositive(t *testing.T) {
	for _, n := range []string{"0", "-2"} {
		code, out, errs := runCLI(t, "", nil, "bench", "--repeat", n, "--only", "meter")
		if code != 2 || !strings.Contains(errs, "--repeat") || out != "" {
			t.Errorf("--repeat %s: exit %d, stdout %q, stderr %q", n, code, out, errs)
		}
	}
}
