package auditlog

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"sluice/audit"
	"sluice/store"
)

// Problems Verify names.
const (
	Edited     = "edited"     // a record's fields no longer match its hash, or it was rewritten and rehashed
	Deleted    = "deleted"    // records are missing from the sequence
	Inserted   = "inserted"   // records were added inside the chain
	Reordered  = "reordered"  // a record sits at another place than it was sealed at
	Anchor     = "anchor"     // an anchor does not verify: the chain was recomputed, or an anchor forged
	Unanchored = "unanchored" // too many records without an anchor: anchors stripped (or sealed without a key)
	Invalid    = "invalid"    // a record's fields are out of range
)

// Report is what Verify found.
type Report struct {
	// OK is true when every sealed record verified.
	OK bool `json:"ok"`
	// Records is how many sealed records verified, from the first.
	Records uint64 `json:"records"`
	// Anchored counts the verified records carrying a valid anchor, and
	// LastAnchored is the last of them: the chain up to it is proven even
	// against someone able to rewrite the database.
	Anchored     uint64 `json:"anchored"`
	LastAnchored uint64 `json:"last_anchored"`
	// AnchorsChecked is false when no anchor verifier was given.
	AnchorsChecked bool `json:"anchors_checked"`
	// Head is the last verified record and its hash (hex): keep it outside
	// the database to notice a truncated tail later.
	Head     uint64 `json:"head"`
	HeadHash string `json:"head_hash,omitempty"`
	// Pending counts records written but not sealed yet.
	Pending int64 `json:"pending"`

	// FirstBad is the first sequence number that is not what it should be
	// (0 when OK), Problem classifies it and Detail explains.
	FirstBad uint64 `json:"first_bad,omitempty"`
	Problem  string `json:"problem,omitempty"`
	Detail   string `json:"detail,omitempty"`
	// Failure is package audit's error, for callers that branch on it.
	Failure *audit.ChainError `json:"-"`
}

// maxSearch bounds the diagnosis's search for the sequence number a moved
// record was sealed at (one SHA-256 per candidate).
const maxSearch = 50_000_000

// Verify checks the sealed chain as stored, from record 1, in constant
// memory. anchors may be nil, which checks hashes and links only; with an
// anchor verifier it also requires an anchor at least every AnchorInterval
// records. Tampering is reported in the Report (OK false) with a nil error;
// the error is for a database that could not be read.
func Verify(ctx context.Context, st store.Store, anchors audit.AnchorVerifier) (Report, error) {
	opts := audit.Options{Anchors: anchors}
	if anchors != nil {
		opts.MaxUnanchored = AnchorInterval
	}
	v := audit.NewVerifier(opts)
	var rep Report
	errStop := errors.New("stop")
	err := st.Read(ctx, func(tx store.Tx) error {
		rep = Report{AnchorsChecked: anchors != nil}
		v = audit.NewVerifier(opts)
		a := tx.Audit()
		var err error
		if rep.Pending, err = a.CountPending(ctx); err != nil {
			return fmt.Errorf("auditlog: %w", err)
		}
		var bad *audit.Record
		var before audit.Head
		err = a.Each(ctx, 1, func(sr store.AuditRecord) error {
			r := record(sr)
			before = v.Summary().Head
			if err := v.Add(r); err != nil {
				bad = r
				return errStop
			}
			return ctx.Err()
		})
		if err != nil && !errors.Is(err, errStop) {
			return fmt.Errorf("auditlog: reading the chain after record %d: %w", v.Summary().Head.Seq, err)
		}
		if bad != nil {
			var ce *audit.ChainError
			if !errors.As(v.Add(bad), &ce) {
				return fmt.Errorf("auditlog: verifier failed without a chain error at record %d", bad.Seq)
			}
			rep.Failure = ce
			rep.FirstBad, rep.Problem, rep.Detail = ce.Seq, "", ce.Detail
			return diagnose(ctx, a, &rep, bad, before, ce)
		}
		return nil
	})
	if err != nil {
		return Report{}, err
	}
	s := v.Summary()
	rep.OK = rep.Failure == nil
	rep.Records, rep.Anchored, rep.LastAnchored = s.Records, s.Anchored, s.LastAnchored
	rep.Head = s.Head.Seq
	if s.Head.Seq > 0 {
		rep.HeadHash = s.Head.Hash.String()
	}
	return rep, nil
}

