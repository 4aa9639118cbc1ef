package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"sluice/store"
	"sluice/store/sqlstore"
)

// TestAuditSealBatch seals batches of sizes that take one padded
// statement, exactly one full statement, and a full statement plus a tail,
// and checks each record got its own place in the chain.
func TestAuditSealBatch(t *testing.T) {
	Each(t, func(t *testing.T, db *sqlstore.DB) {
		ctx := context.Background()
		at := time.Date(2026, 11, 25, 8, 0, 0, 0, time.UTC)
		const total = 1 + 3 + 512 + 515
		err := db.Tx(ctx, func(tx store.Tx) error {
			for i := range total {
				if err := tx.Audit().Append(ctx, store.AuditRecord{At: at, Actor: "system", Action: "test", Object: fmt.Sprint(i), Details: []byte(`{}`)}); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		seq := int64(0)
		for _, n := range []int{1, 3, 512, 515} {
			err := db.Tx(ctx, func(tx store.Tx) error {
				p, err := tx.Audit().Pending(ctx, n)
				if err != nil || len(p) != n {
					return fmt.Errorf("pending %d: %d, %v", n, len(p), err)
				}
				for i := range p {
					s := seq + int64(i) + 1
					p[i].Seq, p[i].PrevHash, p[i].Hash = s, sealHash(s-1), sealHash(s)
					if s%2 == 0 {
						p[i].Anchor = []byte{byte(s), 1}
					}
				}
				return tx.Audit().Seal(ctx, p...)
			})
			if err != nil {
				t.Fatalf("sealing %d: %v", n, err)
			}
			seq += int64(n)
		}
		db.Read(ctx, func(tx store.Tx) error {
			if n, err := tx.Audit().CountPending(ctx); n != 0 || err != nil {
				t.Errorf("pending after sealing all: %d, %v", n, err)
			}
			want := int64(1)
			err := tx.Audit().Each(ctx, 1, func(r store.AuditRecord) error {
				if r.Seq != want || r.Object != fmt.Sprint(want-1) || !bytes.Equal(r.PrevHash, sealHash(want-1)) || !bytes.Equal(r.Hash, sealHash(want)) {
					return fmt.Errorf("record %d: %+v", want, r)
				}
				if (want%2 == 0) != (len(r.Anchor) > 0) || (len(r.Anchor) > 0 && r.Anchor[0] != byte(want)) {
					return fmt.Errorf("record %d: anchor %x", want, r.Anchor)
				}
				want++
				return nil
			})
			if err != nil || want != total+1 {
				t.Errorf("chain: %v, %d records", err, want-1)
			}
			return nil
		})
	})
}

// TestAuditSealRefusesSealed checks that a batch holding one record that is
// no longer pending (another sealer got there) fails as a whole, so the
// transaction rolls back and nothing of the batch is written.
func TestAuditSealRefusesSealed(t *testing.T) {
	Each(t, func(t *testing.T, db *sqlstore.DB) {
		ctx := context.Background()
		at := time.Date(2026, 11, 25, 8, 0, 0, 0, time.UTC)
		var p []store.AuditRecord
		err := db.Tx(ctx, func(tx store.Tx) error {
			for i := range 5 {
				if err := tx.Audit().Append(ctx, store.AuditRecord{At: at, Actor: "system", Action: "test", Object: fmt.Sprint(i), Details: []byte(`{}`)}); err != nil {
					return err
				}
			}
			var err error
			p, err = tx.Audit().Pending(ctx, 5)
			return err
		})
		if err != nil || len(p) != 5 {
			t.Fatal(len(p), err)
		}
		for i := range p {
			p[i].Seq, p[i].PrevHash, p[i].Hash = int64(i+1), sealHash(int64(i)), sealHash(int64(i+1))
		}
		if err := db.Tx(ctx, func(tx store.Tx) error { return tx.Audit().Seal(ctx, p[2]) }); err != nil {
			t.Fatal(err)
		}
		err = db.Tx(ctx, func(tx store.Tx) error { return tx.Audit().Seal(ctx, p...) })
		if !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("sealing a batch with a sealed record: %v, want ErrNotFound", err)
		}
		db.Read(ctx, func(tx store.Tx) error {
			if n, err := tx.Audit().CountPending(ctx); n != 4 || err != nil {
				t.Errorf("pending after the refused batch: %d, %v; want 4", n, err)
			}
			return nil
		})
	})
}

func sealHash(seq int64) []byte {
	h := bytes.Repeat([]byte{0xa5}, 32)
	h[0], h[1] = byte(seq), byte(seq>>8)
	return h
}
