package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"

	"sluice/config"
	"sluice/ledger"
	"sluice/store"
	"sluice/vend"
)

// cmdLedger is `sluice ledger`: the double-entry ledger as stored.
func cmdLedger(ctx context.Context, sio stdio, args []string) error {
	return subcommands(ctx, sio, "ledger", args, []command{
		{"check", "check every ledger entry against the invariants; exit 1 on any violation", cmdLedgerCheck},
	})
}

// ledgerResult is what `ledger check --json` prints.
type ledgerResult struct {
	Entries    uint64             `json:"entries"`
	Violations []ledger.Violation `json:"violations"`
	Error      string             `json:"error,omitempty"`
}

func cmdLedgerCheck(ctx context.Context, sio stdio, args []string) error {
	fs := newFlags(sio, "ledger check", "[--json] [--config FILE] [--data DIR] [--db-driver D] [--db-url URL]")
	cf := addConfigFlags(fs, false)
	asJSON := fs.Bool("json", false, "print the result as JSON")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, err := cf.load(sio)
	if err != nil {
		return configError(sio, "ledger check", err)
	}
	res, err := checkLedger(ctx, cfg, func(v ledger.Violation) {
		if !*asJSON {
			fmt.Fprintln(sio.out, v.String())
		}
	})
	if err != nil && res.Entries == 0 && len(res.Violations) == 0 {
		return err
	}
	if err != nil {
		res.Error = err.Error()
	}
	if *asJSON {
		if res.Violations == nil {
			res.Violations = []ledger.Violation{}
		}
		enc := json.NewEncoder(sio.out)
		enc.SetIndent("", "  ")
		if err := enc.Encode(res); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(sio.out, "ledger: %d entries checked, %d violation(s)\n", res.Entries, len(res.Violations))
		if res.Error != "" {
			fmt.Fprintf(sio.out, "check stopped: %s\n", res.Error)
		}
	}
	if len(res.Violations) > 0 || res.Error != "" {
		return exitError{1}
	}
	return nil
}

// checkLedger streams the stored ledger through ledger.Check in commit
// order, calling each for every violation as it is found.
func checkLedger(ctx context.Context, cfg config.Config, each func(ledger.Violation)) (ledgerResult, error) {
	var res ledgerResult
	db, err := openExistingStore(ctx, cfg)
	if err != nil {
		return res, err
	}
	defer db.Close()
	if err := db.Ready(ctx); err != nil {
		return res, err
	}
	for v, err := range ledger.Check(storedEntries(ctx, db, &res.Entries)) {
		if err != nil {
			return res, err
		}
		res.Violations = append(res.Violations, v)
		each(v)
	}
	return res, nil
}

// storedEntries yields the ledger in commit order from one read
// transaction, counting them in n. Should the store run the transaction
// again (a transient error), entries already yielded are skipped.
func storedEntries(ctx context.Context, st store.Store, n *uint64) iter.Seq2[*ledger.Entry, error] {
	return func(yield func(*ledger.Entry, error) bool) {
		errStop := errors.New("stop")
		err := st.Read(ctx, func(tx store.Tx) error {
			var i uint64
			return tx.Ledger().Each(ctx, func(se store.LedgerEntry) error {
				if i++; i <= *n {
					return nil
				}
				e, err := vend.LedgerEntry(se)
				if err != nil {
					err = fmt.Errorf("ledger entry %d (%s): %w", se.Seq, se.ID, err)
				} else {
					*n = i
				}
				if !yield(e, err) || err != nil {
					return errStop
				}
				return ctx.Err()
			})
		})
		if err != nil && !errors.Is(err, errStop) {
			yield(nil, err)
		}
	}
}
