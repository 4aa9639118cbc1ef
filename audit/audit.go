// Package audit is Sluice's tamper-evident audit log: a hash chain of
// records, each committing to its predecessor, with optional signed anchors.
//
// Every state change and every key use in the head-end is appended as a
// Record. A record's hash is SHA-256 over a canonical binary encoding of its
// fields (length-prefixed, big-endian, documented byte by byte in
// docs/ledger.md) that includes the previous record's hash. The encoding is
// not a JSON re-serialisation: JSON libraries and databases (PostgreSQL
// jsonb) reorder keys and reformat numbers, which would break honest chains
// and leave room for ambiguity. The details JSON is therefore hashed and must
// be stored as the exact bytes given.
//
// What the chain catches: any edited field (the record's stored hash no
// longer matches), any deleted, inserted or reordered record (sequence
// numbers and previous-hash links break). What it cannot catch alone: a
// database administrator who rewrites a record and recomputes every later
// hash. Anchors close that gap: an anchor is a MAC or signature over a
// record's sequence number and hash made with a key the database does not
// hold (from the KMS). A recomputed chain no longer matches its anchors, and
// a verifier that requires an anchor at least every N records notices
// anchors being stripped. What remains is the unanchored tail (at most N
// records) and truncation of the tail, which only an external copy of a
// recent head (a printed daily report, a second system) can reveal.
//
// The package is pure: Next builds the next record from the head and an
// event, the caller persists it (in the same transaction as the change it
// records), and Verifier checks a stream of records in constant memory.
package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"
)

// Tag opens every record encoding, separating audit hashes from any other
// SHA-256 use and naming the format version.
const Tag = "sluice audit v1\n"

// Limits on record fields, so one record cannot exhaust a verifier.
const (
	MaxName    = 4096    // actor, action and object, bytes each
	MaxDetails = 1 << 20 // details JSON, bytes
)

// Hash is a record's SHA-256 hash.
type Hash [sha256.Size]byte

func (h Hash) String() string { return hex.EncodeToString(h[:]) }

// IsZero reports whether h is all zeros (the genesis predecessor).
func (h Hash) IsZero() bool { return h == Hash{} }

// Sentinel errors; a *ChainError wraps one of them.
var (
	ErrInvalid    = errors.New("audit: invalid record")
	ErrEdited     = errors.New("record does not match its hash (edited)")
	ErrLink       = errors.New("previous-hash link broken (record edited and rehashed, inserted, deleted or reordered)")
	ErrSequence   = errors.New("sequence number out of order (record deleted, inserted or reordered)")
	ErrAnchor     = errors.New("anchor signature invalid (chain recomputed or anchor forged)")
	ErrUnanchored = errors.New("too many records without an anchor (anchors stripped)")
)

// Event is what happened, before it is chained.
type Event struct {
	Time    time.Time // kept to the microsecond, as databases store it
	Actor   string    // who: operator ID, API key ID, "system"
	Action  string    // what: "vend.purchase", "kms.sign", "operator.login"
	Object  string    // on what: "purchase/01J...", "meter/0123..."
	Details []byte    // JSON, hashed byte for byte; may be empty
}

// Record is one link of the chain.
type Record struct {
	Seq     uint64 // 1 for the first record, then +1 each
	Time    time.Time
	Actor   string
	Action  string
	Object  string
	Details []byte
	Prev    Hash   // Hash of record Seq-1; zero for Seq 1
	Hash    Hash   // SHA-256 of Encode(); stored so edits are pinpointed
	Anchor  []byte // optional signature over AnchorMessage(Seq, Hash); not hashed
}

// Head is where a chain ends: the last record's sequence number and hash.
// The zero Head is the empty chain.
type Head struct {
	Seq  uint64
	Hash Hash
}

// Head returns the chain head that r makes.
func (r *Record) Head() Head { return Head{r.Seq, r.Hash} }

// Next returns the record that appends e to the chain ending at head, its
// hash computed. The caller stores it; a unique constraint on Seq makes
// concurrent appenders from several replicas safe (the loser re-reads the
// head and tries again).
func Next(head Head, e Event) (Record, error) {
	r := Record{
		Seq: head.Seq + 1, Time: e.Time.Truncate(time.Microsecond).UTC(),
		Actor: e.Actor, Action: e.Action, Object: e.Object, Details: bytes.Clone(e.Details),
		Prev: head.Hash,
	}
	if err := r.validate(); err != nil {
		return Record{}, err
	}
	r.Hash = sha256.Sum256(r.Encode())
	return r, nil
}

