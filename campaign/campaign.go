// Package campaign rotates keys across a fleet: it moves a set of meters to
// new key versions and produces, for each meter, what that meter needs to
// follow, then tracks each meter until the meter itself reports the change.
//
// Three kinds of campaign exist:
//
//   - sts: the supply group moves to a new vending key revision (imported
//     first with keys.ImportVendingKeys), tariff index or base date, and
//     every enrolled STS meter gets the key-change token set that takes it
//     there. The STS TID rollover (base date 1993 to 2014) is this kind with
//     base date 2014. The tokens are made by vend.Service.KeyChangeSet, the
//     code a purchase uses, so a campaign and a purchase can never disagree
//     about a meter's key.
//   - voucher-key: card and AMI meters get a KindKeyChange engineering
//     voucher that trusts a rotated credit- or management-signing key (kms
//     Rotate made the new version) and retires the old one. It is signed by
//     the management key version the meters trust now, so a management key
//     rotation is signed by its predecessor.
//   - meter-key: the per-meter symmetric keys (card, telemetry, wM-Bus) move
//     to a new key version. The keys derive from the meter root and the
//     version (keys.MeterKey), so nothing is issued: the meter is re-keyed by
//     provisioning, and the head-end switches its record of the meter's key
//     version when the meter confirms it.
//
// A campaign is under dual control: one operator proposes it (Start),
// another approves it (Approve); nothing moves and nothing is issued before.
//
// A campaign is a row and one row per enrolled meter, whose state only moves
// forward: pending -> issued -> delivered -> confirmed, or pending -> failed
// with the reason. Run works through the pending meters in batches, one
// database transaction per batch; in that transaction each meter's row moves
// to issued by a conditional UPDATE, its tokens are stored under a unique
// (campaign, meter, ordinal) index and its meter row takes the new key state.
// A crash or a cancelled context anywhere loses at most the open batch,
// which rolls back whole, and a second run (or two runs at once, on several
// replicas) cannot issue a meter a second set: the state guard, the unique
// index and the meter row lock each forbid it. Because the meter row moves
// in the same transaction, a purchase that follows finds no key change due,
// and a purchase that came first (and issued the key change itself) leaves
// the campaign nothing to issue.
//
// Delivered marks tokens printed or sent; confirmed needs the meter's own
// word: Confirm is called with what its telemetry (or a field report) says
// it now holds, and only a match confirms. Every step is written to the
// audit log in its transaction.
package campaign

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"sluice/keys"
	"sluice/kms"
	"sluice/store"
	"sluice/sts"
	"sluice/vend"
	"sluice/voucher"
)

// Sentinel errors callers branch on.
var (
	ErrInvalid  = errors.New("campaign: invalid")
	ErrNotFound = errors.New("campaign: not found")
	ErrFinished = errors.New("campaign: not running")
	// ErrForbidden: dual control refused the action (the proposer cannot
	// approve their own campaign).
	ErrForbidden = errors.New("campaign: not allowed")
	// ErrNotApproved: the campaign waits for a second operator's approval.
	ErrNotApproved = errors.New("campaign: not approved")
)

// Kinds of campaign.
const (
	KindSTS        = store.CampaignSTS
	KindVoucherKey = store.CampaignVoucherKey
	KindMeterKey   = store.CampaignMeterKey
)

// DefaultBatch is how many meters one transaction issues for: large enough
// to amortise the commit, small enough that a lost batch is cheap and locks
// are short.
const DefaultBatch = 100

// Voucher validity of key-change vouchers: card meters take them at the next
// card insertion, which may be weeks away.
const (
	DefaultVoucherDays = 60
	MaxVoucherDays     = 366
)

// Spec is what `sluice keys campaign start` asks for.
type Spec struct {
	Name string
	Kind string
	// Meters lists meter numbers; empty means every meter the kind
	// applies to (sts: the supply group's STS meters; the others: every
	// card and AMI meter).
	Meters []string

	// sts: the supply group and its target key. KRN 0 keeps the group's
	// revision, TI -1 its tariff index, BaseDate 0 its base date.
	SupplyGroup string
	KRN         int
	TI          int
	BaseDate    int

	// voucher-key: the rotated key's role ("credit" or "management") and
	// versions: New (0: the newest) is trusted, Old (0: the one before New)
	// is retired unless KeepOld. Signer is the management key version the
	// meters trust (0: Old for a management rotation, else the newest).
	Role       string
	New, Old   int
	Signer     int
	KeepOld    bool
	ValidDays  int
	KeyVersion int // meter-key: the target per-meter key version
}

