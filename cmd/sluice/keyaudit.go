package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/user"
	"time"

	"sluice/config"
	"sluice/headend"
	"sluice/kms"
	"sluice/store"
)

// auditedKMS writes every key use and change of a CLI key ceremony into the
// head-end's audit log, when the head-end's database is reachable: the same
// chain operators' actions go into, sealed by the running head-end.
type auditedKMS struct {
	kms.KeyManager
	st interface{ Close() error }
}

func (a auditedKMS) Close() error {
	return errors.Join(a.KeyManager.Close(), a.st.Close())
}

// storeRecorder appends one audit record per key event in its own
// transaction; the CLI holds no other transaction while it uses keys.
type storeRecorder struct {
	st    store.Store
	actor string
}

func (r storeRecorder) Record(ctx context.Context, e kms.Event) error {
	rec := headend.KeyUseRecord(e, r.actor, time.Now().UTC())
	return r.st.Tx(ctx, func(tx store.Tx) error { return tx.Audit().Append(ctx, rec) })
}

// cliActor names the person at the terminal in the audit log: the --actor
// flag when given, else the login name ($USER, then the account running
// the command). One rule for every command, so a ceremony's key uses and
// its other records name the same person.
func cliActor(sio stdio, given string) string {
	if given != "" {
		return given
	}
	if u := sio.getenv("USER"); u != "" {
		return "cli:" + u
	}
	if u, err := user.Current(); err == nil && u.Username != "" {
		return "cli:" + u.Username
	}
	return "cli:unknown"
}

// withAudit wraps km so its uses are audited in the database cfg names, if
// that database exists and is migrated; otherwise it says so on stderr and
// returns km unchanged (an offline ceremony on an air-gapped machine).
func withAudit(ctx context.Context, sio stdio, cfg config.Config, km kms.KeyManager) kms.KeyManager {
	if cfg.Database.Driver == "sqlite" {
		if _, err := os.Stat(cfg.Database.URL); err != nil {
			fmt.Fprintf(sio.err, "note: no head-end database at %s: this key operation is not recorded in the audit log\n", cfg.Database.URL)
			return km
		}
	}
	db, err := headend.OpenStore(ctx, cfg)
	if err == nil {
		err = db.Ready(ctx)
		if err != nil {
			db.Close()
		}
	}
	if err != nil {
		fmt.Fprintf(sio.err, "note: head-end database unavailable (%v): this key operation is not recorded in the audit log\n", err)
		return km
	}
	return auditedKMS{KeyManager: kms.WithAudit(km, storeRecorder{st: db, actor: cliActor(sio, "")}), st: db}
}
