package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"sluice/auditlog"
	"sluice/config"
	"sluice/headend"
	"sluice/keys"
	"sluice/kms"
	"sluice/kms/filekms"
	"sluice/store"
	"sluice/store/sqlstore"
)

const testPassphrase = "test passphrase"

// testDataDir is a data directory as `sluice serve` leaves it: a migrated
// SQLite store, a sealed key store holding the meter root with its
// passphrase file, sealed audit records and a balanced ledger.
func testDataDir(t *testing.T, records int) (dir string, cfg config.Config) {
	t.Helper()
	dir = t.TempDir()
	cfg = loadTestConfig(t, dir)
	if err := os.WriteFile(cfg.KMS.PassphraseFile, []byte(testPassphrase+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	km, err := filekms.Create(cfg.KMS.File, []byte(testPassphrase), filekms.Options{Time: 1, MemoryKiB: 64, Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := km.CreateKey(ctx, keys.MeterRoot, kms.AES256); err != nil {
		t.Fatal(err)
	}
	anchors, err := auditlog.NewKMSAnchors(ctx, km)
	if err != nil {
		t.Fatal(err)
	}
	db := openTestStore(t, cfg)
	appendAudit(t, db, 1, records)
	if _, err := auditlog.Seal(ctx, db, anchors, 0); err != nil {
		t.Fatal(err)
	}
	km.Close()
	appendLedger(t, db, "deposit:1", 1000, -1000)
	appendLedger(t, db, "deposit:2", 500, -500)
	return dir, cfg
}

func loadTestConfig(t *testing.T, dir string) config.Config {
	t.Helper()
	cfg, err := config.Load("", func(string) string { return "" }, []config.Override{{Key: "data_dir", Value: dir, Source: "test"}})
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func openTestStore(t *testing.T, cfg config.Config) *sqlstore.DB {
	t.Helper()
	db, err := headend.OpenStore(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if _, err := db.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	return db
}

func appendAudit(t *testing.T, db store.Store, first, n int) {
	t.Helper()
	at := time.Date(2026, 11, 25, 8, 0, 0, 0, time.UTC)
	for i := first; i < first+n; i++ {
		err := db.Tx(context.Background(), func(tx store.Tx) error {
			return tx.Audit().Append(context.Background(), store.AuditRecord{
				At: at.Add(time.Duration(i) * time.Second), Actor: "operator/1", Action: "vend.deposit",
				Object: fmt.Sprintf("vendor/%d", i), Details: []byte(`{"cents":1000}`),
			})
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}

// appendLedger stores a deposit-shaped entry: Dr bank, Cr float.
func appendLedger(t *testing.T, db store.Store, id string, bank, float int64) {
	t.Helper()
	err := db.Tx(context.Background(), func(tx store.Tx) error {
		_, err := tx.Ledger().Append(context.Background(), store.LedgerEntry{
			ID: id, Type: "deposit", Time: time.Date(2026, 11, 25, 8, 0, 0, 0, time.UTC),
			Postings: []store.Posting{{Account: "bank:main", Unit: "ZAR", Amount: bank}, {Account: "float:1", Unit: "ZAR", Amount: float}},
		})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestAuditVerifyCommand(t *testing.T) {
	dir, cfg := testDataDir(t, 10)
	code, out, errs := runCLI(t, "", nil, "audit", "verify", "--data", dir)
	if code != 0 || !strings.Contains(out, "audit chain OK: 10 records") || !strings.Contains(out, "last anchor at record 10") {
		t.Fatalf("verify: %d %q %q", code, out, errs)
	}
	code, out, _ = runCLI(t, "", nil, "audit", "verify", "--data", dir, "--json")
	var rep auditlog.Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil || code != 0 || !rep.OK || rep.Records != 10 || !rep.AnchorsChecked {
		t.Fatalf("verify --json: %d %q %v", code, out, err)
	}

	// The head printed can be checked later: a truncated chain that still
	// verifies fails against it.
	head := regexp.MustCompile(`head: (\d+:[0-9a-f]{64})`).FindStringSubmatch(func() string {
		_, out, _ := runCLI(t, "", nil, "audit", "verify", "--data", dir)
		return out
	}())
	if head == nil {
		t.Fatal("verify printed no head")
	}
	if code, out, errs := runCLI(t, "", nil, "audit", "verify", "--data", dir, "--expect-head", head[1]); code != 0 {
		t.Fatalf("--expect-head of the current head: %d %q %q", code, out, errs)
	}
	if code, _, errs := runCLI(t, "", nil, "audit", "verify", "--data", dir, "--expect-head", "nonsense"); code != 2 || !strings.Contains(errs, "SEQ:HASH") {
		t.Fatalf("bad --expect-head: %d %q", code, errs)
	}
	db := openTestStore(t, cfg)
	if _, err := db.SQL().Exec(`DELETE FROM audit_log WHERE seq > 8`); err != nil {
		t.Fatal(err)
	}
	if code, out, _ := runCLI(t, "", nil, "audit", "verify", "--data", dir); code != 0 || !strings.Contains(out, "8 records") {
		t.Fatalf("a truncated chain verifies on its own: %d %q", code, out)
	}
	if code, out, _ := runCLI(t, "", nil, "audit", "verify", "--data", dir, "--expect-head", head[1]); code != 1 || !strings.Contains(out, "BROKEN at record 10: truncated") {
		t.Fatalf("--expect-head after truncation: %d %q", code, out)
	}

	// An edit made directly in the database.
	if _, err := db.SQL().Exec(`UPDATE audit_log SET actor = 'mallory' WHERE seq = 3`); err != nil {
		t.Fatal(err)
	}
	code, out, _ = runCLI(t, "", nil, "audit", "verify", "--data", dir)
	if code != 1 || !strings.Contains(out, "BROKEN at record 3: edited") {
		t.Fatalf("tampered verify: %d %q", code, out)
	}
	code, out, _ = runCLI(t, "", nil, "audit", "verify", "--data", dir, "--json")
	rep = auditlog.Report{}
	if err := json.Unmarshal([]byte(out), &rep); err != nil || code != 1 || rep.OK || rep.FirstBad != 3 || rep.Problem != "edited" {
		t.Fatalf("tampered verify --json: %d %q %v", code, out, err)
	}
}

func TestAuditVerifyNeedsTheKMSForAnchors(t *testing.T) {
	dir, cfg := testDataDir(t, 3)
	if err := os.Remove(cfg.KMS.PassphraseFile); err != nil {
		t.Fatal(err)
	}
	code, _, errs := runCLI(t, "", nil, "audit", "verify", "--data", dir)
	if code != 1 || !strings.Contains(errs, "--no-anchors") {
		t.Fatalf("verify without the KMS: %d %q", code, errs)
	}
	code, out, _ := runCLI(t, "", nil, "audit", "verify", "--data", dir, "--no-anchors")
	if code != 0 || !strings.Contains(out, "anchors NOT checked") {
		t.Fatalf("verify --no-anchors: %d %q", code, out)
	}
	// The passphrase may come from the environment instead.
	env := map[string]string{"SLUICE_KMS_PASSPHRASE": testPassphrase}
	if code, out, errs := runCLI(t, "", env, "audit", "verify", "--data", dir); code != 0 {
		t.Fatalf("verify with $SLUICE_KMS_PASSPHRASE: %d %q %q", code, out, errs)
	}
}

func TestAuditSealCommand(t *testing.T) {
	dir, cfg := testDataDir(t, 4)
	appendAudit(t, openTestStore(t, cfg), 5, 6)
	code, out, _ := runCLI(t, "", nil, "audit", "verify", "--data", dir)
	if code != 0 || !strings.Contains(out, "4 records") || !strings.Contains(out, "6 pending") {
		t.Fatalf("before seal: %d %q", code, out)
	}
	code, out, errs := runCLI(t, "", nil, "audit", "seal", "--data", dir)
	if code != 0 || !strings.Contains(out, "sealed 6 record(s)") {
		t.Fatalf("seal: %d %q %q", code, out, errs)
	}
	code, out, _ = runCLI(t, "", nil, "audit", "verify", "--data", dir)
	if code != 0 || !strings.Contains(out, "10 records") || !strings.Contains(out, "0 pending") {
		t.Fatalf("after seal: %d %q", code, out)
	}
	// Without the anchor key nothing is sealed.
	os.Remove(cfg.KMS.PassphraseFile)
	appendAudit(t, openTestStore(t, cfg), 11, 1)
	if code, _, errs := runCLI(t, "", nil, "audit", "seal", "--data", dir); code != 1 || !strings.Contains(errs, "KMS") {
		t.Fatalf("seal without the KMS: %d %q", code, errs)
	}
}

func TestAuditCommandsOnEmptyDataDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "none")
	if code, _, errs := runCLI(t, "", nil, "audit", "verify", "--data", dir, "--no-anchors"); code != 1 || !strings.Contains(errs, "sluice audit") {
		t.Fatalf("verify of an empty data directory: %d %q", code, errs)
	}
}