// Params is the campaign's target as stored (key_campaigns.params).
type Params struct {
	SupplyGroup string `json:"supply_group,omitempty"`
	FromKRN     int    `json:"from_krn,omitempty"`
	FromTI      int    `json:"from_ti,omitempty"`
	FromBase    int    `json:"from_base_date,omitempty"`
	KRN         int    `json:"krn,omitempty"`
	TI          int    `json:"ti,omitempty"`
	BaseDate    int    `json:"base_date,omitempty"`

	Role       string `json:"role,omitempty"`
	KeyName    string `json:"key,omitempty"`
	NewVersion int    `json:"new_version,omitempty"`
	NewKeyID   uint32 `json:"new_key_id,omitempty"`
	NewPublic  []byte `json:"new_public,omitempty"`
	OldVersion int    `json:"old_version,omitempty"`
	RetireID   uint32 `json:"retire_key_id,omitempty"`
	Signer     int    `json:"signer_version,omitempty"`
	ValidDays  int    `json:"valid_days,omitempty"`

	KeyVersion int `json:"key_version,omitempty"`
}

// Config carries the service's dependencies.
type Config struct {
	Store store.Store
	// Vend makes STS key-change sets (sts campaigns).
	Vend *vend.Service
	// KM holds the signing keys and the STS vending keys.
	KM kms.KeyManager
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Batch is the meters per transaction; 0 means DefaultBatch.
	Batch  int
	Logger *slog.Logger
}

// Service runs campaigns.
type Service struct {
	cfg Config
	now func() time.Time
	log *slog.Logger
}

// New returns a Service.
func New(cfg Config) *Service {
	s := &Service{cfg: cfg, now: cfg.Now, log: cfg.Logger}
	if s.now == nil {
		s.now = time.Now
	}
	if s.cfg.Batch <= 0 {
		s.cfg.Batch = DefaultBatch
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	return s
}

func invalid(field, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrInvalid, field, fmt.Sprintf(format, args...))
}

// Start proposes a campaign: it checks the target against the key manager
// and the store, records it and enrols its meters as pending. Nothing moves
// and nothing is issued until a second operator approves it (Approve), and
// Run issues only for an approved campaign: key changes are under dual
// control like every other engineering action.
func (s *Service) Start(ctx context.Context, actor string, spec Spec) (store.Campaign, int, error) {
	spec.Name = strings.TrimSpace(spec.Name)
	if spec.Name == "" || len(spec.Name) > 64 {
		return store.Campaign{}, 0, invalid("name", "must be 1 to 64 characters")
	}
	var (
		c     store.Campaign
		added int
	)
	p, err := s.params(ctx, &spec)
	if err != nil {
		return c, 0, err
	}
	err = s.cfg.Store.Tx(ctx, func(tx store.Tx) error {
		p := p
		var ids []int64
		switch spec.Kind {
		case KindSTS:
			g, err := tx.SupplyGroups().Get(ctx, spec.SupplyGroup)
			if errors.Is(err, store.ErrNotFound) {
				return invalid("supply_group", "no supply group %s", spec.SupplyGroup)
			}
			if err != nil {
				return err
			}
			p.FromKRN, p.FromTI, p.FromBase = g.KRN, g.TI, g.BaseDate
			if p.KRN == 0 {
				p.KRN = g.KRN
			}
			if p.TI < 0 {
				p.TI = g.TI
			}
			if p.BaseDate == 0 {
				p.BaseDate = g.BaseDate
			}
			if p.BaseDate < g.BaseDate {
				return invalid("base_date", "%d is before the group's %d: TIDs never go back", p.BaseDate, g.BaseDate)
			}
			if p.KRN == g.KRN && p.TI == g.TI && p.BaseDate == g.BaseDate {
				// The group is there already (a resumed start, or a
				// purchase-driven move): the campaign reaches the meters
				// still behind.
				s.log.Info("supply group already on the campaign's key", "group", g.Code)
			}
			if err := s.vendingKeyExists(ctx, g.Code, p.KRN); err != nil {
				return err
			}
		}
		if len(spec.Meters) > 0 {
			for _, n := range spec.Meters {
				m, err := tx.Meters().ByNumber(ctx, n)
				if errors.Is(err, store.ErrNotFound) {
					return invalid("meters", "no meter %s", n)
				}
				if err != nil {
					return err
				}
				if err := applies(spec.Kind, p, m); err != nil {
					return err
				}
				ids = append(ids, m.ID)
			}
		}
		params, err := json.Marshal(p)
		if err != nil {
			return err
		}
		c, err = tx.Campaigns().Create(ctx, store.Campaign{Name: spec.Name, Kind: spec.Kind, Params: params, CreatedBy: actor, CreatedAt: s.now()})
		if errors.Is(err, store.ErrConflict) {
			return invalid("name", "a campaign named %q exists", spec.Name)
		}
		if err != nil {
			return err
		}
		if len(spec.Meters) == 0 {
			added, err = tx.Campaigns().EnrolAll(ctx, c.ID, kindFilter(spec.Kind, p))
		} else {
			added, err = tx.Campaigns().Enrol(ctx, c.ID, ids)
		}
		if err != nil {
			return err
		}
		return audit(ctx, tx, s.now(), actor, "campaign.start", c, map[string]any{"kind": c.Kind, "params": json.RawMessage(params), "meters": added})
	})
	return c, added, err
}

