package sqlstore

import (
	"context"
	"fmt"

	"sluice/store"
)

// --- payment channels

type channels struct{ *tx }

const channelCols = `c.vendor_id, v.code, c.fee_fixed_cents, c.fee_rate_bp, c.max_purchase_cents, c.disabled, c.updated_at`

func scanChannel(scan func(...any) error) (store.Channel, error) {
	var c store.Channel
	var updated int64
	err := scan(&c.VendorID, &c.VendorCode, &c.FeeFixedCents, &c.FeeRateBP, &c.MaxPurchaseCents, &c.Disabled, &updated)
	c.UpdatedAt = fromMicros(updated)
	return c, err
}

func (r channels) Put(ctx context.Context, c store.Channel) error {
	if c.UpdatedAt.IsZero() {
		c.UpdatedAt = now()
	}
	_, err := r.exec(ctx, `INSERT INTO channels (vendor_id, fee_fixed_cents, fee_rate_bp, max_purchase_cents, disabled, updated_at)
		VALUES (?, ?, ?, ?, ?, ?)
		ON CONFLICT (vendor_id) DO UPDATE SET fee_fixed_cents = excluded.fee_fixed_cents, fee_rate_bp = excluded.fee_rate_bp,
			max_purchase_cents = excluded.max_purchase_cents, disabled = excluded.disabled, updated_at = excluded.updated_at`,
		c.VendorID, c.FeeFixedCents, c.FeeRateBP, c.MaxPurchaseCents, c.Disabled, micros(c.UpdatedAt))
	if err != nil {
		return fmt.Errorf("channel of vendor %d: %w", c.VendorID, err)
	}
	return nil
}

func (r channels) Get(ctx context.Context, vendorID int64) (store.Channel, error) {
	return one(r.tx, ctx, fmt.Sprintf("channel of vendor %d", vendorID), scanChannel,
		`SELECT `+channelCols+` FROM channels c JOIN vendors v ON v.id = c.vendor_id WHERE c.vendor_id = ?`, vendorID)
}

func (r channels) List(ctx context.Context) ([]store.Channel, error) {
	return collect(r.tx, ctx, "channels", scanChannel, `SELECT `+channelCols+` FROM channels c JOIN vendors v ON v.id = c.vendor_id ORDER BY v.code`)
}

const adviceCols = `id, vendor_id, client_purchase_id, purchase_id, kind, outcome, reason, response, created_at`

func scanAdvice(scan func(...any) error) (store.ChannelAdvice, error) {
	var a store.ChannelAdvice
	var resp string
	var created int64
	err := scan(&a.ID, &a.VendorID, &a.ClientPurchaseID, &a.PurchaseID, &a.Kind, &a.Outcome, &a.Reason, &resp, &created)
	a.Response, a.CreatedAt = []byte(resp), fromMicros(created)
	return a, err
}

func (r channels) CreateAdvice(ctx context.Context, a store.ChannelAdvice) (store.ChannelAdvice, error) {
	if a.CreatedAt.IsZero() {
		a.CreatedAt = now()
	}
	err := r.row(ctx, `INSERT INTO channel_advices (vendor_id, client_purchase_id, purchase_id, kind, outcome, reason, response, created_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`,
		[]any{a.VendorID, a.ClientPurchaseID, a.PurchaseID, a.Kind, a.Outcome, a.Reason, string(a.Response), micros(a.CreatedAt)}, &a.ID)
	if err != nil {
		return store.ChannelAdvice{}, fmt.Errorf("advice for %s: %w", a.ClientPurchaseID, err)
	}
	return a, nil
}

func (r channels) Advice(ctx context.Context, vendorID int64, clientPurchaseID string) (store.ChannelAdvice, error) {
	return one(r.tx, ctx, "advice for "+clientPurchaseID, scanAdvice,
		`SELECT `+adviceCols+` FROM channel_advices WHERE vendor_id = ? AND client_purchase_id = ?`, vendorID, clientPurchaseID)
}

func (r channels) Advices(ctx context.Context, outcome string, after int64, limit int) ([]store.ChannelAdvice, error) {
	return collect(r.tx, ctx, "advices", scanAdvice,
		`SELECT `+adviceCols+` FROM channel_advices WHERE outcome = ? AND id > ? ORDER BY id LIMIT ?`, outcome, after, limit)
}
