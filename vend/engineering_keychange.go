package vend

import (
	"context"
	"fmt"
	"time"

	"sluice/store"
)

// KeyChangeSet makes, inside tx, the key-change tokens that move STS meter
// meterID to its supply group's current key revision, tariff index and base
// date: the same tokens a purchase would put first (key changes are made by
// one piece of code). It locks the meter row and returns the meter with its
// new key state and the tokens, in the order the meter takes them, without
// storing either: the caller (a rotation campaign) stores both in tx, so the
// meter row moves in the transaction that records its tokens and a later
// purchase finds nothing due. No tokens and no error means the meter is on
// its group's key already.
func (s *Service) KeyChangeSet(ctx context.Context, tx store.Tx, meterID int64, now time.Time) (store.Meter, []store.Token, error) {
	m, err := tx.Meters().ForUpdate(ctx, meterID)
	if err != nil {
		return store.Meter{}, nil, err
	}
	if m.Kind != store.MeterSTS {
		return m, nil, fmt.Errorf("meter %s is a %s meter, not STS: %w", m.Number, m.Kind, ErrInvalid)
	}
	iss, err := s.issuer(ctx, tx, m, now)
	if err != nil {
		return m, nil, err
	}
	if err := iss.keyChangeIfDue(ctx); err != nil {
		return m, nil, err
	}
	for i := range iss.rows {
		iss.rows[i].Ordinal, iss.rows[i].CreatedAt = i, now
	}
	return iss.m, iss.rows, nil
}