// diagnose classifies a chain failure from what the broken record r still
// proves: its hash commits to the sequence number it was sealed with, and
// its link to its predecessor's hash. head is the chain verified before r.
func diagnose(ctx context.Context, a store.Audit, rep *Report, r *audit.Record, head audit.Head, ce *audit.ChainError) error {
	cur := ce.Seq
	switch {
	case errors.Is(ce.Err, audit.ErrSequence):
		rep.Problem = Deleted
		if r.Seq == cur+1 {
			rep.Detail = fmt.Sprintf("record %d is missing (the chain jumps from %d to %d)", cur, head.Seq, r.Seq)
		} else {
			rep.Detail = fmt.Sprintf("records %d to %d are missing (the chain jumps from %d to %d)", cur, r.Seq-1, head.Seq, r.Seq)
		}
	case errors.Is(ce.Err, audit.ErrAnchor):
		rep.Problem = Anchor
		rep.Detail = "the anchor of record " + fmt.Sprint(cur) + " does not verify: the chain up to it was recomputed, or the anchor forged (" + ce.Detail + ")"
	case errors.Is(ce.Err, audit.ErrUnanchored):
		rep.Problem = Unanchored
		rep.Detail = ce.Detail + "; anchors were stripped, or the records were sealed without the anchor key"
	case errors.Is(ce.Err, audit.ErrInvalid):
		rep.Problem = Invalid
	case errors.Is(ce.Err, audit.ErrEdited):
		if r.Prev == head.Hash {
			rep.Problem = Edited
			rep.Detail = fmt.Sprintf("record %d's fields no longer match its hash (%s)", cur, ce.Detail)
			return nil
		}
		// Both the fields and the link are off: most likely the record
		// was sealed at another place. Its hash says which.
		last, err := a.Head(ctx)
		if err != nil {
			return fmt.Errorf("auditlog: diagnosing: %w", err)
		}
		orig, ok := sealedAt(*r, cur, uint64(max(last.Seq, 0)))
		if !ok {
			rep.Problem = Edited
			rep.Detail = fmt.Sprintf("record %d's fields and its link to record %d no longer match its hash", cur, cur-1)
			return nil
		}
		if orig < cur {
			rep.FirstBad, rep.Problem = orig, Inserted
			rep.Detail = fmt.Sprintf("the record sealed as %d now sits at %d: %d record(s) were inserted before it", orig, cur, cur-orig)
			return nil
		}
		found, _, err := findHash(ctx, a, r.Prev)
		if err != nil {
			return err
		}
		if found {
			rep.Problem = Reordered
			rep.Detail = fmt.Sprintf("the record sealed as %d now sits at %d: records were reordered", orig, cur)
		} else {
			rep.Problem = Deleted
			rep.Detail = fmt.Sprintf("the record sealed as %d now sits at %d and its predecessor is gone: %d record(s) were deleted and the rest renumbered", orig, cur, orig-cur)
		}
	case errors.Is(ce.Err, audit.ErrLink):
		// r is intact where it is, but its predecessor is not the record
		// it was chained to.
		found, at, err := findHash(ctx, a, r.Prev)
		if err != nil {
			return err
		}
		switch {
		case !found:
			rep.FirstBad, rep.Problem = cur-1, Edited
			rep.Detail = fmt.Sprintf("record %d was rewritten and its hash recomputed: record %d still links to the original", cur-1, cur)
		case at < cur-1:
			rep.FirstBad, rep.Problem = at+1, Inserted
			rep.Detail = fmt.Sprintf("record %d was chained after record %d: records %d to %d were inserted", cur, at, at+1, cur-1)
		default:
			rep.Problem = Reordered
			rep.Detail = fmt.Sprintf("record %d was chained after the record now at %d: records were reordered", cur, at)
		}
	default:
		rep.Problem = Invalid
	}
	return nil
}

