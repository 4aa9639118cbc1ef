package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"sluice/auditlog"
	"sluice/config"
	"sluice/store/storetest"
)

func TestBackupAndRestoreOnline(t *testing.T) {
	dir, cfg := testDataDir(t, 20)
	db := openTestStore(t, cfg)

	// A writer keeps committing while the backup runs, as serve would.
	var stop atomic.Bool
	var wg sync.WaitGroup
	wg.Add(1)
	n := 0
	go func() {
		defer wg.Done()
		for i := 21; !stop.Load(); i++ {
			appendAudit(t, db, i, 1)
			n++
		}
	}()
	archive := filepath.Join(t.TempDir(), "sluice-backup.tar.gz")
	code, out, errs := runCLI(t, "", nil, "backup", "--data", dir, "--out", archive)
	stop.Store(true)
	wg.Wait()
	if code != 0 || !strings.Contains(out, "backup written") || !strings.Contains(out, "keys.sealed") || !strings.Contains(out, "audit chain head 20") {
		t.Fatalf("backup: %d %q %q", code, out, errs)
	}
	t.Logf("%d records committed during the backup", n)
	if fi, err := os.Stat(archive); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("archive: %v %v", fi, err)
	}
	// Never overwrites an archive.
	if code, _, errs := runCLI(t, "", nil, "backup", "--data", dir, "--out", archive); code != 1 || !strings.Contains(errs, "exists") {
		t.Fatalf("second backup to the same file: %d %q", code, errs)
	}

	// Restore into a fresh data directory, whose passphrase file does not
	// exist: the chain's links are verified, anchors reported unchecked.
	dir2 := filepath.Join(t.TempDir(), "restored")
	code, out, errs = runCLI(t, "", nil, "restore", "--from", archive, "--data", dir2)
	if code != 0 || !strings.Contains(out, "sha256 verified") || !strings.Contains(out, "anchors not checked") ||
		!strings.Contains(out, "audit chain OK: 20 records") || !strings.Contains(out, "ledger: 2 entries checked, 0 violation(s)") {
		t.Fatalf("restore: %d %q %q", code, out, errs)
	}
	// The pending records committed before the snapshot came along.
	cfg2 := loadTestConfig(t, dir2)
	rep, err := auditlog.Verify(context.Background(), openTestStore(t, cfg2), nil)
	if err != nil || !rep.OK || rep.Records != 20 {
		t.Fatalf("restored chain: %+v %v", rep, err)
	}
	// With the passphrase the anchors are checked under the restored keys.
	env := map[string]string{"SLUICE_KMS_PASSPHRASE": testPassphrase}
	if code, out, errs := runCLI(t, "", env, "audit", "verify", "--data", dir2); code != 0 || !strings.Contains(out, "last anchor at record 20") {
		t.Fatalf("verify restored: %d %q %q", code, out, errs)
	}

	// An existing store is kept unless --force.
	code, _, errs = runCLI(t, "", env, "restore", "--from", archive, "--data", dir2)
	if code != 1 || !strings.Contains(errs, "--force") {
		t.Fatalf("restore over a store: %d %q", code, errs)
	}
	code, out, errs = runCLI(t, "", env, "restore", "--from", archive, "--data", dir2, "--force")
	if code != 0 || !strings.Contains(out, "last anchor at record 20") {
		t.Fatalf("restore --force: %d %q %q", code, out, errs)
	}
}

func TestRestoreRefusesADamagedBackup(t *testing.T) {
	dir, _ := testDataDir(t, 3)
	archive := filepath.Join(t.TempDir(), "b.tar.gz")
	if code, _, errs := runCLI(t, "", nil, "backup", "--data", dir, "--out", archive); code != 0 {
		t.Fatalf("backup: %q", errs)
	}
	// Rewrite the archive with one byte of the database changed.
	damaged := filepath.Join(t.TempDir(), "damaged.tar.gz")
	rewriteArchive(t, archive, damaged, func(name string, b []byte) []byte {
		if name == "sluice.db" {
			b[len(b)/2] ^= 1
		}
		return b
	})
	dir2 := filepath.Join(t.TempDir(), "restored")
	code, _, errs := runCLI(t, "", nil, "restore", "--from", damaged, "--data", dir2)
	if code != 1 || !strings.Contains(errs, "SHA-256") {
		t.Fatalf("damaged restore: %d %q", code, errs)
	}
	if entries, _ := os.ReadDir(dir2); len(entries) != 0 {
		t.Fatalf("a refused restore left %v behind", entries)
	}
	// Not a backup at all.
	if code, _, errs := runCLI(t, "", nil, "restore", "--from", filepath.Join(dir, "sluice.db"), "--data", dir2); code != 1 || !strings.Contains(errs, "not a sluice backup") {
		t.Fatalf("restore of a non-backup: %d %q", code, errs)
	}
}

