package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"sluice/store"
)

// The factory flow from the command line: the meter makes its request, the
// head-end issues the record of the registered meter from its own key
// manager and database, the meter applies it; the meter row then names the
// counter and the root the meter's keys come from, and an unregistered
// meter gets nothing.
func TestMeterProvisionCLI(t *testing.T) {
	dir, db := campaignDataDir(t, 0)
	ctx := context.Background()
	err := db.Tx(ctx, func(tx store.Tx) error {
		_, err := tx.Meters().Create(ctx, store.Meter{Number: "41234567", Kind: store.MeterAMI, TariffCode: "T"})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	data := "--data=" + dir
	env := map[string]string{"USER": "factory"}
	code, anchor, errs := runCLI(t, "", env, "keys", "pubkey", data, "--format", "hex", "management-signing")
	if code != 0 {
		t.Fatalf("keys pubkey: %d %s", code, errs)
	}
	anchorFile := filepath.Join(t.TempDir(), "anchor.hex")
	writeFile(t, anchorFile, strings.TrimSpace(anchor))
	work := t.TempDir()
	flash, req, rec := filepath.Join(work, "meter.img"), filepath.Join(work, "req.hex"), filepath.Join(work, "rec.hex")
	// factoryRequest sets up a blank meter image and writes its request.
	factoryRequest := func(flash, id, out string) {
		t.Helper()
		if code, _, errs := runCLI(t, "", env, "meter", "provision", "request", "--flash", flash, "--id", id, "--model", "SLW-15", "--anchor", anchorFile, "--out", out); code != 0 {
			t.Fatalf("request for meter %s: %d %s", id, code, errs)
		}
	}
	factoryRequest(flash, "41234567", req)
	code, out, errs := runCLI(t, "", env, "meter", "provision", "issue", data, "--request", req, "--out", rec)
	if code != 0 || !strings.Contains(out, "record 1 (keys under meter-root@1") {
		t.Fatalf("issue: %d %q %s", code, out, errs)
	}
	if code, out, errs := runCLI(t, "", env, "meter", "provision", "apply", "--flash", flash, "--record", rec); code != 0 {
		t.Fatalf("apply: %d %q %s", code, out, errs)
	}
	var m store.Meter
	var audited bool
	err = db.Read(ctx, func(tx store.Tx) error {
		var err error
		if m, err = tx.Meters().ByNumber(ctx, "41234567"); err != nil {
			return err
		}
		// Not sealed yet: no head-end is running to seal it.
		pending, err := tx.Audit().Pending(ctx, 1000)
		for _, r := range pending {
			audited = audited || (r.Action == "meter.provision" && r.Actor == "cli:factory")
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if m.ProvisionCounter != 1 || m.RootVersion != 1 || !audited {
		t.Fatalf("meter row counter %d root %d, audited %v", m.ProvisionCounter, m.RootVersion, audited)
	}

	// The same meter number from another board is refused until an
	// operator says the board was replaced.
	clone, creq := filepath.Join(work, "clone.img"), filepath.Join(work, "clone.hex")
	factoryRequest(clone, "41234567", creq)
	crec := filepath.Join(work, "clone-rec.hex")
	if code, _, errs := runCLI(t, "", env, "meter", "provision", "issue", data, "--request", creq, "--out", crec); code == 0 || !strings.Contains(errs, "another board") {
		t.Fatalf("another board: %d %s", code, errs)
	}
	if code, out, errs := runCLI(t, "", env, "meter", "provision", "issue", data, "--replace-board", "--request", creq, "--out", crec); code != 0 || !strings.Contains(out, "record 2") {
		t.Fatalf("replaced board: %d %q %s", code, out, errs)
	}

	other := filepath.Join(work, "other.img")
	oreq := filepath.Join(work, "other.hex")
	factoryRequest(other, "41234568", oreq)
	code, _, errs = runCLI(t, "", env, "meter", "provision", "issue", data, "--request", oreq, "--out", filepath.Join(work, "other-rec.hex"))
	if code == 0 || !strings.Contains(errs, "not registered") {
		t.Fatalf("unregistered meter: %d %s", code, errs)
	}
}

func writeFile(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
}
