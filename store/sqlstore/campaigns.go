package sqlstore

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"

	"sluice/store"
)

// --- key-rotation campaigns (migration 0004)

type campaigns struct{ *tx }

const campaignCols = `id, name, kind, params, state, created_by, created_at, finished_at`

func scanCampaign(scan func(...any) error) (store.Campaign, error) {
	var c store.Campaign
	var params string
	var created int64
	var finished sql.NullInt64
	err := scan(&c.ID, &c.Name, &c.Kind, &params, &c.State, &c.CreatedBy, &created, &finished)
	c.Params, c.CreatedAt, c.FinishedAt = []byte(params), fromMicros(created), fromMicros(finished.Int64)
	return c, err
}

func (r campaigns) Create(ctx context.Context, c store.Campaign) (store.Campaign, error) {
	if c.CreatedAt.IsZero() {
		c.CreatedAt = now()
	}
	if c.State == "" {
		c.State = store.CampaignRunning
	}
	err := r.row(ctx, `INSERT INTO key_campaigns (name, kind, params, state, created_by, created_at) VALUES (?, ?, ?, ?, ?, ?) RETURNING id`,
		[]any{c.Name, c.Kind, string(c.Params), c.State, c.CreatedBy, micros(c.CreatedAt)}, &c.ID)
	if err != nil {
		return store.Campaign{}, fmt.Errorf("create campaign %q: %w", c.Name, err)
	}
	return c, nil
}

func (r campaigns) ByID(ctx context.Context, id int64) (store.Campaign, error) {
	return one(r.tx, ctx, fmt.Sprintf("campaign %d", id), scanCampaign, `SELECT `+campaignCols+` FROM key_campaigns WHERE id = ?`, id)
}

func (r campaigns) ByName(ctx context.Context, name string) (store.Campaign, error) {
	return one(r.tx, ctx, fmt.Sprintf("campaign %q", name), scanCampaign, `SELECT `+campaignCols+` FROM key_campaigns WHERE name = ?`, name)
}

func (r campaigns) List(ctx context.Context, limit int) ([]store.Campaign, error) {
	return collect(r.tx, ctx, "campaigns", scanCampaign, `SELECT `+campaignCols+` FROM key_campaigns ORDER BY id DESC LIMIT ?`, limit)
}

func (r campaigns) SetState(ctx context.Context, id int64, state string, at time.Time) error {
	var fin any
	if state != store.CampaignRunning {
		fin = micros(at)
	}
	res, err := r.exec(ctx, `UPDATE key_campaigns SET state = ?, finished_at = ? WHERE id = ?`, state, fin, id)
	if err != nil {
		return fmt.Errorf("campaign %d: %w", id, err)
	}
	return rowsAffected(res, fmt.Sprintf("campaign %d", id))
}

// enrolChunk bounds the rows of one INSERT (SQLite allows 32766 variables).
const enrolChunk = 500

func (r campaigns) Enrol(ctx context.Context, campaignID int64, meterIDs []int64) (int, error) {
	added := 0
	for len(meterIDs) > 0 {
		n := min(len(meterIDs), enrolChunk)
		var q strings.Builder
		q.WriteString(`INSERT INTO key_campaign_meters (campaign_id, meter_id, state) VALUES `)
		args := make([]any, 0, 2*n)
		for i, id := range meterIDs[:n] {
			if i > 0 {
				q.WriteString(", ")
			}
			q.WriteString(`(?, ?, 'pending')`)
			args = append(args, campaignID, id)
		}
		q.WriteString(` ON CONFLICT (campaign_id, meter_id) DO NOTHING`)
		res, err := r.exec(ctx, q.String(), args...)
		if err != nil {
			return added, fmt.Errorf("enrol meters in campaign %d: %w", campaignID, err)
		}
		k, _ := res.RowsAffected()
		added += int(k)
		meterIDs = meterIDs[n:]
	}
	return added, nil
}