func (r *Record) validate() error {
	bad := func(field, msg string) error { return fmt.Errorf("%w: %s: %s", ErrInvalid, field, msg) }
	switch {
	case r.Seq == 0:
		return bad("seq", "must be at least 1")
	case r.Seq == 1 && !r.Prev.IsZero():
		return bad("prev", "the first record's predecessor must be zero")
	case r.Time.IsZero():
		return bad("time", "required")
	case r.Time.Year() < 1970 || r.Time.Year() > 9999:
		return bad("time", "must be between 1970 and 9999")
	}
	for _, f := range []struct{ name, v string }{{"actor", r.Actor}, {"action", r.Action}, {"object", r.Object}} {
		if f.v == "" || len(f.v) > MaxName || !utf8.ValidString(f.v) {
			return bad(f.name, fmt.Sprintf("must be valid UTF-8 of 1 to %d bytes", MaxName))
		}
	}
	if len(r.Details) > MaxDetails {
		return bad("details", fmt.Sprintf("longer than %d bytes", MaxDetails))
	}
	if len(r.Details) > 0 && !json.Valid(r.Details) {
		return bad("details", "not valid JSON")
	}
	return nil
}

// Encode returns the canonical encoding that Hash is the SHA-256 of:
//
//	Tag (16 bytes) | seq uint64 | time int64 µs since the Unix epoch, UTC |
//	prev (32 bytes) | len uint32 | actor | len uint32 | action |
//	len uint32 | object | len uint32 | details
//
// with all integers big-endian. Each field has exactly one encoding, and the
// length prefixes make the split between fields unambiguous.
func (r *Record) Encode() []byte {
	n := len(Tag) + 8 + 8 + len(r.Prev) + 4*4 + len(r.Actor) + len(r.Action) + len(r.Object) + len(r.Details)
	return r.appendEncoding(make([]byte, 0, n))
}

func (r *Record) appendEncoding(b []byte) []byte {
	b = append(b, Tag...)
	b = binary.BigEndian.AppendUint64(b, r.Seq)
	b = binary.BigEndian.AppendUint64(b, uint64(r.Time.UnixMicro()))
	b = append(b, r.Prev[:]...)
	for _, f := range []string{r.Actor, r.Action, r.Object, string(r.Details)} {
		b = binary.BigEndian.AppendUint32(b, uint32(len(f)))
		b = append(b, f...)
	}
	return b
}

// Decode parses a canonical encoding (as exported by Encode) into a record
// and computes its hash. It accepts exactly the encodings Encode produces.
func Decode(b []byte) (Record, error) {
	var r Record
	rest, ok := bytes.CutPrefix(b, []byte(Tag))
	if !ok {
		return r, fmt.Errorf("%w: missing tag %q", ErrInvalid, Tag)
	}
	if len(rest) < 8+8+32 {
		return r, fmt.Errorf("%w: truncated header", ErrInvalid)
	}
	r.Seq = binary.BigEndian.Uint64(rest)
	r.Time = time.UnixMicro(int64(binary.BigEndian.Uint64(rest[8:]))).UTC()
	copy(r.Prev[:], rest[16:48])
	rest = rest[48:]
	var fields [4][]byte
	for i, name := range []string{"actor", "action", "object", "details"} {
		if len(rest) < 4 {
			return Record{}, fmt.Errorf("%w: %s: truncated length", ErrInvalid, name)
		}
		n := binary.BigEndian.Uint32(rest)
		rest = rest[4:]
		if uint64(n) > uint64(len(rest)) {
			return Record{}, fmt.Errorf("%w: %s: length %d beyond the data", ErrInvalid, name, n)
		}
		fields[i], rest = rest[:n], rest[n:]
	}
	if len(rest) != 0 {
		return Record{}, fmt.Errorf("%w: %d bytes after the details", ErrInvalid, len(rest))
	}
	r.Actor, r.Action, r.Object = string(fields[0]), string(fields[1]), string(fields[2])
	if len(fields[3]) > 0 {
		r.Details = bytes.Clone(fields[3])
	}
	if err := r.validate(); err != nil {
		return Record{}, err
	}
	r.Hash = sha256.Sum256(b)
	return r, nil
}
