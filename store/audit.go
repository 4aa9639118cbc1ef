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
	js, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("audit %s: details: %w", action, err)
	}
	return tx.Audit().Append(ctx, AuditRecord{At: at, Actor: actor, Action: action, Object: object, Details: js})
}
