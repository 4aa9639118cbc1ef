package storetest

import (
	"context"
	"errors"
	"testing"
	"time"

	"sluice/store"
	"sluice/store/sqlstore"
)

func TestCampaignMeterStatesAndTokenUniqueness(t *testing.T) {
	Each(t, func(t *testing.T, db *sqlstore.DB) {
		ctx := context.Background()
		f := newFixture(t, db, 0)
		at := time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)
		var c store.Campaign
		err := db.Tx(ctx, func(tx store.Tx) error {
			var err error
			c, err = tx.Campaigns().Create(ctx, store.Campaign{Name: "rollover-2026", Kind: store.CampaignSTS, Params: []byte(`{}`), CreatedBy: "operator:admin"})
			if err != nil {
				return err
			}
			n, err := tx.Campaigns().Enrol(ctx, c.ID, []int64{f.meter.ID})
			if err != nil || n != 1 {
				t.Fatalf("enrol: %d %v", n, err)
			}
			// Enrolling again adds nothing.
			if n, err := tx.Campaigns().Enrol(ctx, c.ID, []int64{f.meter.ID}); err != nil || n != 0 {
				t.Fatalf("enrol again: %d %v", n, err)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		// A duplicate name is a conflict.
		err = db.Tx(ctx, func(tx store.Tx) error {
			_, err := tx.Campaigns().Create(ctx, store.Campaign{Name: "rollover-2026", Kind: store.CampaignSTS, Params: []byte(`{}`), CreatedBy: "x"})
			return err
		})
		if !errors.Is(err, store.ErrConflict) {
			t.Fatalf("duplicate name: %v", err)
		}
		// Unknown kinds and states are refused by the schema.
		err = db.Tx(ctx, func(tx store.Tx) error {
			_, err := tx.Campaigns().Create(ctx, store.Campaign{Name: "x", Kind: "bogus", Params: []byte(`{}`), CreatedBy: "x"})
			return err
		})
		if !errors.Is(err, store.ErrConstraint) {
			t.Fatalf("bogus kind: %v", err)
		}
		issue := func(tx store.Tx) error {
			m := store.CampaignMeter{CampaignID: c.ID, MeterID: f.meter.ID, State: store.CampaignIssued, Tokens: 2}
			if err := tx.Campaigns().Advance(ctx, m, at, store.CampaignPending); err != nil {
				return err
			}
			return tx.Campaigns().AddTokens(ctx, c.ID, []store.Token{
				{MeterID: f.meter.ID, Ordinal: 0, Kind: store.TokenKeyChange, Class: 2, Subclass: 3, Digits: "12345678901234567890"},
				{MeterID: f.meter.ID, Ordinal: 1, Kind: store.TokenKeyChange, Class: 2, Subclass: 4, Digits: "12345678901234567891"},
			})
		}
		if err := db.Tx(ctx, issue); err != nil {
			t.Fatal(err)
		}
		// A second issue finds the row issued (the state guard) ...
		if err := db.Tx(ctx, issue); !errors.Is(err, store.ErrConflict) {
			t.Fatalf("second issue: %v", err)
		}
		// ... and a second token set is refused by the unique index even
		// past the guard.
		err = db.Tx(ctx, func(tx store.Tx) error {
			return tx.Campaigns().AddTokens(ctx, c.ID, []store.Token{{MeterID: f.meter.ID, Ordinal: 0, Kind: store.TokenKeyChange, Class: 2, Subclass: 3, Digits: "99999999999999999999"}})
		})
		if !errors.Is(err, store.ErrConflict) {
			t.Fatalf("second set: %v", err)
		}
		err = db.Read(ctx, func(tx store.Tx) error {
			toks, err := tx.Campaigns().Tokens(ctx, c.ID, f.meter.ID)
			if err != nil || len(toks) != 2 || toks[1].Ordinal != 1 {
				t.Fatalf("tokens %+v %v", toks, err)
			}
			counts, err := tx.Campaigns().Counts(ctx, c.ID)
			if err != nil || counts[store.CampaignIssued] != 1 || counts[store.CampaignPending] != 0 {
				t.Fatalf("counts %v %v", counts, err)
			}
			cm, err := tx.Campaigns().Meter(ctx, c.ID, f.meter.ID)
			if err != nil || cm.Meter != f.meter.Number || !cm.IssuedAt.Equal(at) || cm.Tokens != 2 {
				t.Fatalf("campaign meter %+v %v", cm, err)
			}
			if p, err := tx.Campaigns().Pending(ctx, c.ID, 0, 10); err != nil || len(p) != 0 {
				t.Fatalf("pending %v %v", p, err)
			}
			of, err := tx.Campaigns().OfMeter(ctx, f.meter.ID)
			if err != nil || len(of) != 1 {
				t.Fatalf("of meter %v %v", of, err)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		// Confirmation skips delivered when the meter reports first; a
		// confirmed meter cannot go back.
		err = db.Tx(ctx, func(tx store.Tx) error {
			return tx.Campaigns().Advance(ctx, store.CampaignMeter{CampaignID: c.ID, MeterID: f.meter.ID, State: store.CampaignConfirmed, Tokens: 2, Evidence: "krn=2"},
				at.Add(time.Hour), store.CampaignIssued, store.CampaignDelivered)
		})
		if err != nil {
			t.Fatal(err)
		}
		err = db.Tx(ctx, func(tx store.Tx) error {
			return tx.Campaigns().Advance(ctx, store.CampaignMeter{CampaignID: c.ID, MeterID: f.meter.ID, State: store.CampaignDelivered}, at, store.CampaignIssued)
		})
		if !errors.Is(err, store.ErrConflict) {
			t.Fatalf("deliver after confirm: %v", err)
		}
	})
}

func TestEngineeringRequestTokensUnique(t *testing.T) {
	Each(t, func(t *testing.T, db *sqlstore.DB) {
		ctx := context.Background()
		f := newFixture(t, db, 0)
		var r store.EngineeringRequest
		err := db.Tx(ctx, func(tx store.Tx) (err error) {
			r, err = tx.EngineeringRequests().Create(ctx, store.EngineeringRequest{MeterID: f.meter.ID, Action: "clear_tamper", Params: []byte(`{}`), Reason: "x", RequestedBy: f.operator.ID})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		add := func(tid int64) error {
			return db.Tx(ctx, func(tx store.Tx) error {
				_, err := tx.Tokens().Create(ctx, store.Token{MeterID: f.meter.ID, RequestID: r.ID, Ordinal: 0, Kind: store.TokenEngineering, Class: 2, Subclass: 5, TID: tid, Digits: "12345678901234567890"})
				return err
			})
		}
		if err := add(100); err != nil {
			t.Fatal(err)
		}
		if err := add(101); !errors.Is(err, store.ErrConflict) {
			t.Fatalf("a second set for one request: %v", err)
		}
		err = db.Read(ctx, func(tx store.Tx) error {
			toks, err := tx.Campaigns().RequestTokens(ctx, r.ID)
			if err != nil || len(toks) != 1 || toks[0].TID != 100 {
				t.Fatalf("request tokens %+v %v", toks, err)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	})
}