func (r campaigns) EnrolAll(ctx context.Context, campaignID int64, f store.MeterFilter) (int, error) {
	if len(f.Kinds) == 0 {
		return 0, fmt.Errorf("enrol meters in campaign %d: no meter kinds: %w", campaignID, store.ErrConstraint)
	}
	q := `INSERT INTO key_campaign_meters (campaign_id, meter_id, state)
		SELECT ?, id, 'pending' FROM meters WHERE status <> 'removed' AND kind IN (?` + strings.Repeat(", ?", len(f.Kinds)-1) + `)`
	args := []any{campaignID}
	for _, k := range f.Kinds {
		args = append(args, k)
	}
	if f.SupplyGroup != "" {
		q += ` AND sgc = ?`
		args = append(args, f.SupplyGroup)
	}
	q += ` ORDER BY id ON CONFLICT (campaign_id, meter_id) DO NOTHING`
	res, err := r.exec(ctx, q, args...)
	if err != nil {
		return 0, fmt.Errorf("enrol meters in campaign %d: %w", campaignID, err)
	}
	n, _ := res.RowsAffected()
	return int(n), nil
}

func (r campaigns) Pending(ctx context.Context, campaignID, after int64, limit int) ([]int64, error) {
	return collect(r.tx, ctx, "pending campaign meters", func(scan func(...any) error) (int64, error) {
		var id int64
		return id, scan(&id)
	}, `SELECT meter_id FROM key_campaign_meters WHERE campaign_id = ? AND state = 'pending' AND meter_id > ? ORDER BY meter_id LIMIT ?`,
		campaignID, after, limit)
}

const campaignMeterCols = `c.campaign_id, c.meter_id, m.number, c.state, c.tokens, c.detail, c.evidence, c.issued_at, c.delivered_at, c.confirmed_at`

func scanCampaignMeter(scan func(...any) error) (store.CampaignMeter, error) {
	var c store.CampaignMeter
	var issued, delivered, confirmed sql.NullInt64
	err := scan(&c.CampaignID, &c.MeterID, &c.Meter, &c.State, &c.Tokens, &c.Detail, &c.Evidence, &issued, &delivered, &confirmed)
	c.IssuedAt, c.DeliveredAt, c.ConfirmedAt = fromMicros(issued.Int64), fromMicros(delivered.Int64), fromMicros(confirmed.Int64)
	return c, err
}

const campaignMeterFrom = ` FROM key_campaign_meters c JOIN meters m ON m.id = c.meter_id `

func (r campaigns) Meter(ctx context.Context, campaignID, meterID int64) (store.CampaignMeter, error) {
	return one(r.tx, ctx, fmt.Sprintf("meter %d of campaign %d", meterID, campaignID), scanCampaignMeter,
		`SELECT `+campaignMeterCols+campaignMeterFrom+`WHERE c.campaign_id = ? AND c.meter_id = ?`, campaignID, meterID)
}

func (r campaigns) Meters(ctx context.Context, campaignID int64, state string, after int64, limit int) ([]store.CampaignMeter, error) {
	if state == "" {
		return collect(r.tx, ctx, "campaign meters", scanCampaignMeter,
			`SELECT `+campaignMeterCols+campaignMeterFrom+`WHERE c.campaign_id = ? AND c.meter_id > ? ORDER BY c.meter_id LIMIT ?`, campaignID, after, limit)
	}
	return collect(r.tx, ctx, "campaign meters", scanCampaignMeter,
		`SELECT `+campaignMeterCols+campaignMeterFrom+`WHERE c.campaign_id = ? AND c.state = ? AND c.meter_id > ? ORDER BY c.meter_id LIMIT ?`, campaignID, state, after, limit)
}

func (r campaigns) OfMeter(ctx context.Context, meterID int64) ([]store.CampaignMeter, error) {
	return collect(r.tx, ctx, "campaigns of meter", scanCampaignMeter,
		`SELECT `+campaignMeterCols+campaignMeterFrom+`WHERE c.meter_id = ? ORDER BY c.campaign_id DESC`, meterID)
}

