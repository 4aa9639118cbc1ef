package campaign

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"strconv"
	"time"

	"sluice/keys"
	"sluice/kms"
	"sluice/store"
	"sluice/sts"
	"sluice/vend"
	"sluice/voucher"
)

// Progress is a campaign's counts, as Run reports them after each batch.
type Progress struct {
	Campaign  int64  `json:"campaign"`
	Name      string `json:"name"`
	Total     int64  `json:"total"`
	Pending   int64  `json:"pending"`
	Issued    int64  `json:"issued"`
	Delivered int64  `json:"delivered"`
	Confirmed int64  `json:"confirmed"`
	Failed    int64  `json:"failed"`
	// ThisRun is how many meters this Run took out of pending.
	ThisRun int `json:"this_run"`
}

// Done is how many meters have left pending.
func (p Progress) Done() int64 { return p.Total - p.Pending }

func progressOf(c store.Campaign, counts map[string]int64) Progress {
	p := Progress{Campaign: c.ID, Name: c.Name, Pending: counts[store.CampaignPending], Issued: counts[store.CampaignIssued],
		Delivered: counts[store.CampaignDelivered], Confirmed: counts[store.CampaignConfirmed], Failed: counts[store.CampaignFailed]}
	for _, n := range counts {
		p.Total += n
	}
	return p
}

// Run issues for the campaign's pending meters, one transaction per batch,
// until none is left or ctx is cancelled, calling progress (if not nil)
// after each committed batch. It is safe to call again after a crash or a
// cancellation, and to run on several replicas at once: a meter is issued
// for once whatever happens. A meter that cannot take the campaign (a
// missing key, a meter of the wrong kind) is marked failed with the reason,
// and the run goes on.
func (s *Service) Run(ctx context.Context, id int64, actor string, progress func(Progress)) (Progress, error) {
	var (
		c     store.Campaign
		p     Params
		prog  Progress
		after int64
		done  int
	)
	approved := false
	err := s.cfg.Store.Read(ctx, func(tx store.Tx) (err error) {
		if c, p, err = load(ctx, tx, id); err != nil {
			return err
		}
		_, approved, err = approvalOf(ctx, tx, id)
		return err
	})
	if err != nil {
		return prog, err
	}
	if !approved && c.State == store.CampaignRunning {
		return prog, fmt.Errorf("%w: campaign %s waits for a second operator (sluice keys campaign approve)", ErrNotApproved, c.Name)
	}
	if c.State != store.CampaignRunning {
		return prog, fmt.Errorf("%w: campaign %s is %s", ErrFinished, c.Name, c.State)
	}
	if c.Kind == KindSTS && s.cfg.Vend == nil {
		return prog, fmt.Errorf("%w: sts campaign %s needs the vending service", ErrInvalid, c.Name)
	}
	sign, err := s.signer(ctx, c, p)
	if err != nil {
		return prog, err
	}
	for {
		if err := ctx.Err(); err != nil {
			return prog, err
		}
		var n, last int64
		err := s.cfg.Store.Tx(ctx, func(tx store.Tx) error {
			n, last = 0, 0
			// A cancellation by another operator stops the run at the
			// next batch.
			if cur, err := tx.Campaigns().ByID(ctx, c.ID); err != nil || cur.State != store.CampaignRunning {
				if err == nil {
					err = fmt.Errorf("%w: campaign %s was %s during the run", ErrFinished, c.Name, cur.State)
				}
				return err
			}
			ids, err := tx.Campaigns().Pending(ctx, c.ID, after, s.cfg.Batch)
			if err != nil {
				return err
			}
			now := s.now()
			b := &batch{}
			for _, mid := range ids {
				took, err := s.step(ctx, tx, c, p, sign, mid, now, b)
				if err != nil {
					return err
				}
				if took {
					n++
				}
				last = mid
			}
			if err := b.commit(ctx, tx, c, actor, now); err != nil {
				return err
			}
			counts, err := tx.Campaigns().Counts(ctx, c.ID)
			if err != nil {
				return err
			}
			prog = progressOf(c, counts)
			return nil
		})
		if err != nil {
			return prog, err
		}
		done += int(n)
		prog.ThisRun = done
		if last == 0 {
			break
		}
		after = last
		if progress != nil {
			progress(prog)
		}
	}
	if prog.Pending+prog.Issued+prog.Delivered == 0 {
		// Nothing left to follow (every meter failed, or reported before
		// the run reached it): the campaign is over.
		err := s.cfg.Store.Tx(ctx, func(tx store.Tx) error {
			c, _, err := load(ctx, tx, c.ID)
			if err != nil || c.State != store.CampaignRunning {
				return err
			}
			return finishIfComplete(ctx, tx, c, s.now())
		})
		if err != nil {
			return prog, err
		}
	}
	if progress != nil {
		progress(prog)
	}
	return prog, nil
}

// voucherSigner signs key-change vouchers (voucher-key campaigns).
type voucherSigner crypto.Signer

func (s *Service) signer(ctx context.Context, c store.Campaign, p Params) (voucherSigner, error) {
	if c.Kind != KindVoucherKey {
		return nil, nil
	}
	if s.cfg.KM == nil {
		return nil, fmt.Errorf("%w: voucher-key campaign %s needs the key manager", ErrInvalid, c.Name)
	}
	sg, err := kms.Signer(ctx, s.cfg.KM, kms.KeyRef{Name: keys.ManagementSigning, Version: p.Signer})
	if err != nil {
		return nil, fmt.Errorf("campaign %s: management signer: %w", c.Name, err)
	}
	return sg, nil
}

// batch gathers what one transaction's meters were issued, so the tokens
// go to the database in one statement and the audit log gets one record per
// batch that lists every meter: complete, and a 7-million-meter campaign
// does not add 7 million records to the hash chain.
type batch struct {
	tokens []store.Token
	meters []auditMeter
}