// sealedAt finds the sequence number, other than cur, under which r's
// fields hash to its stored hash: where it was sealed before it was moved.
// It tries the numbers from 1 to last nearest cur first.
func sealedAt(r audit.Record, cur, last uint64) (uint64, bool) {
	for d := uint64(1); d <= maxSearch && (d < cur || cur+d <= last); d++ {
		if d < cur && hashesAs(&r, cur-d) {
			return cur - d, true
		}
		if cur+d <= last && hashesAs(&r, cur+d) {
			return cur + d, true
		}
	}
	return 0, false
}

func hashesAs(r *audit.Record, seq uint64) bool {
	c := *r
	c.Seq = seq
	return audit.Hash(sha256.Sum256(c.Encode())) == r.Hash
}

// findHash looks for a sealed record whose stored hash is h (one pass over
// the chain; only run after a failure).
func findHash(ctx context.Context, a store.Audit, h audit.Hash) (found bool, seq uint64, err error) {
	errFound := errors.New("found")
	err = a.Each(ctx, 1, func(sr store.AuditRecord) error {
		if len(sr.Hash) == sha256.Size && audit.Hash(sr.Hash) == h {
			found, seq = true, uint64(sr.Seq)
			return errFound
		}
		return ctx.Err()
	})
	if err != nil && !errors.Is(err, errFound) {
		return false, 0, fmt.Errorf("auditlog: diagnosing: %w", err)
	}
	return found, seq, nil
}

// Errors of CheckHead.
var (
	// ErrTruncated: the chain no longer reaches a head recorded earlier.
	ErrTruncated = errors.New("auditlog: chain is shorter than a head recorded earlier (truncated)")
	// ErrForked: the record at a head recorded earlier has another hash now.
	ErrForked = errors.New("auditlog: chain does not extend a head recorded earlier (rewritten)")
)

// CheckHead checks that the stored chain still extends want, a head
// recorded outside the database (Report.Head and HeadHash of an earlier
// verification, or a backup's manifest). It is the check no chain can make
// by itself: a tail deleted together with its anchors leaves a shorter,
// valid chain. Run Verify as well; CheckHead compares one record only.
func CheckHead(ctx context.Context, st store.Store, want audit.Head) error {
	if want.Seq == 0 {
		return nil
	}
	var got *store.AuditRecord
	errFound := errors.New("found")
	err := st.Read(ctx, func(tx store.Tx) error {
		got = nil
		err := tx.Audit().Each(ctx, int64(want.Seq), func(r store.AuditRecord) error {
			got = &r
			return errFound
		})
		if errors.Is(err, errFound) {
			return nil
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("auditlog: %w", err)
	}
	if got == nil || uint64(got.Seq) != want.Seq {
		return fmt.Errorf("%w: record %d is gone", ErrTruncated, want.Seq)
	}
	if len(got.Hash) != sha256.Size || audit.Hash(got.Hash) != want.Hash {
		return fmt.Errorf("%w: record %d hashes to %x, recorded %s", ErrForked, want.Seq, got.Hash, want.Hash)
	}
	return nil
}

// ParseHead reads a head written as "SEQ:HASH" (hash in hex), the form
// `sluice audit verify` prints for keeping.
func ParseHead(s string) (audit.Head, error) {
	seqS, hashS, ok := strings.Cut(s, ":")
	seq, err := strconv.ParseUint(seqS, 10, 64)
	if !ok || err != nil || seq == 0 {
		return audit.Head{}, fmt.Errorf("auditlog: head %q: want SEQ:HASH", s)
	}
	b, err := hex.DecodeString(hashS)
	if err != nil || len(b) != sha256.Size {
		return audit.Head{}, fmt.Errorf("auditlog: head %q: the hash must be 64 hex digits", s)
	}
	return audit.Head{Seq: seq, Hash: audit.Hash(b)}, nil
}

// HeadString writes the report's head as ParseHead reads it.
func (r Report) HeadString() string {
	if r.Head == 0 {
		return ""
	}
	return fmt.Sprintf("%d:%s", r.Head, r.HeadHash)
}
