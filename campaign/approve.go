package campaign

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"sluice/store"
)

// Dual control. A campaign changes keys across a fleet, and a voucher-key
// campaign signs with the management key, so one operator proposes it
// (Start) and another approves it. Approval is recorded once, in the
// installation-wide settings table under "campaign/ID/approved-by" (the
// first approval wins on every replica); Run refuses an unapproved campaign.
// An sts campaign moves its supply group to the target key in the approving
// transaction: from then on purchases put the key change first, and Run
// covers the meters that do not buy.
//
// Through the API the two operators are authenticated principals. The CLI
// runs on the head-end host with the database's credentials, where dual
// control is procedural: `--actor` names who approves, and the audit log
// records both names.

func approvalKey(id int64) string { return fmt.Sprintf("campaign/%d/approved-by", id) }

// approval is who approved a campaign, and when.
type approval struct {
	By string
	At time.Time
}

func approvalOf(ctx context.Context, tx store.Tx, id int64) (approval, bool, error) {
	v, err := tx.Settings().Get(ctx, approvalKey(id))
	if errors.Is(err, store.ErrNotFound) {
		return approval{}, false, nil
	}
	if err != nil {
		return approval{}, false, err
	}
	by, at, _ := strings.Cut(v, "|")
	t, _ := time.Parse(time.RFC3339Nano, at)
	return approval{By: by, At: t}, true, nil
}

// Approve is the second operator's approval of a proposed campaign.
func (s *Service) Approve(ctx context.Context, actor string, id int64) (Status, error) {
	err := s.cfg.Store.Tx(ctx, func(tx store.Tx) error {
		now := s.now()
		c, p, err := load(ctx, tx, id)
		if err != nil {
			return err
		}
		if c.State != store.CampaignRunning {
			return fmt.Errorf("%w: campaign %s is %s", ErrFinished, c.Name, c.State)
		}
		if actor == c.CreatedBy {
			return fmt.Errorf("%w: dual control: %s proposed campaign %s and cannot approve it", ErrForbidden, actor, c.Name)
		}
		if a, ok, err := approvalOf(ctx, tx, id); err != nil || ok {
			if ok {
				err = fmt.Errorf("campaign %s was approved by %s: %w", c.Name, a.By, store.ErrConflict)
			}
			return err
		}
		if c.Kind == KindSTS {
			g, err := tx.SupplyGroups().Get(ctx, p.SupplyGroup)
			if err != nil {
				return err
			}
			atTarget := g.KRN == p.KRN && g.TI == p.TI && g.BaseDate == p.BaseDate
			if !atTarget && (g.KRN != p.FromKRN || g.TI != p.FromTI || g.BaseDate != p.FromBase) {
				return invalid("supply_group", "%s moved to KRN %d TI %d base %d since the campaign was proposed; propose it again", g.Code, g.KRN, g.TI, g.BaseDate)
			}
			if err := s.vendingKeyExists(ctx, g.Code, p.KRN); err != nil {
				return err
			}
			g.KRN, g.TI, g.BaseDate = p.KRN, p.TI, p.BaseDate
			if err := tx.SupplyGroups().Update(ctx, g); err != nil {
				return err
			}
		}
		v := actor + "|" + now.UTC().Format(time.RFC3339Nano)
		got, err := tx.Settings().PutIfAbsent(ctx, approvalKey(id), v)
		if err != nil {
			return err
		}
		if got != v {
			return fmt.Errorf("campaign %s was approved meanwhile: %w", c.Name, store.ErrConflict)
		}
		return audit(ctx, tx, now, actor, "campaign.approve", c, map[string]any{"proposed_by": c.CreatedBy})
	})
	if err != nil {
		return Status{}, err
	}
	return s.Status(ctx, id)
}
