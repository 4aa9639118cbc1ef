package store

import (
	"context"
	"encoding/json"
	"fmt"
	"time"
)

// AppendAudit appends a pending audit record to tx, its details being v as
// JSON. The record commits with the change it describes, or not at all;
// the head-end's sealer chains it afterwards.
func AppendAudit(ctx context.Context, tx Tx, at time.Time, actor, action, object string, v any) error {
	r, err := NewAuditRecord(at, actor, action, object, v)
	if err != nil {
		return err
	}
	return tx.Audit().Append(ctx, r)
}

// NewAuditRecord is the pending record AppendAudit appends, for a caller
// that writes it with others (Purchases.Record).
func NewAuditRecord(at time.Time, actor, action, object string, v any) (AuditRecord, error) {
	js, err := json.Marshal(v)
	if err != nil {
		return AuditRecord{}, fmt.Errorf("audit %s: details: %w", action, err)
	}
	return AuditRecord{At: at, Actor: actor, Action: action, Object: object, Details: js}, nil
}
