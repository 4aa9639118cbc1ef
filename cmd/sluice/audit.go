package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"

	"sluice/audit"
	"sluice/auditlog"
	"sluice/config"
	"sluice/headend"
	"sluice/kms"
	"sluice/kms/kmsconfig"
	"sluice/kms/pkcs11kms"
	"sluice/store/sqlstore"
)

// cmdAudit is `sluice audit`: the stored audit log's hash chain.
func cmdAudit(ctx context.Context, sio stdio, args []string) error {
	return subcommands(ctx, sio, "audit", args, []command{
		{"verify", "verify the audit chain and its anchors; exit 1 at the first bad record", cmdAuditVerify},
		{"seal", "seal pending audit records into the chain now", cmdAuditSeal},
	})
}

func cmdAuditVerify(ctx context.Context, sio stdio, args []string) error {
	fs := newFlags(sio, "audit verify", "[--json] [--no-anchors] [--config FILE] [--data DIR] [--db-driver D] [--db-url URL]")
	cf := addConfigFlags(fs, false)
	asJSON := fs.Bool("json", false, "print the report as JSON")
	noAnchors := fs.Bool("no-anchors", false, "check hashes and links only, without the KMS (anchors unchecked: a recomputed chain passes)")
	expect := fs.String("expect-head", "", "a head printed by an earlier verify (`SEQ:HASH`): fail unless the chain still extends it")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	var want audit.Head
	if *expect != "" {
		var err error
		if want, err = auditlog.ParseHead(*expect); err != nil {
			fmt.Fprintf(sio.err, "sluice audit verify: --expect-head: %v\n", err)
			return errUsage
		}
	}
	cfg, err := cf.load(sio)
	if err != nil {
		return configError(sio, "audit verify", err)
	}
	rep, err := verifyAudit(ctx, sio, cfg, !*noAnchors)
	if err != nil {
		return err
	}
	if rep.OK && want.Seq > 0 {
		if err := checkHead(ctx, cfg, want); err != nil {
			rep.OK, rep.FirstBad, rep.Problem, rep.Detail = false, want.Seq, "truncated", err.Error()
			if errors.Is(err, auditlog.ErrForked) {
				rep.Problem = "rewritten"
			}
		}
	}
	if *asJSON {
		enc := json.NewEncoder(sio.out)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return err
		}
	} else {
		printAuditReport(sio, rep)
	}
	if !rep.OK {
		return exitError{1}
	}
	return nil
}

// verifyAudit opens the configured store (and the KMS for anchors) and
// verifies the chain.
func verifyAudit(ctx context.Context, sio stdio, cfg config.Config, anchors bool) (auditlog.Report, error) {
	db, err := openExistingStore(ctx, cfg)
	if err != nil {
		return auditlog.Report{}, err
	}
	defer db.Close()
	if err := db.Ready(ctx); err != nil {
		return auditlog.Report{}, err
	}
	if !anchors {
		return auditlog.Verify(ctx, db, nil)
	}
	km, err := openConfigKMS(ctx, cfg)
	if err != nil {
		return auditlog.Report{}, fmt.Errorf("anchors need the KMS (or run with --no-anchors): %w", err)
	}
	defer km.Close()
	a, err := auditlog.NewKMSAnchors(ctx, km)
	if err != nil {
		return auditlog.Report{}, fmt.Errorf("anchors need the KMS (or run with --no-anchors): %w", err)
	}
	return auditlog.Verify(ctx, db, a)
}

// checkHead opens the store again for auditlog.CheckHead.
func checkHead(ctx context.Context, cfg config.Config, want audit.Head) error {
	db, err := openExistingStore(ctx, cfg)
	if err != nil {
		return err
	}
	defer db.Close()
	return auditlog.CheckHead(ctx, db, want)
}

func printAuditReport(sio stdio, rep auditlog.Report) {
	anchors := fmt.Sprintf("%d anchored, last anchor at record %d", rep.Anchored, rep.LastAnchored)
	if !rep.AnchorsChecked {
		anchors = "anchors NOT checked"
	}
	if rep.OK {
		fmt.Fprintf(sio.out, "audit chain OK: %d records (%s), %d pending\n", rep.Records, anchors, rep.Pending)
		if rep.Head > 0 {
			fmt.Fprintf(sio.out, "head: %s   (keep it outside the database; check later with --expect-head)\n", rep.HeadString())
		}
		return
	}
	fmt.Fprintf(sio.out, "audit chain BROKEN at record %d: %s\n  %s\n", rep.FirstBad, rep.Problem, rep.Detail)
	if rep.Failure != nil {
		fmt.Fprintf(sio.out, "records 1 to %d verify (%s), %d pending\n", rep.Head, anchors, rep.Pending)
	}
}

func cmdAuditSeal(ctx context.Context, sio stdio, args []string) error {
	fs := newFlags(sio, "audit seal", "[--config FILE] [--data DIR] [--db-driver D] [--db-url URL]")
	cf := addConfigFlags(fs, false)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, err := cf.load(sio)
	if err != nil {
		return configError(sio, "audit seal", err)
	}
	db, err := openExistingStore(ctx, cfg)
	if err != nil {
		return err
	}
	defer db.Close()
	if err := db.Ready(ctx); err != nil {
		return err
	}
	// Sealing without anchors would leave records no verifier accepts,
	// so the anchor key is required here.
	km, err := openConfigKMS(ctx, cfg)
	if err != nil {
		return fmt.Errorf("sealing needs the KMS for anchors: %w", err)
	}
	defer km.Close()
	a, err := auditlog.NewKMSAnchors(ctx, km)
	if err != nil {
		return err
	}
	n, err := auditlog.Seal(ctx, db, a, 0)
	fmt.Fprintf(sio.out, "sealed %d record(s)\n", n)
	return err
}

// openExistingStore opens the configured store for a tool that inspects
// it; unlike serve it never creates an empty SQLite file.
func openExistingStore(ctx context.Context, cfg config.Config) (*sqlstore.DB, error) {
	if cfg.Database.Driver == "sqlite" {
		if _, err := os.Stat(cfg.Database.URL); err != nil {
			return nil, fmt.Errorf("database: %w", err)
		}
	}
	return headend.OpenStore(ctx, cfg)
}

// openConfigKMS opens the key manager the configuration names, read-only
// in effect (nothing here creates or changes keys).
func openConfigKMS(ctx context.Context, cfg config.Config) (kms.KeyManager, error) {
	kc := kmsconfig.Config{Backend: cfg.KMS.Backend, Path: cfg.KMS.File}
	switch cfg.KMS.Backend {
	case kmsconfig.PKCS11:
		pin := cfg.KMS.PKCS11.PIN
		if pin == "" {
			p, err := kmsconfig.ReadSecret(cfg.KMS.PKCS11.PINFile)
			if err != nil {
				return nil, fmt.Errorf("kms.pkcs11.pin_file: %w", err)
			}
			pin = string(p)
		}
		kc.PKCS11 = pkcs11kms.Config{Module: cfg.KMS.PKCS11.Module, Token: cfg.KMS.PKCS11.Token, PIN: pin}
	default:
		kc.Passphrase = []byte(cfg.KMS.Passphrase)
		if len(kc.Passphrase) == 0 {
			if cfg.KMS.PassphraseFile == "" {
				return nil, errors.New("kms.passphrase_file: not set")
			}
			p, err := kmsconfig.ReadSecret(cfg.KMS.PassphraseFile)
			if err != nil {
				return nil, fmt.Errorf("kms.passphrase_file: %w", err)
			}
			kc.Passphrase = p
		}
	}
	return kmsconfig.Open(ctx, kc)
}
