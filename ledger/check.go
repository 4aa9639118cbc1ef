package ledger

import (
	"cmp"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"hash"
	"iter"
	"slices"
)

// Rule names an invariant; a Violation says which one broke.
type Rule string

// The invariants, in docs/ledger.md.
const (
	RuleMalformed       Rule = "malformed"        // entry fails Validate (including unbalanced)
	RuleOrder           Rule = "order"            // Seq not strictly increasing
	RuleDuplicateEntry  Rule = "duplicate-entry"  // entry ID seen before
	RuleFloatNegative   Rule = "float-negative"   // a vendor float went below zero
	RuleDebtNegative    Rule = "debt-negative"    // more debt recovered than owed
	RulePurchaseTwice   Rule = "purchase-twice"   // one purchase ID, two purchase entries (two token sets)
	RuleTIDReused       Rule = "tid-reused"       // an STS TID delivered twice to one meter
	RuleSeqReused       Rule = "seq-reused"       // a voucher sequence delivered twice to one meter
	RuleReversalUnknown Rule = "reversal-unknown" // reverses an entry not (yet) in the ledger
	RuleReversalTwice   Rule = "reversal-twice"   // an entry reversed twice, or a reversal reversed
	RuleReversalWrong   Rule = "reversal-wrong"   // postings are not the original's negated
)

// Violation is one broken invariant at one entry.
type Violation struct {
	Seq    uint64 `json:"seq"`
	Entry  string `json:"entry"`
	Rule   Rule   `json:"rule"`
	Detail string `json:"detail"`
}

func (v Violation) String() string {
	return fmt.Sprintf("entry %d %q: %s: %s", v.Seq, v.Entry, v.Rule, v.Detail)
}

type balanceKey struct {
	acct Account
	unit string
}

type meterID struct {
	meter string
	n     uint64
}

type meterTID struct {
	meter string
	base  uint16
	tid   uint32
}

type entryInfo struct {
	digest   [16]byte // of the postings, to recognise a true reversal
	reversal bool
	reversed bool
	purchase string
}

// Checker checks the invariants over entries fed in commit order. It keeps
// a digest per entry, every account's balance, and the TIDs and sequence
// numbers seen per meter: memory grows with the entries and tokens (about
// 150 bytes each) and the accounts, never with the postings.
type Checker struct {
	lastSeq   uint64
	entries   map[string]*entryInfo
	purchases map[string]string // purchase ID -> entry ID
	balances  map[balanceKey]int64
	tids      map[meterTID]string
	seqs      map[meterID]string
	n         uint64

	// scratch space, reused from entry to entry
	net []netEffect
	h   hash.Hash
	buf []byte
}

type netEffect struct {
	key    balanceKey
	amount int64
}

// NewChecker returns a checker for a ledger starting empty.
func NewChecker() *Checker {
	return &Checker{
		entries: map[string]*entryInfo{}, purchases: map[string]string{}, balances: map[balanceKey]int64{},
		tids: map[meterTID]string{}, seqs: map[meterID]string{}, h: sha256.New(),
	}
}

// Entries is the number of entries checked.
func (c *Checker) Entries() uint64 { return c.n }

// Balance is an account's balance (debit positive) after the entries
// checked so far.
func (c *Checker) Balance(a Account, unit string) int64 { return c.balances[balanceKey{a, unit}] }

// Balance is one line of a trial balance.
type Balance struct {
	Account Account `json:"account"`
	Unit    string  `json:"unit"`
	Amount  int64   `json:"amount"` // debit positive
}

// Balances is the trial balance after the entries checked so far, sorted
// by account and unit, without zero lines. Per unit it sums to zero; the
// reports of docs (settlement, sales, free water) must agree with it.
func (c *Checker) Balances() []Balance {
	var out []Balance
	for k, v := range c.balances {
		if v != 0 {
			out = append(out, Balance{k.acct, k.unit, v})
		}
	}
	slices.SortFunc(out, func(a, b Balance) int {
		return cmp.Or(cmp.Compare(a.Account.String(), b.Account.String()), cmp.Compare(a.Unit, b.Unit))
	})
	return out
}