func (r campaigns) Advance(ctx context.Context, m store.CampaignMeter, at time.Time, from ...string) error {
	var col string
	switch m.State {
	case store.CampaignIssued:
		col = "issued_at"
	case store.CampaignDelivered:
		col = "delivered_at"
	case store.CampaignConfirmed:
		col = "confirmed_at"
	case store.CampaignFailed:
		col = "issued_at" // when it was tried
	default:
		return fmt.Errorf("campaign meter state %q: %w", m.State, store.ErrConstraint)
	}
	if len(from) == 0 {
		return fmt.Errorf("campaign meter advance to %s from nothing: %w", m.State, store.ErrConstraint)
	}
	q := `UPDATE key_campaign_meters SET state = ?, ` + col + ` = ?, detail = ?, evidence = ?, tokens = ?
		WHERE campaign_id = ? AND meter_id = ? AND state IN (?` + strings.Repeat(", ?", len(from)-1) + `)`
	args := []any{m.State, micros(at), m.Detail, m.Evidence, m.Tokens, m.CampaignID, m.MeterID}
	for _, f := range from {
		args = append(args, f)
	}
	res, err := r.exec(ctx, q, args...)
	if err != nil {
		return fmt.Errorf("meter %d of campaign %d: %w", m.MeterID, m.CampaignID, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		cur, err := r.Meter(ctx, m.CampaignID, m.MeterID)
		if err != nil {
			return err
		}
		return fmt.Errorf("meter %d of campaign %d is %s, not %s: %w", m.MeterID, m.CampaignID, cur.State, strings.Join(from, " or "), store.ErrConflict)
	}
	return nil
}

func (r campaigns) Counts(ctx context.Context, campaignID int64) (map[string]int64, error) {
	type count struct {
		state string
		n     int64
	}
	rows, err := collect(r.tx, ctx, "campaign counts", func(scan func(...any) error) (count, error) {
		var c count
		return c, scan(&c.state, &c.n)
	}, `SELECT state, COUNT(*) FROM key_campaign_meters WHERE campaign_id = ? GROUP BY state`, campaignID)
	if err != nil {
		return nil, err
	}
	out := map[string]int64{}
	for _, s := range store.CampaignStates {
		out[s] = 0
	}
	for _, c := range rows {
		out[c.state] = c.n
	}
	return out, nil
}

// tokenChunk bounds the rows of one token INSERT (12 variables a row).
const tokenChunk = 400

func (r campaigns) AddTokens(ctx context.Context, campaignID int64, ts []store.Token) error {
	for len(ts) > 0 {
		n := min(len(ts), tokenChunk)
		var q strings.Builder
		q.WriteString(`INSERT INTO tokens (meter_id, campaign_id, ordinal, kind, class, subclass, tid, digits, voucher, voucher_seq, litres, created_at) VALUES `)
		args := make([]any, 0, 12*n)
		for i, t := range ts[:n] {
			if i > 0 {
				q.WriteString(", ")
			}
			q.WriteString(`(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
			if t.CreatedAt.IsZero() {
				t.CreatedAt = now()
			}
			var tid any
			if t.Digits != "" && t.TID != 0 {
				tid = t.TID
			}
			args = append(args, t.MeterID, campaignID, t.Ordinal, t.Kind, t.Class, t.Subclass, tid, nullString(t.Digits),
				nullBytes(t.Voucher), nullID(t.VoucherSeq), t.Litres, micros(t.CreatedAt))
		}
		if _, err := r.exec(ctx, q.String(), args...); err != nil {
			return fmt.Errorf("tokens of campaign %d: %w", campaignID, err)
		}
		ts = ts[n:]
	}
	return nil
}

func (r campaigns) Tokens(ctx context.Context, campaignID, meterID int64) ([]store.Token, error) {
	return collect(r.tx, ctx, "campaign tokens", scanToken,
		`SELECT `+tokenCols+` FROM tokens WHERE campaign_id = ? AND meter_id = ? ORDER BY ordinal`, campaignID, meterID)
}

func (r campaigns) RequestTokens(ctx context.Context, requestID int64) ([]store.Token, error) {
	return collect(r.tx, ctx, "request tokens", scanToken,
		`SELECT `+tokenCols+` FROM tokens WHERE request_id = ? ORDER BY ordinal`, requestID)
}
