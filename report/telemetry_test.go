package report

import (
	"context"
	"fmt"
	"testing"
	"time"

	"sluice/store"
	"sluice/store/sqlstore"
	"sluice/store/storetest"
)

func TestConsumptionAlertsAndCampaigns(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *sqlstore.DB) {
		e := newEnv(t, db, day1)
		ctx := context.Background()
		ids := map[string]int64{}
		midnight := day1.Truncate(24 * time.Hour)
		err := db.Tx(ctx, func(tx store.Tx) error {
			for _, n := range []string{pan, cardMeter, amiMeter} {
				m, err := tx.Meters().ByNumber(ctx, n)
				if err != nil {
					return err
				}
				ids[n] = m.ID
			}
			var rs []store.Reading
			add := func(meter string, at time.Time, fwd, rev int64) {
				rs = append(rs, store.Reading{MeterID: ids[meter], Counter: uint32(len(rs) + 1), Time: at, ReceivedAt: at, Forward: fwd, Reverse: rev, Unit: 1, Interval: time.Hour})
			}
			// STS meter (Soweto): 100 L on day 1 (after its baseline), 250 L on day 2.
			add(pan, midnight.Add(1*time.Hour), 1000, 0)
			add(pan, midnight.Add(20*time.Hour), 1100, 0)
			add(pan, midnight.Add(30*time.Hour), 1350, 2)
			// AMI meter (Brixton): 40 L, then a register reset.
			add(amiMeter, midnight.Add(2*time.Hour), 500, 0)
			add(amiMeter, midnight.Add(3*time.Hour), 540, 0)
			add(amiMeter, midnight.Add(26*time.Hour), 10, 0)
			// Outside the range.
			add(cardMeter, midnight.Add(-time.Hour), 7, 0)
			if err := tx.Telemetry().StoreReadings(ctx, rs); err != nil {
				return err
			}
			raise := func(rule string, meter string, at time.Time) (store.Alert, error) {
				a, _, err := tx.Alerts().Raise(ctx, store.Alert{Subject: "meter:" + meter, MeterID: ids[meter], Rule: rule, Severity: store.SeverityWarning,
					State: store.AlertOpen, Summary: rule, Details: []byte("{}"), FirstAt: at, LastAt: at, Count: 1})
				return a, err
			}
			// Raised long before and still open: in the report.
			if _, err := raise("night-flow", pan, midnight.AddDate(0, -1, 0)); err != nil {
				return err
			}
			// Raised before, resolved in the range: in the report.
			old, err := raise("magnet", amiMeter, midnight.AddDate(0, -1, 0))
			if err != nil {
				return err
			}
			if _, err := tx.Alerts().Resolve(ctx, old.ID, "super1", "magnet removed", midnight.Add(5*time.Hour)); err != nil {
				return err
			}
			// Resolved before the range: not in it.
			gone, err := raise("cover-open", cardMeter, midnight.AddDate(0, -1, 0))
			if err != nil {
				return err
			}
			if _, err := tx.Alerts().Resolve(ctx, gone.ID, "super1", "closed", midnight.AddDate(0, 0, -3)); err != nil {
				return err
			}
			// Raised after the range: not in it.
			if _, err := raise("reverse-flow", cardMeter, midnight.AddDate(0, 0, 5)); err != nil {
				return err
			}
			c, err := tx.Campaigns().Create(ctx, store.Campaign{Name: "rollover-2026", Kind: store.CampaignSTS, Params: []byte("{}"), State: store.CampaignRunning,
				CreatedBy: "super1", CreatedAt: midnight.AddDate(0, 0, -10)})
			if err != nil {
				return err
			}
			if _, err := tx.Campaigns().Enrol(ctx, c.ID, []int64{ids[pan], ids[amiMeter]}); err != nil {
				return err
			}
			return tx.Campaigns().Advance(ctx, store.CampaignMeter{CampaignID: c.ID, MeterID: ids[pan], State: store.CampaignIssued, Tokens: 2}, midnight, store.CampaignPending)
		})
		if err != nil {
			t.Fatal(err)
		}
		// A key-change token issued by the campaign (as package campaign
		// stores them: no purchase, no request).
		if _, err := db.SQL().Exec(fmt.Sprintf(`INSERT INTO tokens (meter_id, campaign_id, ordinal, kind, class, subclass, digits, litres, created_at)
			SELECT %d, id, 0, 'key_change', 2, 3, '12345678901234567890', 0, %d FROM key_campaigns WHERE name = 'rollover-2026'`,
			ids[pan], midnight.Add(time.Hour).UnixMicro())); err != nil {
			t.Fatal(err)
		}
		s := New(db, time.UTC, func() time.Time { return e.now })
		p := Params{From: midnight, To: midnight.AddDate(0, 0, 2)}
		tk := run(t, s, "tokens", p)
		if len(tk.lines) != 1 || tk.lines[0]["operator"] != "campaign:rollover-2026" || tk.lines[0]["class"] != ClassKeyChange {
			t.Errorf("campaign token: %v", tk.lines)
		}

		c := run(t, s, "consumption", p)
		got := map[string]int64{}
		for _, l := range c.lines {
			got[l["day"].(string)+" "+l["area"].(string)] = l["litres"].(int64)
		}
		want := map[string]int64{"2026-11-24 Soweto": 100, "2026-11-25 Soweto": 250, "2026-11-24 Brixton": 40, "2026-11-25 Brixton": 0}
		for k, v := range want {
			if got[k] != v {
				t.Errorf("consumption %s = %d, want %d (all: %v)", k, got[k], v, c.lines)
			}
		}
		if c.totals["litres"] != 390 || c.totals["resets"] != 1 || c.totals["readings"] != 6 || c.totals["reverse_litres"] != 2 {
			t.Errorf("consumption totals %v", c.totals)
		}
		sg := p
		sg.SupplyGroup = sgc
		if c := run(t, s, "consumption", sg); c.totals["litres"] != 350 {
			t.Errorf("consumption of supply group %s: %v", sgc, c.totals)
		}

		a := run(t, s, "alerts", p)
		if a.totals["alerts"] != 2 || a.totals["open"] != 1 || a.totals["resolved"] != 1 {
			t.Errorf("alerts totals %v: %v", a.totals, a.lines)
		}
		rules := map[string]bool{}
		for _, l := range a.lines {
			rules[l["rule"].(string)] = true
		}
		if !rules["night-flow"] || !rules["magnet"] {
			t.Errorf("alerts %v", a.lines)
		}

		k := run(t, s, "campaigns", p)
		if len(k.lines) != 1 || k.totals["meters"] != 2 || k.totals["issued"] != 1 || k.totals["pending"] != 1 {
			t.Errorf("campaigns %v %v", k.lines, k.totals)
		}
		before := Params{From: midnight.AddDate(0, 0, -30), To: midnight.AddDate(0, 0, -20)}
		if k := run(t, s, "campaigns", before); len(k.lines) != 0 {
			t.Errorf("a campaign created later is listed for an earlier range: %v", k.lines)
		}
	})
}
