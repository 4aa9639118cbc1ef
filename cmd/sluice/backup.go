package main

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"sluice/auditlog"
	"sluice/config"
	"sluice/ledger"
	"sluice/store"
	"sluice/store/sqlite"
)

// A backup is a gzip-compressed tar archive: manifest.json first, then the
// files it lists, each with its size and SHA-256, so a restore checks every
// byte before it puts anything in place. The database part is a consistent
// snapshot taken online (SQLite's VACUUM INTO runs in one read transaction,
// which WAL lets proceed beside the running head-end's writes). The key
// store is the sealed file as it is on disk (every change to it is an
// atomic rename, so a read sees one whole version); its passphrase is never
// included: keep it apart from the backups.
const backupFormat = "sluice-backup/1"

// Names of the parts inside the archive.
const (
	backupManifest = "manifest.json"
	backupDatabase = "sluice.db"
	backupKeystore = "keys.sealed"
)

type backupFile struct {
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

type manifest struct {
	Format        string       `json:"format"`
	Created       time.Time    `json:"created"`
	Driver        string       `json:"driver"`
	SchemaVersion int          `json:"schema_version"`
	AuditHead     int64        `json:"audit_head"`
	AuditHeadHash string       `json:"audit_head_hash,omitempty"`
	AuditPending  int64        `json:"audit_pending"`
	KMSBackend    string       `json:"kms_backend"`
	Files         []backupFile `json:"files"`
}

func cmdBackup(ctx context.Context, sio stdio, args []string) error {
	fs := newFlags(sio, "backup", "--out FILE [--config FILE] [--data DIR] [--db-url PATH]")
	cf := addConfigFlags(fs, false)
	out := fs.String("out", "", "archive `file` to write (tar.gz; must not exist)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *out == "" || fs.NArg() != 0 {
		fs.Usage()
		return errUsage
	}
	cfg, err := cf.load(sio)
	if err != nil {
		return configError(sio, "backup", err)
	}
	if cfg.Database.Driver != "sqlite" {
		fmt.Fprintln(sio.err, "sluice backup: the database is PostgreSQL: back it up with pg_dump (or base backups and WAL archiving for point-in-time recovery), and the key store as the KMS requires; see docs/operations.md")
		return exitError{2}
	}
	if _, err := os.Stat(cfg.Database.URL); err != nil {
		return fmt.Errorf("database %s: %w", cfg.Database.URL, err)
	}
	if _, err := os.Stat(*out); err == nil {
		return fmt.Errorf("--out %s exists already", *out)
	}
	m, err := writeBackup(ctx, sio, cfg, *out)
	if err != nil {
		return err
	}
	fmt.Fprintf(sio.out, "backup written to %s\n", *out)
	for _, f := range m.Files {
		fmt.Fprintf(sio.out, "  %-12s %10d bytes  sha256 %s\n", f.Name, f.Size, f.SHA256)
	}
	fmt.Fprintf(sio.out, "schema version %d; audit chain head %d, %d pending\n", m.SchemaVersion, m.AuditHead, m.AuditPending)
	return nil
}

func writeBackup(ctx context.Context, sio stdio, cfg config.Config, out string) (manifest, error) {
	m := manifest{Format: backupFormat, Created: time.Now().UTC().Truncate(time.Second), Driver: "sqlite", KMSBackend: cfg.KMS.Backend}
	work, err := os.MkdirTemp(filepath.Dir(out), ".sluice-backup-")
	if err != nil {
		return m, err
	}
	defer os.RemoveAll(work)

	snap := filepath.Join(work, backupDatabase)
	if err := snapshotSQLite(ctx, cfg.Database.URL, snap); err != nil {
		return m, err
	}
	if err := describeSnapshot(ctx, snap, &m); err != nil {
		return m, err
	}
	parts := []string{snap}
	if cfg.KMS.Backend == "file" {
		keys, err := os.ReadFile(cfg.KMS.File)
		switch {
		case errors.Is(err, os.ErrNotExist):
			fmt.Fprintf(sio.err, "sluice backup: warning: no key store at %s (kms.file); the backup holds the database only\n", cfg.KMS.File)
		case err != nil:
			return m, fmt.Errorf("kms.file: %w", err)
		default:
			p := filepath.Join(work, backupKeystore)
			if err := os.WriteFile(p, keys, 0o600); err != nil {
				return m, err
			}
			parts = append(parts, p)
		}
	}
	for _, p := range parts {
		f, err := describeFile(p)
		if err != nil {
			return m, err
		}
		m.Files = append(m.Files, f)
	}

	tmp := filepath.Join(work, "archive.tar.gz")
	if err := writeArchive(tmp, m, parts); err != nil {
		return m, err
	}
	// Link, not rename: it fails if --out appeared meanwhile.
	if err := os.Link(tmp, out); err != nil {
		return m, fmt.Errorf("--out: %w", err)
	}
	return m, syncDir(filepath.Dir(out))
}

// snapshotSQLite writes a consistent copy of the database at src to dst
// with VACUUM INTO, on a connection of its own: it reads one snapshot, so
// the head-end's writers carry on meanwhile.
func snapshotSQLite(ctx context.Context, src, dst string) error {
	db, err := sql.Open("sqlite", "file:"+src+"?_pragma=busy_timeout(10000)")
	if err != nil {
		return err
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, `VACUUM INTO ?`, dst); err != nil {
		return fmt.Errorf("snapshot of %s: %w", src, err)
	}
	return nil
}

// describeSnapshot records the snapshot's schema version and audit head in
// the manifest: a head written down outside the database is what later
// reveals a truncated chain.
func describeSnapshot(ctx context.Context, path string, m *manifest) error {
	db, err := sqlite.Open(ctx, path)
	if err != nil {
		return err
	}
	defer db.Close()
	if m.SchemaVersion, _, err = db.SchemaVersion(ctx); err != nil {
		return err
	}
	return db.Read(ctx, func(tx store.Tx) error {
		h, err := tx.Audit().Head(ctx)
		switch {
		case errors.Is(err, store.ErrNotFound):
		case err != nil:
			return err
		default:
			m.AuditHead, m.AuditHeadHash = h.Seq, hex.EncodeToString(h.Hash)
		}
		m.AuditPending, err = tx.Audit().CountPending(ctx)
		return err
	})
}

func describeFile(path string) (backupFile, error) {
	f, err := os.Open(path)
	if err != nil {
		return backupFile{}, err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return backupFile{}, err
	}
	return backupFile{Name: filepath.Base(path), Size: n, SHA256: hex.EncodeToString(h.Sum(nil))}, nil
}

func writeArchive(path string, m manifest, parts []string) (err error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}()
	gz := gzip.NewWriter(f)
	tw := tar.NewWriter(gz)
	js, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	hdr := func(name string, size int64) *tar.Header {
		return &tar.Header{Name: name, Mode: 0o600, Size: size, ModTime: m.Created, Typeflag: tar.TypeReg, Format: tar.FormatPAX}
	}
	if err := tw.WriteHeader(hdr(backupManifest, int64(len(js)))); err != nil {
		return err
	}
	if _, err := tw.Write(js); err != nil {
		return err
	}
	for i, p := range parts {
		if err := tw.WriteHeader(hdr(m.Files[i].Name, m.Files[i].Size)); err != nil {
			return err
		}
		src, err := os.Open(p)
		if err != nil {
			return err
		}
		_, err = io.Copy(tw, src)
		src.Close()
		if err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if err := gz.Close(); err != nil {
		return err
	}
	return f.Sync()
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

func cmdRestore(ctx context.Context, sio stdio, args []string) error {
	fs := newFlags(sio, "restore", "--from FILE --data DIR [--force] [--config FILE]")
	cf := addConfigFlags(fs, false)
	from := fs.String("from", "", "backup `file` written by sluice backup")
	force := fs.Bool("force", false, "replace an existing database and key store (stop sluice serve first)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *from == "" || fs.NArg() != 0 {
		fs.Usage()
		return errUsage
	}
	cfg, err := cf.load(sio)
	if err != nil {
		return configError(sio, "restore", err)
	}
	if cfg.Database.Driver != "sqlite" {
		fmt.Fprintln(sio.err, "sluice restore: the database is PostgreSQL: restore it with pg_restore / psql; see docs/operations.md")
		return exitError{2}
	}
	targets := map[string]string{backupDatabase: cfg.Database.URL}
	if cfg.KMS.Backend == "file" {
		targets[backupKeystore] = cfg.KMS.File
	}
	if !*force {
		for _, t := range targets {
			if _, err := os.Stat(t); err == nil {
				return fmt.Errorf("%s exists: refusing to overwrite it (stop sluice serve and give --force to replace it)", t)
			}
		}
	}
	m, err := restoreArchive(*from, targets)
	if err != nil {
		return err
	}
	fmt.Fprintf(sio.out, "restored backup of %s (schema version %d, audit head %d)\n", m.Created.Format(time.RFC3339), m.SchemaVersion, m.AuditHead)
	for _, f := range m.Files {
		if t, ok := targets[f.Name]; ok {
			fmt.Fprintf(sio.out, "  %-12s -> %s (sha256 verified)\n", f.Name, t)
		} else {
			fmt.Fprintf(sio.out, "  %-12s not restored: kms.backend is %s\n", f.Name, cfg.KMS.Backend)
		}
	}

	ok := true
	rep, err := verifyAudit(ctx, sio, cfg, true)
	if err != nil {
		fmt.Fprintf(sio.out, "anchors not checked (%v)\n", err)
		rep, err = verifyAudit(ctx, sio, cfg, false)
	}
	if err != nil {
		fmt.Fprintf(sio.out, "audit chain not verified: %v\n", err)
		ok = false
	} else {
		printAuditReport(sio, rep)
		ok = ok && rep.OK
		if m.AuditHead > 0 {
			want, err := auditlog.ParseHead(fmt.Sprintf("%d:%s", m.AuditHead, m.AuditHeadHash))
			if err == nil {
				err = checkHead(ctx, cfg, want)
			}
			if err != nil {
				fmt.Fprintf(sio.out, "audit chain does not match the head in the backup's manifest: %v\n", err)
				ok = false
			}
		}
	}
	res, err := checkLedger(ctx, cfg, func(v ledger.Violation) { fmt.Fprintln(sio.out, v.String()) })
	if err != nil {
		fmt.Fprintf(sio.out, "ledger not checked: %v\n", err)
		ok = false
	} else {
		fmt.Fprintf(sio.out, "ledger: %d entries checked, %d violation(s)\n", res.Entries, len(res.Violations))
		ok = ok && len(res.Violations) == 0
	}
	if !ok {
		return exitError{1}
	}
	return nil
}

// maxManifest bounds the manifest read into memory.
const maxManifest = 1 << 20

// restoreArchive checks the archive whole against its manifest, then puts
// each part in place by rename; a database replaced loses its old -wal and
// -shm files, which would otherwise be replayed over the restored copy.
func restoreArchive(path string, targets map[string]string) (manifest, error) {
	var m manifest
	f, err := os.Open(path)
	if err != nil {
		return m, err
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		return m, fmt.Errorf("%s: not a sluice backup: %w", path, err)
	}
	tr := tar.NewReader(gz)
	h, err := tr.Next()
	if err != nil || h.Name != backupManifest || h.Size > maxManifest {
		return m, fmt.Errorf("%s: not a sluice backup (no %s first)", path, backupManifest)
	}
	js, err := io.ReadAll(io.LimitReader(tr, maxManifest))
	if err != nil {
		return m, err
	}
	if err := json.Unmarshal(js, &m); err != nil {
		return m, fmt.Errorf("%s: manifest: %w", path, err)
	}
	if m.Format != backupFormat {
		return m, fmt.Errorf("%s: manifest format %q, this binary reads %q", path, m.Format, backupFormat)
	}
	want := map[string]backupFile{}
	for _, bf := range m.Files {
		if bf.Name != backupDatabase && bf.Name != backupKeystore {
			return m, fmt.Errorf("%s: manifest lists unknown part %q", path, bf.Name)
		}
		want[bf.Name] = bf
	}
	if _, ok := want[backupDatabase]; !ok {
		return m, fmt.Errorf("%s: manifest lists no database", path)
	}

	staged := map[string]string{} // part -> temporary file beside its target
	defer func() {
		for _, tmp := range staged {
			os.Remove(tmp)
		}
	}()
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return m, fmt.Errorf("%s: %w", path, err)
		}
		bf, ok := want[h.Name]
		if !ok || staged[h.Name] != "" {
			return m, fmt.Errorf("%s: unexpected part %q", path, h.Name)
		}
		target, keep := targets[h.Name]
		dir := filepath.Dir(path)
		if keep {
			dir = filepath.Dir(target)
			if err := os.MkdirAll(dir, 0o700); err != nil {
				return m, err
			}
		}
		tmp, err := stagePart(tr, dir, bf)
		if tmp != "" {
			staged[h.Name] = tmp
		}
		if err != nil {
			return m, fmt.Errorf("%s: part %s: %w", path, h.Name, err)
		}
	}
	for name := range want {
		if staged[name] == "" {
			return m, fmt.Errorf("%s: part %s listed in the manifest is missing", path, name)
		}
	}
	for name, tmp := range staged {
		target, ok := targets[name]
		if !ok {
			continue
		}
		if name == backupDatabase {
			for _, suffix := range []string{"-wal", "-shm", "-journal"} {
				if err := os.Remove(target + suffix); err != nil && !errors.Is(err, os.ErrNotExist) {
					return m, err
				}
			}
		}
		if err := os.Rename(tmp, target); err != nil {
			return m, err
		}
		delete(staged, name)
		if err := syncDir(filepath.Dir(target)); err != nil {
			return m, err
		}
	}
	return m, nil
}

// stagePart copies one part to a temporary file in dir, checking its size
// and SHA-256 against the manifest.
func stagePart(r io.Reader, dir string, bf backupFile) (string, error) {
	f, err := os.CreateTemp(dir, ".restore-"+strings.TrimSuffix(bf.Name, filepath.Ext(bf.Name))+"-")
	if err != nil {
		return "", err
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, h), io.LimitReader(r, bf.Size+1))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return f.Name(), err
	}
	if n != bf.Size {
		return f.Name(), fmt.Errorf("%d bytes, the manifest says %d", n, bf.Size)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != bf.SHA256 {
		return f.Name(), fmt.Errorf("SHA-256 %s, the manifest says %s: the backup is damaged or altered", got, bf.SHA256)
	}
	return f.Name(), nil
}
