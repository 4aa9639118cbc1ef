package service

import (
	"context"
	"net/http"
	"time"

	"sluice/auth"
	"sluice/server"
	"sluice/store"
)

// PendingDownlink is an undelivered remote top-up as the API shows it.
type PendingDownlink struct {
	Meter      string     `json:"meter"`
	PurchaseID int64      `json:"purchase_id,omitempty"`
	VoucherSeq int64      `json:"voucher_seq"`
	Litres     int64      `json:"litres"`
	CreatedAt  time.Time  `json:"created_at"`
	Attempts   int        `json:"attempts"`
	LastAt     *time.Time `json:"last_attempt_at,omitempty"`
	NextAt     *time.Time `json:"next_attempt_at,omitempty"`
	LastError  string     `json:"last_error,omitempty"`
	// Rejected: the meter refused it; it is no longer retried.
	Rejected bool `json:"rejected"`
}

// PendingList is the answer of GET /downlinks/pending.
type PendingList struct {
	Downlinks []PendingDownlink `json:"downlinks"`
}

func downlinkRoutes(s *Service) []server.Route {
	return []server.Route{{
		Method: http.MethodGet, Path: "/downlinks/pending", Roles: []string{auth.Supervisor, auth.Admin, auth.Auditor}, Tag: "telemetry",
		Summary:  "Remote top-up vouchers not yet acknowledged by their AMI meter, oldest due first, with their delivery attempts",
		Response: PendingList{},
		Handler: func(ctx context.Context, _ *http.Request, _ auth.Principal) (any, error) {
			var ps []store.PendingVoucher
			err := s.deps.Store.Read(ctx, func(tx store.Tx) error {
				var err error
				ps, err = tx.Telemetry().PendingVouchers(ctx, time.Time{}, 1000)
				return err
			})
			if err != nil {
				return nil, err
			}
			out := PendingList{Downlinks: make([]PendingDownlink, len(ps))}
			for i, p := range ps {
				d := PendingDownlink{Meter: p.Number, PurchaseID: p.PurchaseID, VoucherSeq: p.VoucherSeq, Litres: p.Litres, CreatedAt: p.CreatedAt,
					Attempts: p.Attempts, LastError: p.LastError, Rejected: p.Rejected}
				if !p.LastAt.IsZero() {
					t := p.LastAt
					d.LastAt = &t
				}
				if !p.NextAt.IsZero() {
					t := p.NextAt
					d.NextAt = &t
				}
				out.Downlinks[i] = d
			}
			return out, nil
		},
	}}
}
