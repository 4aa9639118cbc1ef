package console

import (
	"bytes"
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	"sluice/meter"
)

// A Monday, 10:00 UTC.
var t0 = time.Date(2026, time.March, 2, 10, 0, 0, 0, time.UTC)

func newBench(t *testing.T) *Bench {
	t.Helper()
	ee := meter.NewEEPROM(meter.DefaultEEPROMSize, meter.DefaultPageSize)
	d, err := NewDemo(ee, 4710001)
	if err != nil {
		t.Fatal(err)
	}
	b := &Bench{Storage: ee, Clock: func() time.Time { return t0 }, Demo: d}
	if err := b.Boot(); err != nil {
		t.Fatal(err)
	}
	return b
}

func exec(t *testing.T, b *Bench, line string) string {
	t.Helper()
	var out bytes.Buffer
	if _, err := b.Exec(line, &out); err != nil {
		t.Fatalf("%q: %v", line, err)
	}
	return out.String()
}

func TestBenchSession(t *testing.T) {
	b := newBench(t)
	out := exec(t, b, "vend 2000")
	tok := regexp.MustCompile(`token (\d{20})`).FindStringSubmatch(out)
	if tok == nil {
		t.Fatalf("vend printed %q", out)
	}
	if out := exec(t, b, tok[1]); !strings.Contains(out, "Accept +2000") {
		t.Fatalf("typing the token: %q", out)
	}
	if out := exec(t, b, tok[1]); !strings.Contains(out, "Reject used") {
		t.Fatalf("typing it again: %q", out)
	}
	if out := exec(t, b, "flow 1500 0"); !strings.Contains(out, "credit 500 L") || !strings.Contains(out, "low credit") {
		t.Fatalf("flow: %q", out)
	}
	if out := exec(t, b, "*2"); !strings.Contains(out, "Emergency 500") {
		t.Fatalf("emergency: %q", out)
	}
	exec(t, b, "magnet")
	if out := exec(t, b, "power"); !strings.Contains(out, "tamper magnet") {
		t.Fatalf("after a power cycle: %q", out)
	}
	if out := exec(t, b, "topup 3000"); !strings.Contains(out, "loaded: +3000, credit 3500") {
		t.Fatalf("topup: %q", out)
	}
	if out := exec(t, b, "wait 9h"); !strings.Contains(out, "19:00:00") {
		t.Fatalf("wait: %q", out)
	}
	if out := exec(t, b, "events"); !strings.Contains(out, "token-accepted") || !strings.Contains(out, "voucher-accepted") || !strings.Contains(out, "tamper") {
		t.Fatalf("events: %q", out)
	}
	if out := exec(t, b, "dump"); !strings.Contains(out, "00000000  53 4a") {
		t.Fatalf("dump: %.80q", out)
	}
	for _, bad := range []string{"flow x", "wait -1h", "voucher zz", "frobnicate"} {
		if _, err := b.Exec(bad, &bytes.Buffer{}); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestRunAndPersist(t *testing.T) {
	b := newBench(t)
	var saved []byte
	b.Save = func(img []byte) error { saved = img; return nil }
	var out bytes.Buffer
	if err := b.Run(context.Background(), strings.NewReader("topup 1000\n*1\nquit\n"), &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "Credit 1000 L") {
		t.Fatalf("session output %q", out.String())
	}
	// The saved image boots into the same meter, and the demo vending point
	// continues its voucher sequence.
	ee, err := meter.LoadEEPROM(saved, meter.DefaultPageSize)
	if err != nil {
		t.Fatal(err)
	}
	m, err := meter.Boot(ee, meter.Deps{})
	if err != nil {
		t.Fatal(err)
	}
	d, err := OpenDemo(m, 0)
	if err != nil {
		t.Fatal(err)
	}
	b2 := &Bench{Storage: ee, Clock: func() time.Time { return t0 }, Demo: d}
	if err := b2.Boot(); err != nil {
		t.Fatal(err)
	}
	if out := exec(t, b2, "topup 500"); !strings.Contains(out, "voucher 2 loaded: +500, credit 1500") {
		t.Fatalf("after reload: %q", out)
	}
}

// counterRand is a deterministic random source for the card sessions.
type counterRand struct{ n byte }

func (r *counterRand) Read(p []byte) (int, error) {
	for i := range p {
		r.n++
		p[i] = r.n * 37
	}
	return len(p), nil
}

func TestBenchCard(t *testing.T) {
	b := newBench(t)
	b.Deps.Rand = &counterRand{}
	if err := b.Boot(); err != nil {
		t.Fatal(err)
	}
	path := t.TempDir() + "/card.json"
	if out := exec(t, b, "sellcard "+path+" 1500"); !strings.Contains(out, "issued card") || !strings.Contains(out, "voucher 1 for 1500 L") {
		t.Fatalf("sellcard: %q", out)
	}
	exec(t, b, "sellcard "+path+" 500")
	if out := exec(t, b, "card "+path); !strings.Contains(out, "voucher 2: loaded, +500, credit 2000") {
		t.Fatalf("card: %q", out)
	}
	if out := exec(t, b, "card "+path); !strings.Contains(out, "nothing to load") {
		t.Fatalf("card again: %q", out)
	}
	if sn := b.Meter().Snapshot(); sn.Credit != 2000 {
		t.Fatalf("credit %d", sn.Credit)
	}
}
