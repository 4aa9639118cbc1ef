package audit_test

import (
	"bytes"
	"fmt"
	"time"

	"sluice/audit"
)

// Append three records with HMAC anchors, let a database administrator
// rewrite one and recompute the whole chain, and verify.
func ExampleVerify() {
	key, _ := audit.NewHMAC(bytes.Repeat([]byte{0x42}, 32)) // from the KMS in production
	var head audit.Head
	var log []*audit.Record
	for i, action := range []string{"operator.login", "vend.purchase", "vend.reprint"} {
		r, err := audit.Next(head, audit.Event{
			Time: time.Date(2026, 7, 15, 8, 0, i, 0, time.UTC), Actor: "op:alice", Action: action, Object: "purchase/P-0001",
		})
		if err != nil {
			panic(err)
		}
		if err := r.Seal(key); err != nil {
			panic(err)
		}
		head = r.Head()
		log = append(log, &r)
	}
	records := func(yield func(*audit.Record, error) bool) {
		for _, r := range log {
			if !yield(r, nil) {
				return
			}
		}
	}
	sum, err := audit.Verify(records, audit.Options{Anchors: key, MaxUnanchored: 1})
	fmt.Println(sum.Records, "records, last anchored", sum.LastAnchored, "error:", err)

	// The administrator changes who reprinted, and rehashes every record.
	log[2].Actor = "op:mallory"
	var prev audit.Hash
	for _, r := range log {
		r.Prev = prev
		rr, _ := audit.Decode(r.Encode())
		r.Hash, prev = rr.Hash, rr.Hash
	}
	_, err = audit.Verify(records, audit.Options{Anchors: key, MaxUnanchored: 1})
	fmt.Println(err)
	// Output:
	// 3 records, last anchored 3 error: <nil>
	// audit: chain broken at record 3: anchor signature invalid (chain recomputed or anchor forged): signature mismatch
}