type auditMeter struct {
	Meter  string `json:"meter"`
	State  string `json:"state"`
	Tokens int    `json:"tokens"`
	Detail string `json:"detail,omitempty"`
}

func (b *batch) commit(ctx context.Context, tx store.Tx, c store.Campaign, actor string, now time.Time) error {
	if len(b.meters) == 0 {
		return nil
	}
	if err := tx.Campaigns().AddTokens(ctx, c.ID, b.tokens); err != nil {
		return err
	}
	return audit(ctx, tx, now, actor, "campaign.issue", c, map[string]any{"meters": b.meters, "tokens": len(b.tokens)})
}

// step issues for one meter inside the batch's transaction. It reports
// whether the meter left pending (false: another run took it first).
func (s *Service) step(ctx context.Context, tx store.Tx, c store.Campaign, p Params, sign voucherSigner, meterID int64, now time.Time, b *batch) (bool, error) {
	var (
		m      store.Meter
		toks   []store.Token
		detail string
		err    error
	)
	if c.Kind == KindSTS {
		// KeyChangeSet locks the meter row first.
		m, toks, err = s.cfg.Vend.KeyChangeSet(ctx, tx, meterID, now)
	} else {
		m, err = tx.Meters().ForUpdate(ctx, meterID)
	}
	if err != nil && !permanent(err) {
		return false, err
	}
	// With the meter locked, look at its row: a run that waited for the
	// lock sees another run's committed work here and leaves the meter.
	if cm, err := tx.Campaigns().Meter(ctx, c.ID, meterID); err != nil || cm.State != store.CampaignPending {
		return false, err
	}
	switch c.Kind {
	case KindSTS:
		if err == nil && len(toks) == 0 {
			detail = "on the target key already (moved by a purchase or an engineering request)"
		}
		if err == nil && (m.KRN != p.KRN || m.TI != p.TI || m.BaseDate != p.BaseDate) {
			// The group moved on again (a later campaign): this one's
			// target is not the meter's any more.
			err = fmt.Errorf("%w: supply group %s moved to KRN %d TI %d base %d after this campaign started", ErrInvalid, m.SGC, m.KRN, m.TI, m.BaseDate)
		}
	case KindVoucherKey:
		toks, err = keyChangeVoucher(&m, p, sign, now)
	case KindMeterKey:
		if m.Kind == store.MeterSTS {
			err = fmt.Errorf("%w: meter %s is an STS meter", ErrInvalid, m.Number)
		} else if m.KeyVersion >= p.KeyVersion {
			detail = fmt.Sprintf("on key version %d already", m.KeyVersion)
		} else {
			detail = fmt.Sprintf("load key version %d by provisioning (meter on %d)", p.KeyVersion, m.KeyVersion)
		}
	}
	row := store.CampaignMeter{CampaignID: c.ID, MeterID: meterID, State: store.CampaignIssued, Tokens: len(toks), Detail: detail}
	if err != nil {
		if !permanent(err) || ctx.Err() != nil {
			return false, err
		}
		row.State, row.Tokens, row.Detail = store.CampaignFailed, 0, err.Error()
		toks = nil
	}
	// The guard: only a pending row moves. It is this meter's first write,
	// so a row that moved meanwhile (a meter's report confirming it) is
	// simply left alone.
	if err := tx.Campaigns().Advance(ctx, row, now, store.CampaignPending); err != nil {
		if errors.Is(err, store.ErrConflict) {
			return false, nil
		}
		return false, err
	}
	if len(toks) > 0 {
		if err := tx.Meters().Update(ctx, m); err != nil {
			return false, err
		}
		b.tokens = append(b.tokens, toks...)
	}
	b.meters = append(b.meters, auditMeter{Meter: m.Number, State: row.State, Tokens: len(toks), Detail: row.Detail})
	return true, nil
}

// permanent reports an error that is the meter's, not the run's: retrying
// the batch would fail the same way.
func permanent(err error) bool {
	for _, e := range []error{ErrInvalid, vend.ErrInvalid, kms.ErrNotFound, kms.ErrKind, kms.ErrInvalid, sts.ErrFormat, sts.ErrTIDRange, voucher.ErrInvalid} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// keyChangeVoucher makes the KindKeyChange voucher of a voucher-key
// campaign with the meter's next voucher sequence, advancing m.
func keyChangeVoucher(m *store.Meter, p Params, sign voucherSigner, now time.Time) ([]store.Token, error) {
	if m.Kind == store.MeterSTS {
		return nil, fmt.Errorf("%w: meter %s is an STS meter", ErrInvalid, m.Number)
	}
	id, err := strconv.ParseUint(m.Number, 10, 64)
	if err != nil || id == 0 {
		return nil, fmt.Errorf("%w: meter %s: voucher meters need a numeric serial", ErrInvalid, m.Number)
	}
	slot := voucher.RoleCredit
	if p.Role == "management" {
		slot = voucher.RoleManagement
	}
	seq := m.VoucherSeq + 1
	v := &voucher.Voucher{Kind: voucher.KindKeyChange, MeterID: id, Sequence: uint32(seq), Issued: now,
		Expires: now.Add(time.Duration(p.ValidDays) * 24 * time.Hour), Slot: slot, NewKey: p.NewPublic, Retire: p.RetireID}
	b, err := voucher.Sign(v, sign)
	if err != nil {
		return nil, fmt.Errorf("key-change voucher for meter %s: %w", m.Number, err)
	}
	m.VoucherSeq = seq
	return []store.Token{{MeterID: m.ID, Ordinal: 0, Kind: store.TokenKeyChange, Voucher: b, VoucherSeq: seq, CreatedAt: now}}, nil
}
