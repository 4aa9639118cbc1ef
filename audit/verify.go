package audit

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"iter"
)

// ChainError reports where verification failed. Seq is the first sequence
// number at which the chain is not what it should be: the record whose hash
// or anchor is wrong, the number missing from the sequence, or the record
// whose previous-hash link does not match. A link break means the tampering
// is at Seq or just before it: a record edited and rehashed shows up as a
// broken link in its successor.
type ChainError struct {
	Seq    uint64
	Err    error // ErrEdited, ErrLink, ErrSequence, ErrAnchor, ErrUnanchored or ErrInvalid
	Detail string
}

func (e *ChainError) Error() string {
	return fmt.Sprintf("audit: chain broken at record %d: %v: %s", e.Seq, e.Err, e.Detail)
}

func (e *ChainError) Unwrap() error { return e.Err }

// Options configure a Verifier.
type Options struct {
	// From is a trusted head to start after (for example the head recorded
	// when older records were archived); zero starts at record 1.
	From Head
	// Anchors checks anchors; nil leaves them unchecked.
	Anchors AnchorVerifier
	// MaxUnanchored, with Anchors set, is the most consecutive records
	// allowed without a valid anchor; 0 means anchors are optional. Set it
	// to the head-end's anchoring interval so stripped anchors are caught.
	MaxUnanchored uint64
}

// Summary describes a verified chain.
type Summary struct {
	Records  uint64 // records checked
	Anchored uint64 // of which carried a valid anchor
	Head     Head   // the last record's head
	// LastAnchored is the last record whose anchor verified: everything up
	// to it is proven unchanged even against someone who can rewrite the
	// database.
	LastAnchored uint64
}

// Verifier checks records one at a time, in sequence order, keeping only
// the running head: memory is constant however long the chain.
type Verifier struct {
	opts       Options
	sum        Summary
	unanchored uint64
	err        error
	buf        []byte // reused encoding buffer
}

// NewVerifier returns a verifier for a chain starting after o.From.
func NewVerifier(o Options) *Verifier {
	return &Verifier{opts: o, sum: Summary{Head: o.From}}
}

// Add checks the next record. After the first failure every call returns
// the same *ChainError.
func (v *Verifier) Add(r *Record) error {
	if v.err != nil {
		return v.err
	}
	v.err = v.check(r)
	return v.err
}

func (v *Verifier) check(r *Record) error {
	head := v.sum.Head
	want := head.Seq + 1
	if r.Seq != want {
		return &ChainError{Seq: want, Err: ErrSequence, Detail: fmt.Sprintf("expected record %d, found %d", want, r.Seq)}
	}
	if err := r.validate(); err != nil {
		return &ChainError{Seq: r.Seq, Err: ErrInvalid, Detail: err.Error()}
	}
	v.buf = r.appendEncoding(v.buf[:0])
	if h := Hash(sha256.Sum256(v.buf)); h != r.Hash {
		return &ChainError{Seq: r.Seq, Err: ErrEdited, Detail: fmt.Sprintf("fields hash to %s, stored hash %s", h, r.Hash)}
	}
	if r.Prev != head.Hash {
		return &ChainError{Seq: r.Seq, Err: ErrLink, Detail: fmt.Sprintf(
			"record %d names predecessor %s, but record %d hashes to %s", r.Seq, r.Prev, head.Seq, head.Hash)}
	}
	if v.opts.Anchors != nil {
		if len(r.Anchor) > 0 {
			if err := v.opts.Anchors.VerifyAnchor(AnchorMessage(r.Seq, r.Hash), r.Anchor); err != nil {
				return &ChainError{Seq: r.Seq, Err: ErrAnchor, Detail: err.Error()}
			}
			v.unanchored = 0
			v.sum.Anchored++
			v.sum.LastAnchored = r.Seq
		} else {
			v.unanchored++
			if m := v.opts.MaxUnanchored; m > 0 && v.unanchored > m {
				return &ChainError{Seq: r.Seq, Err: ErrUnanchored, Detail: fmt.Sprintf("%d records since the last anchor, at most %d allowed", v.unanchored, m)}
			}
		}
	}
	v.sum.Records++
	v.sum.Head = r.Head()
	return nil
}

// Summary returns what has been verified so far.
func (v *Verifier) Summary() Summary { return v.sum }

// Verify checks a stream of records (in sequence order, as the store yields
// them) and returns the summary and the first failure. An error from the
// stream itself ends verification and is returned wrapped.
func Verify(records iter.Seq2[*Record, error], o Options) (Summary, error) {
	v := NewVerifier(o)
	for r, err := range records {
		if err != nil {
			return v.sum, fmt.Errorf("audit: reading record %d: %w", v.sum.Head.Seq+1, err)
		}
		if err := v.Add(r); err != nil {
			return v.sum, err
		}
	}
	return v.sum, nil
}

// IsTamper reports whether err is a chain failure (as opposed to, say, a
// database error while reading the records).
func IsTamper(err error) bool {
	var ce *ChainError
	return errors.As(err, &ce)
}
