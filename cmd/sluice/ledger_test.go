package main

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestLedgerCheckCommand(t *testing.T) {
	dir, cfg := testDataDir(t, 1)
	code, out, errs := runCLI(t, "", nil, "ledger", "check", "--data", dir)
	if code != 0 || !strings.Contains(out, "2 entries checked, 0 violation(s)") {
		t.Fatalf("check: %d %q %q", code, out, errs)
	}
	// An entry that does not balance, written past the application.
	appendLedger(t, openTestStore(t, cfg), "deposit:3", 700, -600)
	code, out, _ = runCLI(t, "", nil, "ledger", "check", "--data", dir)
	if code != 1 || !strings.Contains(out, "deposit:3") || !strings.Contains(out, "3 entries checked, 1 violation(s)") {
		t.Fatalf("unbalanced: %d %q", code, out)
	}
	code, out, _ = runCLI(t, "", nil, "ledger", "check", "--data", dir, "--json")
	var res ledgerResult
	if err := json.Unmarshal([]byte(out), &res); err != nil || code != 1 || res.Entries != 3 || len(res.Violations) != 1 || res.Violations[0].Entry != "deposit:3" {
		t.Fatalf("--json: %d %q %v", code, out, err)
	}
}