func (s *Service) vendingKeyExists(ctx context.Context, group string, krn int) error {
	name := keys.STSVendingKey(atoi(group), krn)
	if _, err := s.cfg.KM.Key(ctx, kms.Ref(name)); err != nil {
		return invalid("krn", "vending key %s: %v (import it first: sluice keys import-sts)", name, err)
	}
	return nil
}

// kindFilter says which meters "all" means for a kind.
func kindFilter(kind string, p Params) store.MeterFilter {
	if kind == KindSTS {
		return store.MeterFilter{SupplyGroup: p.SupplyGroup, Kinds: []string{store.MeterSTS}}
	}
	return store.MeterFilter{Kinds: []string{store.MeterCard, store.MeterAMI}}
}

// applies checks that a listed meter can take the campaign.
func applies(kind string, p Params, m store.Meter) error {
	switch kind {
	case KindSTS:
		if m.Kind != store.MeterSTS || m.SGC != p.SupplyGroup {
			return invalid("meters", "meter %s is not an STS meter of supply group %s", m.Number, p.SupplyGroup)
		}
	default:
		if m.Kind == store.MeterSTS {
			return invalid("meters", "meter %s is an STS meter: %s campaigns are for card and AMI meters", m.Number, kind)
		}
	}
	return nil
}

