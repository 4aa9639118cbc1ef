package campaign

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"sluice/store"
)

// Status is a campaign with its progress.
type Status struct {
	ID         int64      `json:"id"`
	Name       string     `json:"name"`
	Kind       string     `json:"kind"`
	State      string     `json:"state"`
	Params     Params     `json:"params"`
	CreatedBy  string     `json:"created_by"`
	CreatedAt  time.Time  `json:"created_at"`
	ApprovedBy string     `json:"approved_by,omitempty"`
	ApprovedAt *time.Time `json:"approved_at,omitempty"`
	FinishedAt *time.Time `json:"finished_at,omitempty"`
	Progress   Progress   `json:"progress"`
}

// MeterState is one meter's row in a campaign, for lists and reports.
type MeterState struct {
	Meter       string          `json:"meter"`
	State       string          `json:"state"`
	Tokens      int             `json:"tokens"`
	Detail      string          `json:"detail,omitempty"`
	Evidence    json.RawMessage `json:"evidence,omitempty"`
	IssuedAt    *time.Time      `json:"issued_at,omitempty"`
	DeliveredAt *time.Time      `json:"delivered_at,omitempty"`
	ConfirmedAt *time.Time      `json:"confirmed_at,omitempty"`
}

// Report is a campaign's account: counts, the meters that failed (all of
// them, with the reason) and those still waiting for confirmation (up to
// Limit), for the utility's follow-up.
type Report struct {
	Status
	Failed      []MeterState `json:"failed"`
	Unconfirmed []MeterState `json:"unconfirmed"`
	// Truncated is set when more unconfirmed meters exist than listed.
	Truncated bool `json:"truncated"`
	// TokensIssued counts tokens and vouchers the campaign issued.
	TokensIssued int64 `json:"tokens_issued"`
}

// statusIn reads a campaign's status inside a transaction.
func statusIn(ctx context.Context, tx store.Tx, c store.Campaign, p Params) (Status, error) {
	counts, err := tx.Campaigns().Counts(ctx, c.ID)
	if err != nil {
		return Status{}, err
	}
	st := statusOf(c, p, counts)
	a, ok, err := approvalOf(ctx, tx, c.ID)
	if ok {
		st.ApprovedBy, st.ApprovedAt = a.By, timePtr(a.At)
	}
	return st, err
}

