// Package auditlog is the stored audit log: it seals the records the
// head-end appends into package audit's hash chain, and verifies the chain as
// the database holds it.
//
// # Two steps: append, then seal
//
// Every state change appends a pending record (no sequence number yet) in
// the same database transaction as the change, so a change and its record
// commit together or not at all. Chaining at that moment would make the
// chain's head one hot row that every vend on every replica writes, which
// serialises PostgreSQL exactly where the float check already does. Instead a
// sealer (Seal, run in the background by RunSealer) takes the pending records
// in the order it finds them (id order), and for each computes audit.Next
// from the head: sequence number, previous hash and hash, plus an anchor at
// least every AnchorInterval records and on the last record of each batch,
// then stores the batch's places in the chain with one call (Audit.Seal: one
// UPDATE per 512 records, not one per record).
// Sealers take the store's sealer lock (a PostgreSQL advisory lock; SQLite
// has a single writer), and seq is unique, so several replicas sealing at
// once queue behind each other and can never fork the chain.
//
// The price is a window: between the commit of a change and the sealing of
// its record (about a second with the default interval) the record is only
// as safe as any row in the database. Verify reports how many records are
// still pending so an auditor sees that window.
//
// # Anchors
//
// Anchors (package audit) stop someone who can rewrite the database from
// recomputing the chain after an edit. Here they are HMAC-SHA-256 under a key
// derived inside the KMS from the meter root (KMSAnchors), so the database
// never holds it; see KMSAnchors for the anchor format. A signer must not
// write to the store itself (sealing runs inside the store's write
// transaction, and SQLite has one writer): KMSAnchors derives its key once,
// before sealing, and then computes HMACs in memory.
//
// # Verification
//
// Verify streams the sealed chain in sequence order through audit.Verifier,
// in constant memory, inside one read transaction (a consistent snapshot).
// On the first failure it names the sequence number and classifies what
// happened (Problem): edited, deleted, inserted, reordered, anchor,
// unanchored or invalid. Classification is a diagnosis made after the fact
// from what the broken record still proves about itself (its hash commits to
// the sequence number it was written with and to its predecessor's hash); the
// sequence number reported is the dependable part.
//
// What no chain can show: truncation of the tail and tampering with records
// still pending. CheckHead compares the chain with a head recorded outside
// the database (a daily report, a backup's manifest) to catch the first;
// the short sealing interval bounds the second.
package auditlog

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"

	"sluice/audit"
	"sluice/store"
)

// AnchorInterval is the most records sealed in a row without an anchor
// (Seal anchors every record whose sequence number is a multiple of it, and
// the last record of each batch). Verify requires it when checking anchors,
// so anchors stripped from the database are noticed.
const AnchorInterval = 64

// DefaultBatch is how many pending records one sealing transaction takes
// when the caller gives no batch size.
const DefaultBatch = 500

// ErrUnsealable wraps the failure to chain a pending record whose fields
// package audit refuses (empty actor, details that are not JSON...). The
// sealer stops at it rather than skip it, since skipping would hide a
// record; the fix belongs in the code that appended it.
var ErrUnsealable = errors.New("auditlog: pending record cannot be chained")

// Seal chains every pending record, batch records per transaction, and
// returns how many it sealed. anchor may be nil (no anchors; Verify with an
// anchor verifier will then refuse the chain as unanchored). Concurrent
// calls, in one process or on several replicas, are safe.
func Seal(ctx context.Context, st store.Store, anchor audit.Signer, batch int) (int, error) {
	if batch <= 0 {
		batch = DefaultBatch
	}
	total := 0
	for {
		var n int
		err := st.Tx(ctx, func(tx store.Tx) error {
			var err error
			n, err = sealBatch(ctx, tx.Audit(), anchor, batch)
			return err
		})
		if err != nil {
			return total, err
		}
		total += n
		if n < batch {
			return total, nil
		}
	}
}

func sealBatch(ctx context.Context, a store.Audit, anchor audit.Signer, batch int) (int, error) {
	if err := a.LockSealer(ctx); err != nil {
		return 0, fmt.Errorf("auditlog: sealer lock: %w", err)
	}
	head, err := storedHead(ctx, a)
	if err != nil {
		return 0, err
	}
	pending, err := a.Pending(ctx, batch)
	if err != nil {
		return 0, fmt.Errorf("auditlog: %w", err)
	}
	for i, p := range pending {
		r, err := audit.Next(head, audit.Event{Time: p.At, Actor: p.Actor, Action: p.Action, Object: p.Object, Details: p.Details})
		if err != nil {
			return 0, fmt.Errorf("%w: id %d (%s): %v", ErrUnsealable, p.ID, p.Action, err)
		}
		if anchor != nil && (r.Seq%AnchorInterval == 0 || i == len(pending)-1) {
			if err := r.Seal(anchor); err != nil {
				return 0, err
			}
		}
		pending[i].Seq, pending[i].PrevHash, pending[i].Hash, pending[i].Anchor = int64(r.Seq), r.Prev[:], r.Hash[:], r.Anchor
		head = r.Head()
	}
	// One call for the batch: the store writes it in a statement or a few
	// rather than one per record, in the same transaction, so a crash
	// leaves the batch pending as a whole for the next round.
	if err := a.Seal(ctx, pending...); err != nil {
		return 0, fmt.Errorf("auditlog: %w", err)
	}
	return len(pending), nil
}

// storedHead reads the chain's head as the sealer continues it.
func storedHead(ctx context.Context, a store.Audit) (audit.Head, error) {
	h, err := a.Head(ctx)
	if errors.Is(err, store.ErrNotFound) {
		return audit.Head{}, nil
	}
	if err != nil {
		return audit.Head{}, fmt.Errorf("auditlog: chain head: %w", err)
	}
	if h.Seq <= 0 || len(h.Hash) != sha256.Size {
		return audit.Head{}, fmt.Errorf("auditlog: chain head (record %d) is malformed; run `sluice audit verify`", h.Seq)
	}
	return audit.Head{Seq: uint64(h.Seq), Hash: audit.Hash(h.Hash)}, nil
}

// record converts a sealed row to package audit's form. A hash or link of
// the wrong length cannot be what the sealer wrote; it is zero-filled, so
// verification reports the record.
func record(a store.AuditRecord) *audit.Record {
	r := &audit.Record{
		Seq: uint64(a.Seq), Time: a.At, Actor: a.Actor, Action: a.Action, Object: a.Object,
		Details: a.Details, Anchor: a.Anchor,
	}
	if len(a.Hash) == sha256.Size {
		r.Hash = audit.Hash(a.Hash)
	}
	if len(a.PrevHash) == sha256.Size {
		r.Prev = audit.Hash(a.PrevHash)
	}
	return r
}
