package attack

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"

	"sluice/meter"
	"sluice/voucher"
)

// pendingTargets are the attacks whose targets are not built yet. An attack
// leaves this list when its target lands; nothing else may be pending.
// Every target has landed: the list is empty, and every attack must be
// defeated.
var pendingTargets []string

// TestLab plays every attack and requires each to be defeated (or pending
// on a target that does not exist yet), each verdict resting on at least
// one observed case.
func TestLab(t *testing.T) {
	reports, err := Run(context.Background(), Options{Seed: 7})
	if err != nil {
		t.Fatal(err)
	}
	if len(reports) != len(Attacks()) {
		t.Fatalf("%d reports for %d attacks", len(reports), len(Attacks()))
	}
	for _, r := range reports {
		switch {
		case r.Outcome == Pending && slices.Contains(pendingTargets, r.ID):
		case r.Outcome != Defeated:
			t.Errorf("attack %s (%s): %s: %s", r.ID, r.Name, r.Outcome, r.Evidence)
		}
		if len(r.Cases) == 0 || r.Evidence == "" {
			t.Errorf("attack %s has no evidence", r.ID)
		}
		if r.Outcome == Defeated && len(r.Measurements) == 0 {
			t.Errorf("attack %s was judged without a single measurement", r.ID)
		}
		t.Logf("%s %s (%.2fs): %s", r.ID, r.Outcome, r.Seconds, r.Evidence)
	}
	if !AllDefeated(reports) {
		t.Error("AllDefeated is false")
	}
	var table bytes.Buffer
	if err := WriteTable(&table, reports, 7); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(table.String(), "PASS") || (len(pendingTargets) > 0) != strings.Contains(table.String(), "PENDING") {
		t.Errorf("table does not show the verdict, or shows pending attacks that should not be:\n%s", table.String())
	}
}

// TestHarnessReportsSucceeded proves the lab can say "succeeded": the same
// attacks against deliberately weakened meters, built inside the test, must
// be reported as successful, or a broken harness could pass silently.
func TestHarnessReportsSucceeded(t *testing.T) {
	const seed = 11
	attacker := attackerKey(&Lab{Seed: seed})
	cases := []struct {
		name   string
		id     string
		weaken func(p *meter.Provision)
	}{
		{"keypad without lockout", "8", func(p *meter.Provision) { p.Params.LockoutBase = 0 }},
		{"meter trusting the attacker's key for credit", "1", func(p *meter.Provision) {
			p.Keys.Trusted = append(p.Keys.Trusted, voucher.TrustedKey{Role: voucher.RoleCredit, Public: attacker.Public().(ed25519.PublicKey)})
		}},
		{"meter trusting the attacker's key for engineering", "4", func(p *meter.Provision) {
			p.Keys.Trusted = append(p.Keys.Trusted, voucher.TrustedKey{Role: voucher.RoleManagement, Public: attacker.Public().(ed25519.PublicKey)})
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			reports, err := Run(context.Background(), Options{Seed: seed, Only: []string{c.id}, Weaken: c.weaken})
			if err != nil {
				t.Fatal(err)
			}
			r := reports[0]
			if r.Outcome != Succeeded {
				t.Fatalf("attack %s against a weakened meter: %s: %s", c.id, r.Outcome, r.Evidence)
			}
			if AllDefeated(reports) {
				t.Fatal("AllDefeated with a succeeded attack")
			}
			t.Logf("%s", r.Evidence)
		})
	}
}

func TestJudge(t *testing.T) {
	d := Case{Outcome: Defeated}
	for _, c := range []struct {
		cases []Case
		want  Outcome
	}{
		{nil, Error},
		{[]Case{d}, Defeated},
		{[]Case{d, {Outcome: Succeeded}}, Succeeded},
		{[]Case{d, {Outcome: Pending}}, Pending},
		{[]Case{{Outcome: Pending}, {Outcome: Succeeded}}, Succeeded},
		{[]Case{{Outcome: Reproduced}}, Error}, // a demonstration alone proves no defence
		{[]Case{{Outcome: Reproduced}, d}, Defeated},
		{[]Case{d, {Outcome: Error}}, Error},
	} {
		if got := judge(c.cases); got != c.want {
			t.Errorf("judge(%v) = %s, want %s", c.cases, got, c.want)
		}
	}
	if AllDefeated([]Report{{Outcome: Pending}}) {
		t.Error("a run in which nothing was defeated passed")
	}
	if !AllDefeated([]Report{{Outcome: Defeated}, {Outcome: Pending}}) {
		t.Error("pending attacks failed the run")
	}
	if AllDefeated([]Report{{Outcome: Defeated}, {Outcome: Error}}) {
		t.Error("an attack that could not run passed")
	}
}

// TestDeterministic: one seed, one story (for attacks whose evidence holds
// no timing).
func TestDeterministic(t *testing.T) {
	run := func() string {
		r, err := Run(context.Background(), Options{Seed: 3, Only: []string{"1", "4", "9", "11"}})
		if err != nil {
			t.Fatal(err)
		}
		var ev []string
		for _, x := range r {
			ev = append(ev, x.Evidence)
		}
		return strings.Join(ev, "\n")
	}
	if a, b := run(), run(); a != b {
		t.Fatalf("two runs with one seed differ:\n%s\n---\n%s", a, b)
	}
}

func TestOnly(t *testing.T) {
	if _, err := Run(context.Background(), Options{Only: []string{"99"}}); !errors.Is(err, ErrUnknownAttack) {
		t.Fatalf("unknown id: %v", err)
	}
}

func TestJSON(t *testing.T) {
	reports, err := Run(context.Background(), Options{Seed: 5, Only: []string{"13", "11b"}})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := WriteJSON(&buf, reports); err != nil {
		t.Fatal(err)
	}
	var got []map[string]any
	if err := json.Unmarshal(buf.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("%d objects", len(got))
	}
	for _, o := range got {
		for _, k := range []string{"id", "name", "outcome", "evidence"} {
			if _, ok := o[k]; !ok {
				t.Errorf("object %v lacks %q", o["id"], k)
			}
		}
	}
	if got[0]["outcome"] != "defeated" || got[1]["outcome"] != "defeated" {
		t.Errorf("outcomes %v, %v", got[0]["outcome"], got[1]["outcome"])
	}
}
