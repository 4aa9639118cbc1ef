package campaign

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"sluice/store"
)

// Evidence is what a meter reports about its keys, from a telemetry frame
// or a field report. Fields a meter does not report stay zero; only the
// fields a campaign's kind targets are compared.
type Evidence struct {
	// Source names where the evidence came from ("telemetry", "frame
	// 1234", "field report WO-77"); it is kept with the confirmation.
	Source string    `json:"source"`
	At     time.Time `json:"at"`
	// STS meters: the key the meter now decodes under (a field report,
	// or a meter that reports it) ...
	KRN      int `json:"krn,omitempty"`
	TI       int `json:"ti,omitempty"`
	BaseDate int `json:"base_date,omitempty"`
	// ... or the meter's "STS key changed" event (telemetry event 12),
	// logged At when it completed a key-change set. It confirms a campaign
	// that issued the meter its set before At (or whose target the meter
	// row reached, by a purchase, after the campaign started).
	STSKeyChanged bool `json:"sts_key_changed,omitempty"`
	// Voucher meters: the key IDs the meter trusts now.
	TrustedKeyIDs []uint32 `json:"trusted_key_ids,omitempty"`
	// Voucher meters: the highest voucher sequence the meter accepted. A
	// meter that accepted the key-change voucher's sequence or a later one
	// has applied it (vouchers are taken in sequence order).
	VoucherSeq int64 `json:"voucher_seq,omitempty"`
	// The per-meter symmetric key version in use.
	KeyVersion int `json:"key_version,omitempty"`
}

// Confirm records a meter's report of its keys against every running
// campaign that has issued to it (or, for STS, that has still to reach it:
// a meter moved by a purchase's key change is confirmed without a campaign
// set). A report that does not match a campaign's target changes nothing:
// meters report often, and most reports predate the change. It returns how
// many campaign rows it confirmed; a repeated report confirms nothing more.
//
// Telemetry ingest calls it when a frame carries key state; it needs only
// the store, so it runs in the ingest process.
func Confirm(ctx context.Context, st store.Store, meterID int64, ev Evidence) (int, error) {
	if ev.At.IsZero() {
		ev.At = time.Now()
	}
	ev.At = ev.At.UTC()
	js, err := json.Marshal(ev)
	if err != nil {
		return 0, err
	}
	n := 0
	err = st.Tx(ctx, func(tx store.Tx) error {
		n = 0
		rows, err := tx.Campaigns().OfMeter(ctx, meterID)
		if err != nil {
			return err
		}
		for _, r := range rows {
			from := []string{store.CampaignIssued, store.CampaignDelivered}
			c, p, err := load(ctx, tx, r.CampaignID)
			if err != nil {
				return err
			}
			if c.State != store.CampaignRunning {
				continue
			}
			if c.Kind == KindSTS {
				from = append(from, store.CampaignPending)
			}
			if !slices.Contains(from, r.State) {
				continue
			}
			ok, err := matches(ctx, tx, c, p, r, ev)
			if err != nil {
				return err
			}
			if !ok {
				continue
			}
			r.State, r.Evidence = store.CampaignConfirmed, string(js)
			if r.Detail == "" && r.Tokens == 0 && c.Kind == KindSTS {
				r.Detail = "moved outside the campaign (purchase or engineering key change)"
			}
			if err := tx.Campaigns().Advance(ctx, r, ev.At, from...); err != nil {
				return err
			}
			if c.Kind == KindMeterKey {
				m, err := tx.Meters().ForUpdate(ctx, meterID)
				if err != nil {
					return err
				}
				if m.KeyVersion < p.KeyVersion {
					m.KeyVersion = p.KeyVersion
					if err := tx.Meters().Update(ctx, m); err != nil {
						return err
					}
				}
			}
			if err := audit(ctx, tx, ev.At, "meter:"+r.Meter, "campaign.confirm", c, map[string]any{"meter": r.Meter, "evidence": json.RawMessage(js)}); err != nil {
				return err
			}
			n++
			if err := finishIfComplete(ctx, tx, c, ev.At); err != nil {
				return err
			}
		}
		return nil
	})
	return n, err
}

