package auditlog_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"sluice/audit"
	"sluice/auditlog"
	"sluice/keys"
	"sluice/kms"
	"sluice/kms/filekms/filekmstest"
	"sluice/store"
	"sluice/store/sqlstore"
	"sluice/store/storetest"
)

var t0 = time.Date(2026, 11, 25, 8, 0, 0, 123456000, time.UTC)

// appendN writes n pending records, one transaction each as the head-end
// does, numbered from first.
func appendN(t testing.TB, st store.Store, first, n int) {
	t.Helper()
	for i := first; i < first+n; i++ {
		err := st.Tx(context.Background(), func(tx store.Tx) error {
			return tx.Audit().Append(context.Background(), store.AuditRecord{
				At: t0.Add(time.Duration(i) * time.Second), Actor: "operator/1", Action: "vend.purchase",
				Object: fmt.Sprintf("purchase/%d", i), Details: []byte(fmt.Sprintf(`{"i":%d,"cents":1000}`, i)),
			})
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}

func newAnchors(t testing.TB, km kms.KeyManager) *auditlog.KMSAnchors {
	t.Helper()
	a, err := auditlog.NewKMSAnchors(context.Background(), km)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// sealed returns a store holding n sealed records, anchored with a.
func sealed(t *testing.T, db *sqlstore.DB, a audit.Signer, n int) {
	t.Helper()
	appendN(t, db, 1, n)
	got, err := auditlog.Seal(context.Background(), db, a, 40)
	if err != nil || got != n {
		t.Fatalf("Seal = %d, %v; want %d", got, err, n)
	}
}

// sqlExec runs a statement written with ? placeholders on either database,
// the way someone with database access would tamper with it.
func sqlExec(t testing.TB, db *sqlstore.DB, q string, args ...any) {
	t.Helper()
	if db.Driver() == "postgres" {
		var b strings.Builder
		n := 0
		for _, c := range q {
			if c == '?' {
				n++
				fmt.Fprintf(&b, "$%d", n)
				continue
			}
			b.WriteRune(c)
		}
		q = b.String()
	}
	if _, err := db.SQL().Exec(q, args...); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

func verify(t testing.TB, db *sqlstore.DB, v audit.AnchorVerifier) auditlog.Report {
	t.Helper()
	rep, err := auditlog.Verify(context.Background(), db, v)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

func wantBad(t testing.TB, rep auditlog.Report, seq uint64, problem string) {
	t.Helper()
	if rep.OK || rep.FirstBad != seq || rep.Problem != problem || rep.Failure == nil {
		t.Fatalf("report %+v: want first bad %d %s", rep, seq, problem)
	}
	t.Logf("%s at %d: %s", rep.Problem, rep.FirstBad, rep.Detail)
}

func TestSealThenVerify(t *testing.T) {
	km := filekmstest.WithMeterRoot(t)
	storetest.Each(t, func(t *testing.T, db *sqlstore.DB) {
		a := newAnchors(t, km)
		rep := verify(t, db, a)
		if !rep.OK || rep.Records != 0 || rep.Head != 0 {
			t.Fatalf("empty chain: %+v", rep)
		}
		sealed(t, db, a, 150)
		appendN(t, db, 151, 3)
		rep = verify(t, db, a)
		if !rep.OK || rep.Records != 150 || rep.Head != 150 || rep.Pending != 3 || !rep.AnchorsChecked {
			t.Fatalf("report %+v", rep)
		}
		// Anchors at 64 and 128 and on the last record of each batch of 40.
		if rep.Anchored < 150/auditlog.AnchorInterval || rep.LastAnchored != 150 {
			t.Fatalf("anchored %d, last %d", rep.Anchored, rep.LastAnchored)
		}
		if n, err := auditlog.Seal(context.Background(), db, a, 0); err != nil || n != 3 {
			t.Fatalf("second seal: %d, %v", n, err)
		}
		if rep = verify(t, db, a); !rep.OK || rep.Records != 153 || rep.Pending != 0 {
			t.Fatalf("after second seal: %+v", rep)
		}
		// The stored records are package audit's records: the chain
		// also verifies through audit.Verify over the raw rows.
		var records []*audit.Record
		err := db.Read(context.Background(), func(tx store.Tx) error {
			return tx.Audit().Each(context.Background(), 1, func(r store.AuditRecord) error {
				ar := &audit.Record{Seq: uint64(r.Seq), Time: r.At, Actor: r.Actor, Action: r.Action, Object: r.Object,
					Details: r.Details, Prev: audit.Hash(r.PrevHash), Hash: audit.Hash(r.Hash), Anchor: r.Anchor}
				records = append(records, ar)
				return nil
			})
		})
		if err != nil {
			t.Fatal(err)
		}
		sum, err := audit.Verify(func(yield func(*audit.Record, error) bool) {
			for _, r := range records {
				if !yield(r, nil) {
					return
				}
			}
		}, audit.Options{Anchors: a, MaxUnanchored: auditlog.AnchorInterval})
		if err != nil || sum.Records != 153 {
			t.Fatalf("audit.Verify: %+v %v", sum, err)
		}
	})
}

func TestVerifyReportsTampering(t *testing.T) {
	km := filekmstest.WithMeterRoot(t)
	cases := []struct {
		name    string
		tamper  func(t *testing.T, db *sqlstore.DB)
		seq     uint64
		problem string
	}{
		{"edit actor", func(t *testing.T, db *sqlstore.DB) {
			sqlExec(t, db, `UPDATE audit_log SET actor = 'mallory' WHERE seq = 7`)
		}, 7, auditlog.Edited},
		{"edit details", func(t *testing.T, db *sqlstore.DB) {
			sqlExec(t, db, `UPDATE audit_log SET details = ? WHERE seq = 12`, []byte(`{"i":12,"cents":1}`))
		}, 12, auditlog.Edited},
		{"edit time", func(t *testing.T, db *sqlstore.DB) {
			sqlExec(t, db, `UPDATE audit_log SET at = at + 1 WHERE seq = 3`)
		}, 3, auditlog.Edited},
		{"delete one", func(t *testing.T, db *sqlstore.DB) {
			sqlExec(t, db, `DELETE FROM audit_log WHERE seq = 7`)
		}, 7, auditlog.Deleted},
		{"delete several", func(t *testing.T, db *sqlstore.DB) {
			sqlExec(t, db, `DELETE FROM audit_log WHERE seq BETWEEN 9 AND 11`)
		}, 9, auditlog.Deleted},
		{"delete and renumber", func(t *testing.T, db *sqlstore.DB) {
			sqlExec(t, db, `DELETE FROM audit_log WHERE seq = 9`)
			sqlExec(t, db, `UPDATE audit_log SET seq = seq + 1000 WHERE seq > 9`)
			sqlExec(t, db, `UPDATE audit_log SET seq = seq - 1001 WHERE seq > 1000`)
		}, 9, auditlog.Deleted},
		{"swap seq", func(t *testing.T, db *sqlstore.DB) {
			sqlExec(t, db, `UPDATE audit_log SET seq = -1 WHERE seq = 5`)
			sqlExec(t, db, `UPDATE audit_log SET seq = 5 WHERE seq = 12`)
			sqlExec(t, db, `UPDATE audit_log SET seq = 12 WHERE seq = -1`)
		}, 5, auditlog.Reordered},
		{"swap neighbours", func(t *testing.T, db *sqlstore.DB) {
			sqlExec(t, db, `UPDATE audit_log SET seq = -1 WHERE seq = 5`)
			sqlExec(t, db, `UPDATE audit_log SET seq = 5 WHERE seq = 6`)
			sqlExec(t, db, `UPDATE audit_log SET seq = 6 WHERE seq = -1`)
		}, 5, auditlog.Reordered},
		{"insert and renumber", func(t *testing.T, db *sqlstore.DB) {
			// A forged record at 8, correctly chained after 7, and
			// everything from 8 moved up one.
			var prev []byte
			if err := db.SQL().QueryRow(`SELECT hash FROM audit_log WHERE seq = 7`).Scan(&prev); err != nil {
				t.Fatal(err)
			}
			r, err := audit.Next(audit.Head{Seq: 7, Hash: audit.Hash(prev)}, audit.Event{Time: t0, Actor: "operator/9", Action: "vend.purchase", Object: "purchase/x"})
			if err != nil {
				t.Fatal(err)
			}
			sqlExec(t, db, `UPDATE audit_log SET seq = seq + 1000 WHERE seq >= 8`)
			sqlExec(t, db, `UPDATE audit_log SET seq = seq - 999 WHERE seq > 1000`)
			sqlExec(t, db, `INSERT INTO audit_log (at, actor, action, object, details, seq, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
				r.Time.UnixMicro(), r.Actor, r.Action, r.Object, []byte{}, 8, r.Prev[:], r.Hash[:])
		}, 8, auditlog.Inserted},
		{"edit and rehash one record", func(t *testing.T, db *sqlstore.DB) {
			rechain(t, db, 10, 10, nil)
		}, 10, auditlog.Edited},
		{"stored hash cut short", func(t *testing.T, db *sqlstore.DB) {
			sqlExec(t, db, `UPDATE audit_log SET hash = ? WHERE seq = 4`, []byte{1, 2, 3})
		}, 4, auditlog.Edited},
	}
	// One store per back end (migrations are the slow part), emptied
	// before each case.
	storetest.Each(t, func(t *testing.T, db *sqlstore.DB) {
		a := newAnchors(t, km)
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				sqlExec(t, db, `DELETE FROM audit_log`)
				sealed(t, db, a, 30)
				c.tamper(t, db)
				wantBad(t, verify(t, db, a), c.seq, c.problem)
				// Without anchors the hash chain alone still catches it.
				wantBad(t, verify(t, db, nil), c.seq, c.problem)
			})
		}
	})
}

// rechain rewrites record from (its actor) and recomputes the chain from
// there to the record to, the way an attacker with database access but no
// anchor key would; anchor decides what happens to the anchors.
func rechain(t testing.TB, db *sqlstore.DB, from, to int64, anchor func(r *audit.Record, old []byte) []byte) {
	t.Helper()
	var prev []byte
	if err := db.SQL().QueryRow(fmt.Sprintf(`SELECT hash FROM audit_log WHERE seq = %d`, from-1)).Scan(&prev); err != nil {
		t.Fatal(err)
	}
	head := audit.Head{Seq: uint64(from - 1), Hash: audit.Hash(prev)}
	type row struct {
		id, at                int64
		actor, action, object string
		details, oldAnchor    []byte
	}
	rows, err := db.SQL().Query(fmt.Sprintf(`SELECT id, at, actor, action, object, details, anchor FROM audit_log WHERE seq BETWEEN %d AND %d ORDER BY seq`, from, to))
	if err != nil {
		t.Fatal(err)
	}
	var rs []row
	for rows.Next() {
		var r row
		if err := rows.Scan(&r.id, &r.at, &r.actor, &r.action, &r.object, &r.details, &r.oldAnchor); err != nil {
			t.Fatal(err)
		}
		rs = append(rs, r)
	}
	rows.Close()
	rs[0].actor = "mallory"
	for _, r := range rs {
		rec, err := audit.Next(head, audit.Event{Time: time.UnixMicro(r.at), Actor: r.actor, Action: r.action, Object: r.object, Details: r.details})
		if err != nil {
			t.Fatal(err)
		}
		newAnchor := r.oldAnchor
		if anchor != nil {
			newAnchor = anchor(&rec, r.oldAnchor)
		}
		sqlExec(t, db, `UPDATE audit_log SET actor = ?, prev_hash = ?, hash = ?, anchor = ? WHERE id = ?`,
			r.actor, rec.Prev[:], rec.Hash[:], newAnchor, r.id)
		head = rec.Head()
	}
}

func TestRecomputedChainFailsAnchors(t *testing.T) {
	km := filekmstest.WithMeterRoot(t)
	mallory, err := audit.NewHMAC(make([]byte, 32))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name    string
		anchor  func(r *audit.Record, old []byte) []byte
		seq     uint64
		problem string
	}{
		{"old anchors kept", nil, 64, auditlog.Anchor},
		{"anchors forged with another key", func(r *audit.Record, old []byte) []byte {
			if old == nil {
				return nil
			}
			sig, _ := mallory.SignAnchor(audit.AnchorMessage(r.Seq, r.Hash))
			return append([]byte{0, 0, 0, 1}, sig...)
		}, 64, auditlog.Anchor},
		{"anchors stripped", func(*audit.Record, []byte) []byte { return nil }, 1 + auditlog.AnchorInterval, auditlog.Unanchored},
	}
	storetest.Each(t, func(t *testing.T, db *sqlstore.DB) {
		a := newAnchors(t, km)
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				sqlExec(t, db, `DELETE FROM audit_log`)
				appendN(t, db, 1, 150)
				if _, err := auditlog.Seal(context.Background(), db, a, 200); err != nil {
					t.Fatal(err)
				}
				rechain(t, db, 10, 150, c.anchor)
				wantBad(t, verify(t, db, a), c.seq, c.problem)
				// The hash chain alone cannot tell: that is what anchors are for.
				if rep := verify(t, db, nil); !rep.OK || rep.Records != 150 {
					t.Fatalf("recomputed chain without anchors: %+v", rep)
				}
			})
		}
	})
}

func TestAnchorsSurviveRootRotation(t *testing.T) {
	km := filekmstest.WithMeterRoot(t)
	db := storetest.OpenSQLite(t, false)
	sealed(t, db, newAnchors(t, km), 70)
	if _, err := km.Rotate(context.Background(), keys.MeterRoot); err != nil {
		t.Fatal(err)
	}
	a2 := newAnchors(t, km)
	if a2.RootVersion() != 2 {
		t.Fatalf("root version %d", a2.RootVersion())
	}
	appendN(t, db, 71, 10)
	if _, err := auditlog.Seal(context.Background(), db, a2, 0); err != nil {
		t.Fatal(err)
	}
	if rep := verify(t, db, newAnchors(t, km)); !rep.OK || rep.Records != 80 || rep.LastAnchored != 80 {
		t.Fatalf("after rotation: %+v", rep)
	}
	// An anchor key from another KMS proves nothing here.
	if rep := verify(t, db, newAnchors(t, filekmstest.WithMeterRoot(t))); rep.OK || rep.Problem != auditlog.Anchor {
		t.Fatalf("foreign anchor key: %+v", rep)
	}
}

func TestConcurrentSealersNeverFork(t *testing.T) {
	km := filekmstest.WithMeterRoot(t)
	storetest.Each(t, func(t *testing.T, db *sqlstore.DB) {
		const writers, each, sealers = 4, 40, 4
		a := newAnchors(t, km)
		ctx := context.Background()
		var wg sync.WaitGroup
		for w := range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				appendN(t, db, 1+w*each, each)
			}()
		}
		done := make(chan struct{})
		var sealWG sync.WaitGroup
		var mu sync.Mutex
		total := 0
		errs := make(chan error, sealers)
		for range sealers {
			sealWG.Add(1)
			go func() {
				defer sealWG.Done()
				for {
					select {
					case <-done:
						return
					default:
					}
					n, err := auditlog.Seal(ctx, db, a, 7)
					if err != nil {
						errs <- err
						return
					}
					mu.Lock()
					total += n
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		n, err := auditlog.Seal(ctx, db, a, 0) // whatever the racing sealers left
		if err != nil {
			t.Fatal(err)
		}
		close(done)
		sealWG.Wait()
		close(errs)
		for err := range errs {
			t.Fatalf("concurrent sealer: %v", err)
		}
		if total+n != writers*each {
			t.Fatalf("sealed %d records in all, want %d: a record was sealed twice or not at all", total+n, writers*each)
		}
		rep := verify(t, db, a)
		if !rep.OK || rep.Records != writers*each || rep.Pending != 0 {
			t.Fatalf("after concurrent sealing: %+v", rep)
		}
	})
}

func TestUnsealableRecordStopsTheSealer(t *testing.T) {
	db := storetest.OpenSQLite(t, false)
	appendN(t, db, 1, 2)
	err := db.Tx(context.Background(), func(tx store.Tx) error {
		return tx.Audit().Append(context.Background(), store.AuditRecord{At: t0, Actor: "", Action: "x", Object: "y"})
	})
	if err != nil {
		t.Fatal(err)
	}
	n, err := auditlog.Seal(context.Background(), db, nil, 0)
	if n != 0 || err == nil || !strings.Contains(err.Error(), "actor") {
		t.Fatalf("Seal = %d, %v; want an error naming the actor", n, err)
	}
	if rep := verify(t, db, nil); !rep.OK || rep.Records != 0 || rep.Pending != 3 {
		t.Fatalf("report %+v", rep)
	}
}

func TestRunSealer(t *testing.T) {
	km := filekmstest.WithMeterRoot(t)
	db := storetest.OpenSQLite(t, false)
	a := newAnchors(t, km)
	stop := auditlog.StartSealer(db, auditlog.SealerOptions{Every: 10 * time.Millisecond, Anchor: a})
	appendN(t, db, 1, 5)
	deadline := time.Now().Add(10 * time.Second)
	for {
		rep := verify(t, db, a)
		if rep.Records == 5 && rep.Pending == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("sealer did not seal: %+v", rep)
		}
		time.Sleep(5 * time.Millisecond)
	}
	// Stopping seals what is left.
	appendN(t, db, 6, 3)
	stop()
	if rep := verify(t, db, a); !rep.OK || rep.Records != 8 || rep.Pending != 0 {
		t.Fatalf("after stop: %+v", rep)
	}
}

func TestAnchorFormat(t *testing.T) {
	a := newAnchors(t, filekmstest.WithMeterRoot(t))
	msg := audit.AnchorMessage(1, audit.Hash{1})
	sig, err := a.SignAnchor(msg)
	if err != nil || len(sig) != 36 {
		t.Fatalf("anchor %x, %v", sig, err)
	}
	if err := a.VerifyAnchor(msg, sig); err != nil {
		t.Fatal(err)
	}
	for _, bad := range [][]byte{nil, sig[:35], append([]byte{0, 0, 0, 0}, sig[4:]...), append([]byte{0, 0, 0, 9}, sig[4:]...)} {
		if err := a.VerifyAnchor(msg, bad); err == nil {
			t.Errorf("anchor %x accepted", bad)
		}
	}
	rand.Read(sig[10:12])
	if err := a.VerifyAnchor(msg, sig); err == nil {
		t.Error("altered anchor accepted")
	}
}

func TestCollector(t *testing.T) {
	db := storetest.OpenSQLite(t, false)
	sealed(t, db, nil, 4)
	appendN(t, db, 5, 2)
	reg := prometheus.NewRegistry()
	reg.MustRegister(auditlog.NewCollector(db))
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			if g := m.GetGauge(); g != nil {
				got[mf.GetName()] = g.GetValue()
			}
		}
	}
	if got["sluice_audit_pending_records"] != 2 || got["sluice_audit_sealed_records"] != 4 {
		t.Fatalf("metrics %v", got)
	}
}

func TestRunSealerDerivesItsAnchorKey(t *testing.T) {
	km := filekmstest.New(t)
	db := storetest.OpenSQLite(t, false)
	appendN(t, db, 1, 3)
	// No meter root yet: nothing is sealed, nothing is lost.
	stop := auditlog.StartSealer(db, auditlog.SealerOptions{Every: 5 * time.Millisecond, KMS: km})
	time.Sleep(30 * time.Millisecond)
	stop()
	if rep := verify(t, db, nil); rep.Records != 0 || rep.Pending != 3 {
		t.Fatalf("sealed without an anchor key: %+v", rep)
	}
	if _, err := km.CreateKey(context.Background(), keys.MeterRoot, kms.AES256); err != nil {
		t.Fatal(err)
	}
	stop = auditlog.StartSealer(db, auditlog.SealerOptions{Every: time.Hour, KMS: km})
	stop() // the final round seals
	if rep := verify(t, db, newAnchors(t, km)); !rep.OK || rep.Records != 3 || rep.LastAnchored != 3 {
		t.Fatalf("after the key exists: %+v", rep)
	}
}

// BenchmarkSeal measures sealing on SQLite with anchors, in records per
// second (one batch of 500 per transaction).
func BenchmarkSeal(b *testing.B) {
	db := storetest.OpenSQLite(b, false)
	a := newAnchors(b, filekmstest.WithMeterRoot(b))
	appendBatch(b, db, b.N)
	b.ResetTimer()
	n, err := auditlog.Seal(context.Background(), db, a, 0)
	if err != nil || n != b.N {
		b.Fatalf("sealed %d, %v", n, err)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
}

// BenchmarkVerify measures verification of a stored chain with anchors.
func BenchmarkVerify(b *testing.B) {
	db := storetest.OpenSQLite(b, false)
	a := newAnchors(b, filekmstest.WithMeterRoot(b))
	const n = 20_000
	appendBatch(b, db, n)
	if _, err := auditlog.Seal(context.Background(), db, a, 0); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		if rep, err := auditlog.Verify(context.Background(), db, a); err != nil || !rep.OK {
			b.Fatalf("%+v %v", rep, err)
		}
	}
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "records/s")
}

// appendBatch writes n pending records in one transaction.
func appendBatch(b *testing.B, st store.Store, n int) {
	b.Helper()
	err := st.Tx(context.Background(), func(tx store.Tx) error {
		for i := range n {
			err := tx.Audit().Append(context.Background(), store.AuditRecord{
				At: t0.Add(time.Duration(i) * time.Second), Actor: "operator/1", Action: "vend.purchase",
				Object: fmt.Sprintf("purchase/%d", i), Details: []byte(fmt.Sprintf(`{"i":%d,"cents":1000}`, i)),
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
}

func TestCheckHead(t *testing.T) {
	km := filekmstest.WithMeterRoot(t)
	storetest.Each(t, func(t *testing.T, db *sqlstore.DB) {
		a := newAnchors(t, km)
		ctx := context.Background()
		sealed(t, db, a, 20)
		rep := verify(t, db, a)
		head, err := auditlog.ParseHead(rep.HeadString())
		if err != nil || head.Seq != 20 {
			t.Fatalf("ParseHead(%q) = %+v, %v", rep.HeadString(), head, err)
		}
		appendN(t, db, 21, 5)
		if _, err := auditlog.Seal(ctx, db, a, 0); err != nil {
			t.Fatal(err)
		}
		if err := auditlog.CheckHead(ctx, db, head); err != nil {
			t.Fatalf("a longer chain extends the old head: %v", err)
		}
		// Truncation: the newest records deleted with their anchors. The
		// rest still verifies; only the recorded head shows it.
		sqlExec(t, db, `DELETE FROM audit_log WHERE seq > 15`)
		if rep := verify(t, db, a); !rep.OK || rep.Records != 15 {
			t.Fatalf("truncated chain: %+v", rep)
		}
		if err := auditlog.CheckHead(ctx, db, head); !errors.Is(err, auditlog.ErrTruncated) {
			t.Fatalf("truncated: %v", err)
		}
		if err := auditlog.CheckHead(ctx, db, audit.Head{Seq: 10, Hash: audit.Hash{1}}); !errors.Is(err, auditlog.ErrForked) {
			t.Fatalf("forked: %v", err)
		}
	})
	for _, bad := range []string{"", "20", "0:" + strings.Repeat("00", 32), "x:ab", "3:abcd", "3:" + strings.Repeat("zz", 32)} {
		if _, err := auditlog.ParseHead(bad); err == nil {
			t.Errorf("ParseHead(%q) accepted", bad)
		}
	}
}

func FuzzParseHead(f *testing.F) {
	f.Add("20:" + strings.Repeat("ab", 32))
	f.Add("1:" + strings.Repeat("00", 32))
	f.Add("18446744073709551615:" + strings.Repeat("FF", 32))
	f.Add("x")
	f.Fuzz(func(t *testing.T, s string) {
		h, err := auditlog.ParseHead(s)
		if err != nil {
			return
		}
		again, err := auditlog.ParseHead(auditlog.Report{Head: h.Seq, HeadHash: h.Hash.String()}.HeadString())
		if err != nil || again != h {
			t.Fatalf("%q parsed to %+v, which does not round-trip: %+v %v", s, h, again, err)
		}
	})
}
