package sqlstore_test

import (
	"strings"
	"testing"

	"sluice/store/sqlstore"
	"sluice/store/storetest"
)

// TestSealPlan checks that SQLite seals a batch by looking each record up
// by id, not by scanning the pending records with the VALUES list inside:
// that plan costs rows x pending steps, which at 512 records a statement is
// more than sealing them one statement each.
func TestSealPlan(t *testing.T) {
	db := storetest.OpenSQLite(t, false)
	for _, n := range []int{1, 8, 512} {
		rows, err := db.SQL().Query("EXPLAIN QUERY PLAN "+sqlstore.SealStatement(false, n), make([]any, 5*n)...)
		if err != nil {
			t.Fatal(err)
		}
		var plan []string
		for rows.Next() {
			var id, parent, unused int
			var detail string
			if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
				t.Fatal(err)
			}
			plan = append(plan, detail)
		}
		rows.Close()
		found := false
		for _, d := range plan {
			if strings.Contains(d, "audit_log") {
				if !strings.HasPrefix(d, "SEARCH audit_log USING INTEGER PRIMARY KEY") {
					t.Errorf("%d rows: audit_log is reached by %q; plan %q", n, d, plan)
				}
				found = true
			}
		}
		if !found {
			t.Errorf("%d rows: no audit_log in plan %q", n, plan)
		}
	}
}