// Add checks one entry against the ledger so far and records it. A
// malformed entry is reported and otherwise ignored; an entry breaking
// another rule is still recorded, so one fault is reported once and not
// again at every later entry.
func (c *Checker) Add(e *Entry) []Violation {
	c.n++
	var out []Violation
	report := func(r Rule, format string, args ...any) {
		out = append(out, Violation{Seq: e.Seq, Entry: e.ID, Rule: r, Detail: fmt.Sprintf(format, args...)})
	}
	if e.Seq != 0 {
		if e.Seq <= c.lastSeq {
			report(RuleOrder, "sequence %d after %d", e.Seq, c.lastSeq)
		}
		c.lastSeq = max(c.lastSeq, e.Seq)
	}
	if err := e.Validate(); err != nil {
		report(RuleMalformed, "%v", err)
		return out
	}
	if _, dup := c.entries[e.ID]; dup {
		report(RuleDuplicateEntry, "entry ID already in the ledger")
		return out
	}
	info := &entryInfo{digest: c.digest(e.Postings, 1), reversal: e.Type == TypeReversal, purchase: e.Purchase}
	c.entries[e.ID] = info

	switch e.Type {
	case TypePurchase:
		if prev, ok := c.purchases[e.Purchase]; ok {
			report(RulePurchaseTwice, "purchase %q already posted as %q", e.Purchase, prev)
		} else {
			c.purchases[e.Purchase] = e.ID
		}
	case TypeReversal:
		c.checkReversal(e, report)
	}

	for _, t := range e.Tokens {
		if t.TID != 0 {
			k := meterTID{t.Meter, t.Base, t.TID}
			if prev, ok := c.tids[k]; ok {
				report(RuleTIDReused, "meter %s TID %d (base %d) already delivered by %q", t.Meter, t.TID, t.Base, prev)
			} else {
				c.tids[k] = e.ID
			}
		}
		if t.Seq != 0 {
			k := meterID{t.Meter, t.Seq}
			if prev, ok := c.seqs[k]; ok {
				report(RuleSeqReused, "meter %s voucher sequence %d already delivered by %q", t.Meter, t.Seq, prev)
			} else {
				c.seqs[k] = e.ID
			}
		}
	}

	// An entry is atomic: only its net effect on an account matters, and
	// only an entry that draws a float (or debt) down past zero is at fault;
	// later entries that leave it below zero are not reported again.
	// Entries have a handful of postings: a linear scan beats a map.
	c.net = c.net[:0]
next:
	for _, p := range e.Postings {
		k := balanceKey{p.Account, p.Unit}
		for i := range c.net {
			if c.net[i].key == k {
				c.net[i].amount += p.Amount
				continue next
			}
		}
		c.net = append(c.net, netEffect{k, p.Amount})
	}
	for _, n := range c.net {
		k := n.key
		c.balances[k] += n.amount
		switch b := c.balances[k]; {
		case k.acct.Kind == Float && n.amount > 0 && b > 0:
			report(RuleFloatNegative, "float of vendor %s is %d %s", k.acct.ID, -b, k.unit)
		case k.acct.Kind == Debt && n.amount < 0 && b < 0:
			report(RuleDebtNegative, "customer %s debt is %d %s", k.acct.ID, b, k.unit)
		}
	}
	return out
}

func (c *Checker) checkReversal(e *Entry, report func(Rule, string, ...any)) {
	orig, ok := c.entries[e.Reverses]
	switch {
	case !ok:
		report(RuleReversalUnknown, "reverses %q, which is not earlier in the ledger", e.Reverses)
	case orig.reversal:
		report(RuleReversalTwice, "reverses %q, itself a reversal", e.Reverses)
	case orig.reversed:
		report(RuleReversalTwice, "%q was already reversed", e.Reverses)
	default:
		orig.reversed = true
		if c.digest(e.Postings, -1) != orig.digest {
			report(RuleReversalWrong, "postings are not those of %q negated", e.Reverses)
		}
		if e.Purchase != orig.purchase {
			report(RuleReversalWrong, "purchase %q, but %q belongs to %q", e.Purchase, e.Reverses, orig.purchase)
		}
	}
}

// digest hashes postings (amounts multiplied by sign) in order, so a true
// reversal's digest with sign -1 equals the original's with sign +1.
func (c *Checker) digest(ps []Posting, sign int64) [16]byte {
	c.buf = c.buf[:0]
	for _, p := range ps {
		for _, s := range []string{string(p.Account.Kind), p.Account.ID, p.Unit} {
			c.buf = binary.BigEndian.AppendUint32(c.buf, uint32(len(s)))
			c.buf = append(c.buf, s...)
		}
		c.buf = binary.BigEndian.AppendUint64(c.buf, uint64(sign*p.Amount))
	}
	c.h.Reset()
	c.h.Write(c.buf)
	var sum [sha256.Size]byte
	var d [16]byte
	copy(d[:], c.h.Sum(sum[:0]))
	return d
}

// Check runs a Checker over a stream of entries in commit order (as the
// store yields them) and yields each violation. An error from the stream
// is yielded once and ends the check.
func Check(entries iter.Seq2[*Entry, error]) iter.Seq2[Violation, error] {
	return func(yield func(Violation, error) bool) {
		c := NewChecker()
		for e, err := range entries {
			if err != nil {
				yield(Violation{}, fmt.Errorf("ledger: reading entry %d: %w", c.n+1, err))
				return
			}
			for _, v := range c.Add(e) {
				if !yield(v, nil) {
					return
				}
			}
		}
	}
}