func TestRestoreReportsATamperedChain(t *testing.T) {
	dir, cfg := testDataDir(t, 5)
	if _, err := openTestStore(t, cfg).SQL().Exec(`DELETE FROM audit_log WHERE seq = 2`); err != nil {
		t.Fatal(err)
	}
	archive := filepath.Join(t.TempDir(), "b.tar.gz")
	if code, _, errs := runCLI(t, "", nil, "backup", "--data", dir, "--out", archive); code != 0 {
		t.Fatalf("backup: %q", errs)
	}
	code, out, _ := runCLI(t, "", nil, "restore", "--from", archive, "--data", filepath.Join(t.TempDir(), "r"))
	if code != 1 || !strings.Contains(out, "BROKEN at record 2: deleted") {
		t.Fatalf("restore of a tampered chain: %d %q", code, out)
	}
}

func TestBackupOfPostgresPointsToPgDump(t *testing.T) {
	code, _, errs := runCLI(t, "", nil, "backup", "--db-driver", "postgres", "--db-url", storetest.DefaultPostgresURL, "--out", filepath.Join(t.TempDir(), "x"))
	if code != 2 || !strings.Contains(errs, "pg_dump") {
		t.Fatalf("postgres backup: %d %q", code, errs)
	}
}

func rewriteArchive(t *testing.T, from, to string, edit func(string, []byte) []byte) {
	t.Helper()
	f, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(gz)
	var buf bytes.Buffer
	gw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gw)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		b = edit(h.Name, b)
		h.Size = int64(len(b))
		tw.WriteHeader(h)
		tw.Write(b)
	}
	tw.Close()
	gw.Close()
	if err := os.WriteFile(to, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
}

// docs/operations.md is the operator's reference: it must explain every
// configuration key and name its environment variable.
func TestOperationsDocCoversEveryConfigKey(t *testing.T) {
	doc, err := os.ReadFile("../../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range config.Keys() {
		if !strings.Contains(string(doc), "| `"+key+"` |") || !strings.Contains(string(doc), config.EnvName(key)) {
			t.Errorf("docs/operations.md does not document %s (%s)", key, config.EnvName(key))
		}
	}
}

// FuzzRestoreArchive feeds arbitrary bytes to the restore's archive reader:
// it must never panic, and an archive it refuses must put nothing in place.
func FuzzRestoreArchive(f *testing.F) {
	dir := f.TempDir()
	db := filepath.Join(dir, "sluice.db")
	keysFile := filepath.Join(dir, "keys.sealed")
	os.WriteFile(db, []byte("SQLite format 3\x00 not really"), 0o600)
	os.WriteFile(keysFile, []byte("SLUICEKS sealed"), 0o600)
	m := manifest{Format: backupFormat, Driver: "sqlite", KMSBackend: "file"}
	for _, p := range []string{db, keysFile} {
		bf, err := describeFile(p)
		if err != nil {
			f.Fatal(err)
		}
		m.Files = append(m.Files, bf)
	}
	good := filepath.Join(dir, "good.tar.gz")
	if err := writeArchive(good, m, []string{db, keysFile}); err != nil {
		f.Fatal(err)
	}
	seed, _ := os.ReadFile(good)
	f.Add(seed)
	f.Add(seed[:len(seed)/2])
	f.Add([]byte{})
	f.Add([]byte("\x1f\x8b\x08\x00garbage"))
	f.Fuzz(func(t *testing.T, data []byte) {
		work := t.TempDir()
		archive := filepath.Join(work, "in.tar.gz")
		if err := os.WriteFile(archive, data, 0o600); err != nil {
			t.Fatal(err)
		}
		targets := map[string]string{backupDatabase: filepath.Join(work, "data", "sluice.db"), backupKeystore: filepath.Join(work, "data", "keys.sealed")}
		m, err := restoreArchive(archive, targets)
		if err != nil {
			for _, p := range targets {
				if _, serr := os.Stat(p); serr == nil {
					t.Fatalf("refused archive (%v) left %s in place", err, p)
				}
			}
			return
		}
		for _, bf := range m.Files {
			got, err := describeFile(targets[bf.Name])
			if err != nil || got.SHA256 != bf.SHA256 || got.Size != bf.Size {
				t.Fatalf("restored %s does not match its manifest: %+v %v", bf.Name, got, err)
			}
		}
	})
}