// matches compares evidence with one campaign's target for the meter.
func matches(ctx context.Context, tx store.Tx, c store.Campaign, p Params, r store.CampaignMeter, ev Evidence) (bool, error) {
	switch c.Kind {
	case KindSTS:
		if ev.STSKeyChanged {
			return stsEventMatches(ctx, tx, c, p, r, ev)
		}
		return ev.KRN == p.KRN && ev.TI == p.TI && ev.BaseDate == p.BaseDate, nil
	case KindMeterKey:
		return ev.KeyVersion >= p.KeyVersion, nil
	case KindVoucherKey:
		if len(ev.TrustedKeyIDs) > 0 {
			trusts := slices.Contains(ev.TrustedKeyIDs, p.NewKeyID)
			retired := p.RetireID == 0 || !slices.Contains(ev.TrustedKeyIDs, p.RetireID)
			return trusts && retired, nil
		}
		if ev.VoucherSeq > 0 && r.Tokens > 0 {
			toks, err := tx.Campaigns().Tokens(ctx, c.ID, r.MeterID)
			if err != nil || len(toks) == 0 {
				return false, err
			}
			return ev.VoucherSeq >= toks[0].VoucherSeq, nil
		}
	}
	return false, nil
}

// stsEventMatches decides whether a meter's "key changed" event is this
// campaign's key change: the meter row must be on the campaign's target (the
// head-end issued a set taking it there) and the event must not predate
// that set (an old event reported late proves nothing about this one).
func stsEventMatches(ctx context.Context, tx store.Tx, c store.Campaign, p Params, r store.CampaignMeter, ev Evidence) (bool, error) {
	m, err := tx.Meters().ByID(ctx, r.MeterID)
	if err != nil {
		return false, err
	}
	if m.KRN != p.KRN || m.TI != p.TI || m.BaseDate != p.BaseDate {
		return false, nil
	}
	since := c.CreatedAt
	if r.Tokens > 0 && !r.IssuedAt.IsZero() {
		since = r.IssuedAt
	}
	return !ev.At.Before(since), nil
}

// finishIfComplete marks a campaign done when every meter is confirmed or
// failed.
func finishIfComplete(ctx context.Context, tx store.Tx, c store.Campaign, at time.Time) error {
	counts, err := tx.Campaigns().Counts(ctx, c.ID)
	if err != nil {
		return err
	}
	if counts[store.CampaignPending]+counts[store.CampaignIssued]+counts[store.CampaignDelivered] > 0 {
		return nil
	}
	if err := tx.Campaigns().SetState(ctx, c.ID, store.CampaignDone, at); err != nil {
		return err
	}
	return audit(ctx, tx, at, "sluice", "campaign.done", c, counts)
}

// Deliver marks a meter's campaign tokens as handed over: printed for an
// engineer or the customer, written to a card, sent as a downlink.
func (s *Service) Deliver(ctx context.Context, actor string, campaignID int64, meter string) error {
	return s.cfg.Store.Tx(ctx, func(tx store.Tx) error {
		c, _, err := load(ctx, tx, campaignID)
		if err != nil {
			return err
		}
		m, err := tx.Meters().ByNumber(ctx, meter)
		if errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("%w: no meter %s", ErrNotFound, meter)
		}
		if err != nil {
			return err
		}
		r, err := tx.Campaigns().Meter(ctx, c.ID, m.ID)
		if errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("%w: meter %s is not in campaign %s", ErrNotFound, meter, c.Name)
		}
		if err != nil {
			return err
		}
		r.State = store.CampaignDelivered
		if err := tx.Campaigns().Advance(ctx, r, s.now(), store.CampaignIssued); err != nil {
			return err
		}
		return audit(ctx, tx, s.now(), actor, "campaign.deliver", c, map[string]any{"meter": meter})
	})
}

// Cancel stops a campaign: Run refuses it from then on. Tokens issued stay
// valid (they cannot be recalled from a meter); the supply group keeps its
// new key, so purchases go on moving the remaining meters.
func (s *Service) Cancel(ctx context.Context, actor string, campaignID int64) error {
	return s.cfg.Store.Tx(ctx, func(tx store.Tx) error {
		c, _, err := load(ctx, tx, campaignID)
		if err != nil {
			return err
		}
		if c.State != store.CampaignRunning {
			return fmt.Errorf("%w: campaign %s is %s", ErrFinished, c.Name, c.State)
		}
		if err := tx.Campaigns().SetState(ctx, c.ID, store.CampaignCancelled, s.now()); err != nil {
			return err
		}
		return audit(ctx, tx, s.now(), actor, "campaign.cancel", c, nil)
	})
}
