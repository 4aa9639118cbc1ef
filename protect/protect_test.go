package protect

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"sluice/auth"
	"sluice/kms/filekms/filekmstest"
	"sluice/server"
	"sluice/server/servertest"
	"sluice/store"
	"sluice/store/sqlstore"
	"sluice/store/storetest"
	"sluice/telemetry/frame"
	"sluice/vend"
)

var cheap = auth.Params{Memory: 64, Time: 1, Threads: 1}

func meterRow(t *testing.T, db store.Store, number string) store.Meter {
	t.Helper()
	ctx := context.Background()
	var m store.Meter
	err := db.Tx(ctx, func(tx store.Tx) error {
		if _, err := tx.Tariffs().Get(ctx, "DOM"); err != nil {
			if err := tx.Tariffs().Put(ctx, store.Tariff{Code: "DOM", Definition: []byte(`{}`)}); err != nil {
				return err
			}
		}
		var err error
		m, err = tx.Meters().Create(ctx, store.Meter{Number: number, Kind: store.MeterAMI, TariffCode: "DOM", Area: "north"})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// vendLitres posts what a purchase posts on the litre memo accounts.
func vendLitres(t *testing.T, db store.Store, id, number string, litres int64) {
	t.Helper()
	ctx := context.Background()
	err := db.Tx(ctx, func(tx store.Tx) error {
		_, err := tx.Ledger().Append(ctx, store.LedgerEntry{ID: "purchase:" + id, Type: "purchase", Purchase: id, Time: time.Now().UTC(),
			Postings: []store.Posting{{Account: "credit:" + number, Unit: "L", Amount: litres}, {Account: "issued:water", Unit: "L", Amount: -litres}}})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestObserveRaisesAlerts(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *sqlstore.DB) {
		ctx := context.Background()
		m := meterRow(t, db, "4710001")
		vendLitres(t, db, "1", "4710001", 1000)
		now := time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)
		s := New(Config{Store: db, Now: func() time.Time { return now }})
		read := func(loaded uint64, status frame.Status) {
			t.Helper()
			f := &frame.Frame{Kind: frame.KindReading, Meter: 4710001, Time: now, Reading: frame.Reading{Loaded: loaded, Unit: frame.UnitLitres, Status: status}}
			if err := s.Observe(ctx, m.ID, 4710001, f); err != nil {
				t.Fatal(err)
			}
		}
		read(1000, 0) // all of it sold
		read(1000, frame.TamperMagnet)
		read(1000, frame.TamperMagnet) // still latched: refreshed at most hourly
		read(1600, frame.TamperMagnet) // 600 L nobody sold
		var alerts []store.Alert
		db.Read(ctx, func(tx store.Tx) error {
			var err error
			alerts, err = tx.Alerts().List(ctx, store.AlertFilter{MeterID: m.ID})
			return err
		})
		byRule := map[string]store.Alert{}
		for _, a := range alerts {
			byRule[a.Rule] = a
		}
		if len(alerts) != 2 || byRule[RuleTamperMagnet].Count != 1 {
			t.Fatalf("alerts %+v", alerts)
		}
		u := byRule[RuleUnsoldCredit]
		var d map[string]any
		json.Unmarshal(u.Details, &d)
		if u.Severity != store.SeverityCritical || d["excess_litres"] != float64(600) || d["suggest"] != "key-change" {
			t.Fatalf("unsold-credit alert %+v", u)
		}
		var pending int64
		db.Read(ctx, func(tx store.Tx) error { pending, _ = tx.Audit().CountPending(ctx); return nil })
		if pending != 2 {
			t.Fatalf("%d audit records, want one per opened alert", pending)
		}
	})
}

func TestAlertAPI(t *testing.T) {
	db := storetest.OpenSQLite(t, false)
	ctx := context.Background()
	km := filekmstest.New(t)
	m := meterRow(t, db, "4710001")
	s := New(Config{Store: db})
	if err := s.Raise(ctx, m.ID, "meter:4710001", Finding{Rule: RuleTamperCover, Severity: store.SeverityWarning, Summary: "cover"}); err != nil {
		t.Fatal(err)
	}
	srv := server.New(server.Config{Store: db, Auth: auth.NewService(db, cheap, nil), Vend: vend.New(vend.Config{Store: db, Keys: vend.KMSKeys{KM: km}}), Extra: Routes(s)})
	ts := httptest.NewServer(srv.Handler())
	defer ts.Close()
	login := func(role string) *servertest.Client {
		h, _ := auth.Hash("password-"+role, cheap)
		db.Tx(ctx, func(tx store.Tx) error {
			_, err := tx.Operators().Create(ctx, store.Operator{Username: role + "1", DisplayName: role, Role: role, PasswordHash: h})
			return err
		})
		return servertest.Login(t, ts.URL, role+"1", "password-"+role)
	}
	auditor, vendor, sup := login(auth.Auditor), login(auth.Vendor), login(auth.Supervisor)

	st, b := auditor.Do("GET", "/alerts?state=open", nil)
	var l AlertList
	json.Unmarshal(b, &l)
	if st != 200 || len(l.Alerts) != 1 || l.Alerts[0].Rule != RuleTamperCover {
		t.Fatalf("list: %d %s", st, b)
	}
	id := l.Alerts[0].ID
	if st, _ := vendor.Do("GET", "/alerts", nil); st != http.StatusForbidden {
		t.Fatalf("a vendor read alerts: %d", st)
	}
	if st, _ := auditor.Do("POST", fmt.Sprintf("/alerts/%d/acknowledge", id), nil); st != http.StatusForbidden {
		t.Fatalf("an auditor acted on an alert: %d", st)
	}
	if st, b := sup.Do("POST", fmt.Sprintf("/alerts/%d/acknowledge", id), nil); st != 200 || !bytes.Contains(b, []byte(`"state":"acknowledged"`)) {
		t.Fatalf("acknowledge: %d %s", st, b)
	}
	if st, b := sup.Do("POST", fmt.Sprintf("/alerts/%d/acknowledge", id), nil); st != http.StatusConflict {
		t.Fatalf("acknowledge twice: %d %s", st, b)
	}
	if st, b := sup.Do("POST", fmt.Sprintf("/alerts/%d/resolve", id), map[string]string{"note": " "}); st != 400 || !bytes.Contains(b, []byte(`"note"`)) {
		t.Fatalf("resolve without a note: %d %s", st, b)
	}
	if st, b := sup.Do("POST", fmt.Sprintf("/alerts/%d/resolve", id), map[string]string{"note": "cover resealed, meter inspected"}); st != 200 || !bytes.Contains(b, []byte(`"state":"resolved"`)) {
		t.Fatalf("resolve: %d %s", st, b)
	}
	if st, b := auditor.Do("GET", fmt.Sprintf("/alerts/%d", id), nil); st != 200 || !bytes.Contains(b, []byte(`"note":"cover resealed, meter inspected"`)) || !bytes.Contains(b, []byte(`"resolved_by":"operator:supervisor1"`)) {
		t.Fatalf("get: %d %s", st, b)
	}
	if st, _ := auditor.Do("GET", "/alerts/999", nil); st != http.StatusNotFound {
		t.Fatalf("missing alert: %d", st)
	}
	if st, _ := auditor.Do("GET", "/alerts?state=bogus", nil); st != 400 {
		t.Fatalf("bad filter: %d", st)
	}
	var actions []string
	db.Read(ctx, func(tx store.Tx) error {
		rs, _ := tx.Audit().Pending(ctx, 100)
		for _, r := range rs {
			if r.Object == fmt.Sprintf("alert:%d", id) {
				actions = append(actions, r.Action+" by "+r.Actor)
			}
		}
		return nil
	})
	want := []string{"alert.open by system", "alert.acknowledge by operator:supervisor1", "alert.resolve by operator:supervisor1"}
	if fmt.Sprint(actions) != fmt.Sprint(want) {
		t.Fatalf("audit trail %v, want %v", actions, want)
	}
}

func TestPeriodicSilence(t *testing.T) {
	db := storetest.OpenSQLite(t, false)
	ctx := context.Background()
	m := meterRow(t, db, "4710001")
	meterRow(t, db, "4710002") // never reported: not silent
	at := time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)
	db.Tx(ctx, func(tx store.Tx) error {
		return tx.Telemetry().StoreReadings(ctx, []store.Reading{{MeterID: m.ID, Time: at, ReceivedAt: at, Unit: 1}})
	})
	now := at.Add(30 * time.Hour)
	s := New(Config{Store: db, Now: func() time.Time { return now }})
	if err := s.Periodic(ctx); err != nil {
		t.Fatal(err)
	}
	var alerts []store.Alert
	db.Read(ctx, func(tx store.Tx) error { alerts, _ = tx.Alerts().List(ctx, store.AlertFilter{}); return nil })
	if len(alerts) != 1 || alerts[0].Rule != RuleSilent || alerts[0].MeterID != m.ID {
		t.Fatalf("alerts %+v", alerts)
	}
}