func statusOf(c store.Campaign, p Params, counts map[string]int64) Status {
	st := Status{ID: c.ID, Name: c.Name, Kind: c.Kind, State: c.State, Params: p, CreatedBy: c.CreatedBy, CreatedAt: c.CreatedAt,
		Progress: progressOf(c, counts)}
	st.Params.NewPublic = nil // the key ID names it
	if !c.FinishedAt.IsZero() {
		f := c.FinishedAt
		st.FinishedAt = &f
	}
	return st
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

func meterState(r store.CampaignMeter) MeterState {
	ms := MeterState{Meter: r.Meter, State: r.State, Tokens: r.Tokens, Detail: r.Detail,
		IssuedAt: timePtr(r.IssuedAt), DeliveredAt: timePtr(r.DeliveredAt), ConfirmedAt: timePtr(r.ConfirmedAt)}
	if r.Evidence != "" {
		ms.Evidence = json.RawMessage(r.Evidence)
	}
	return ms
}

// Status returns a campaign's progress.
func (s *Service) Status(ctx context.Context, id int64) (Status, error) {
	var st Status
	err := s.cfg.Store.Read(ctx, func(tx store.Tx) error {
		c, p, err := load(ctx, tx, id)
		if err != nil {
			return err
		}
		st, err = statusIn(ctx, tx, c, p)
		return err
	})
	return st, err
}

// List returns the newest campaigns with their progress.
func (s *Service) List(ctx context.Context, limit int) ([]Status, error) {
	if limit <= 0 || limit > 500 {
		limit = 50
	}
	out := []Status{}
	err := s.cfg.Store.Read(ctx, func(tx store.Tx) error {
		cs, err := tx.Campaigns().List(ctx, limit)
		if err != nil {
			return err
		}
		for _, c := range cs {
			var p Params
			if err := json.Unmarshal(c.Params, &p); err != nil {
				return fmt.Errorf("campaign %d params: %w", c.ID, err)
			}
			st, err := statusIn(ctx, tx, c, p)
			if err != nil {
				return err
			}
			out = append(out, st)
		}
		return nil
	})
	return out, err
}

// Meters lists a campaign's meters in one state ("" all), after a meter
// number's ID cursor (0 from the start); it returns the next cursor (0 at
// the end).
func (s *Service) Meters(ctx context.Context, id int64, state string, after int64, limit int) ([]MeterState, int64, error) {
	if state != "" && !validState(state) {
		return nil, 0, invalid("state", "must be one of %v", store.CampaignStates)
	}
	if limit <= 0 || limit > 1000 {
		limit = 100
	}
	out := []MeterState{}
	var next int64
	err := s.cfg.Store.Read(ctx, func(tx store.Tx) error {
		if _, _, err := load(ctx, tx, id); err != nil {
			return err
		}
		rows, err := tx.Campaigns().Meters(ctx, id, state, after, limit)
		if err != nil {
			return err
		}
		for _, r := range rows {
			out = append(out, meterState(r))
		}
		if len(rows) == limit {
			next = rows[len(rows)-1].MeterID
		}
		return nil
	})
	return out, next, err
}

func validState(s string) bool {
	for _, x := range store.CampaignStates {
		if s == x {
			return true
		}
	}
	return false
}

// MeterTokens returns what a campaign issued to one meter, in the order the
// meter takes it.
func (s *Service) MeterTokens(ctx context.Context, id int64, meter string) (MeterState, []store.Token, error) {
	var (
		ms   MeterState
		toks []store.Token
	)
	err := s.cfg.Store.Read(ctx, func(tx store.Tx) error {
		if _, _, err := load(ctx, tx, id); err != nil {
			return err
		}
		m, err := tx.Meters().ByNumber(ctx, meter)
		if errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("%w: no meter %s", ErrNotFound, meter)
		}
		if err != nil {
			return err
		}
		r, err := tx.Campaigns().Meter(ctx, id, m.ID)
		if errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("%w: meter %s is not in campaign %d", ErrNotFound, meter, id)
		}
		if err != nil {
			return err
		}
		ms = meterState(r)
		toks, err = tx.Campaigns().Tokens(ctx, id, m.ID)
		return err
	})
	return ms, toks, err
}

// ReportLimit bounds the unconfirmed meters a report lists.
const ReportLimit = 1000

// Report builds a campaign's report.
func (s *Service) Report(ctx context.Context, id int64) (Report, error) {
	var rep Report
	err := s.cfg.Store.Read(ctx, func(tx store.Tx) error {
		c, p, err := load(ctx, tx, id)
		if err != nil {
			return err
		}
		st, err := statusIn(ctx, tx, c, p)
		if err != nil {
			return err
		}
		rep = Report{Status: st, Failed: []MeterState{}, Unconfirmed: []MeterState{}}
		var after int64
		for {
			rows, err := tx.Campaigns().Meters(ctx, id, "", after, 1000)
			if err != nil {
				return err
			}
			for _, r := range rows {
				rep.TokensIssued += int64(r.Tokens)
				switch r.State {
				case store.CampaignFailed:
					rep.Failed = append(rep.Failed, meterState(r))
				case store.CampaignIssued, store.CampaignDelivered, store.CampaignPending:
					if len(rep.Unconfirmed) < ReportLimit {
						rep.Unconfirmed = append(rep.Unconfirmed, meterState(r))
					} else {
						rep.Truncated = true
					}
				}
			}
			if len(rows) < 1000 {
				return nil
			}
			after = rows[len(rows)-1].MeterID
		}
	})
	return rep, err
}