// params validates a spec against the key manager and returns the target.
func (s *Service) params(ctx context.Context, spec *Spec) (Params, error) {
	var p Params
	switch spec.Kind {
	case KindSTS:
		if s.cfg.KM == nil || s.cfg.Vend == nil {
			return p, invalid("kind", "sts campaigns need the key manager and the vending service")
		}
		if _, err := sts.ParseSGC(spec.SupplyGroup); err != nil {
			return p, invalid("supply_group", "%v", err)
		}
		if spec.KRN < 0 || spec.KRN > 9 {
			return p, invalid("krn", "must be 1 to 9")
		}
		if spec.TI < -1 || spec.TI > 99 {
			return p, invalid("ti", "must be 0 to 99")
		}
		switch spec.BaseDate {
		case 0, 1993, 2014, 2035:
		default:
			return p, invalid("base_date", "must be 1993, 2014 or 2035")
		}
		p.SupplyGroup, p.KRN, p.TI, p.BaseDate = spec.SupplyGroup, spec.KRN, spec.TI, spec.BaseDate
	case KindVoucherKey:
		if s.cfg.KM == nil {
			return p, invalid("kind", "voucher-key campaigns need the key manager")
		}
		name, slot := keys.CreditSigning, voucher.RoleCredit
		switch spec.Role {
		case "credit":
		case "management":
			name, slot = keys.ManagementSigning, voucher.RoleManagement
		default:
			return p, invalid("role", "must be credit or management")
		}
		newInfo, err := s.cfg.KM.Key(ctx, kms.KeyRef{Name: name, Version: spec.New})
		if err != nil {
			return p, invalid("new", "%s: %v", name, err)
		}
		newPub, ok := newInfo.Public.(ed25519.PublicKey)
		if !ok {
			return p, invalid("new", "%s is not an Ed25519 key", newInfo.Ref())
		}
		old := spec.Old
		if old == 0 {
			old = newInfo.Version - 1
		}
		if old < 1 || old >= newInfo.Version {
			return p, invalid("old", "no version before %s: rotate the key first (sluice keys rotate %s)", newInfo.Ref(), name)
		}
		oldInfo, err := s.cfg.KM.Key(ctx, kms.KeyRef{Name: name, Version: old})
		if err != nil {
			return p, invalid("old", "%s@%d: %v", name, old, err)
		}
		oldPub, ok := oldInfo.Public.(ed25519.PublicKey)
		if !ok {
			return p, invalid("old", "%s is not an Ed25519 key", oldInfo.Ref())
		}
		signer := spec.Signer
		if signer == 0 && slot == voucher.RoleManagement {
			signer = old
		}
		if signer != 0 {
			if _, err := s.cfg.KM.Key(ctx, kms.KeyRef{Name: keys.ManagementSigning, Version: signer}); err != nil {
				return p, invalid("signer", "%s@%d: %v", keys.ManagementSigning, signer, err)
			}
		}
		days := spec.ValidDays
		if days == 0 {
			days = DefaultVoucherDays
		}
		if days < 1 || days > MaxVoucherDays {
			return p, invalid("valid_days", "must be 1 to %d", MaxVoucherDays)
		}
		p = Params{Role: spec.Role, KeyName: name, NewVersion: newInfo.Version, NewKeyID: voucher.KeyID(newPub), NewPublic: newPub,
			OldVersion: old, Signer: signer, ValidDays: days}
		if !spec.KeepOld {
			p.RetireID = voucher.KeyID(oldPub)
		}
	case KindMeterKey:
		if spec.KeyVersion < 2 || spec.KeyVersion > 0xffff {
			return p, invalid("key_version", "must be 2 to 65535 (meters start at version 1)")
		}
		p.KeyVersion = spec.KeyVersion
	default:
		return p, invalid("kind", "%q is not sts, voucher-key or meter-key", spec.Kind)
	}
	return p, nil
}

func atoi(s string) int { n, _ := strconv.Atoi(s); return n }

// load reads a campaign and its params.
func load(ctx context.Context, tx store.Tx, id int64) (store.Campaign, Params, error) {
	c, err := tx.Campaigns().ByID(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return c, Params{}, fmt.Errorf("%w: campaign %d", ErrNotFound, id)
	}
	if err != nil {
		return c, Params{}, err
	}
	var p Params
	if err := json.Unmarshal(c.Params, &p); err != nil {
		return c, p, fmt.Errorf("campaign %d params: %w", id, err)
	}
	return c, p, nil
}

// Lookup finds a campaign by ID or name.
func (s *Service) Lookup(ctx context.Context, ref string) (store.Campaign, error) {
	var c store.Campaign
	err := s.cfg.Store.Read(ctx, func(tx store.Tx) error {
		var err error
		if id, perr := strconv.ParseInt(ref, 10, 64); perr == nil {
			c, err = tx.Campaigns().ByID(ctx, id)
		} else {
			c, err = tx.Campaigns().ByName(ctx, ref)
		}
		if errors.Is(err, store.ErrNotFound) {
			return fmt.Errorf("%w: campaign %q", ErrNotFound, ref)
		}
		return err
	})
	return c, err
}

func audit(ctx context.Context, tx store.Tx, at time.Time, actor, action string, c store.Campaign, details any) error {
	return store.AppendAudit(ctx, tx, at, actor, action, fmt.Sprintf("campaign:%d", c.ID), details)
}
