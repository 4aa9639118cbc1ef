package store

import (
	"context"
	"time"
)

// Campaign kinds (package campaign gives them meaning).
const (
	CampaignSTS        = "sts"         // STS key change (new KRN, TI or base date: the TID rollover)
	CampaignVoucherKey = "voucher-key" // trust a rotated credit or management key
	CampaignMeterKey   = "meter-key"   // raise the per-meter symmetric key version
)

// Campaign states.
const (
	CampaignRunning   = "running"
	CampaignDone      = "done"
	CampaignCancelled = "cancelled"
)

// Campaign meter states, in the only order a meter moves through them
// (failed may follow pending).
const (
	CampaignPending   = "pending"
	CampaignIssued    = "issued"
	CampaignDelivered = "delivered"
	CampaignConfirmed = "confirmed"
	CampaignFailed    = "failed"
)

// CampaignStates lists the meter states in order.
var CampaignStates = []string{CampaignPending, CampaignIssued, CampaignDelivered, CampaignConfirmed, CampaignFailed}

// Campaign is a key-rotation campaign over a set of meters.
type Campaign struct {
	ID         int64
	Name       string
	Kind       string
	Params     []byte // JSON, package campaign's Params
	State      string
	CreatedBy  string
	CreatedAt  time.Time
	FinishedAt time.Time
}

// CampaignMeter is one meter's progress through a campaign.
type CampaignMeter struct {
	CampaignID  int64
	MeterID     int64
	Meter       string // the meter's number, for lists and reports
	State       string
	Tokens      int // tokens or vouchers issued; 0 when none were needed
	Detail      string
	Evidence    string
	IssuedAt    time.Time
	DeliveredAt time.Time
	ConfirmedAt time.Time
}

// MeterFilter selects meters to enrol: of a supply group ("" any) and of
// one of the kinds.
type MeterFilter struct {
	SupplyGroup string
	Kinds       []string
}

// Campaigns stores key-rotation campaigns and the tokens they issue.
type Campaigns interface {
	Create(ctx context.Context, c Campaign) (Campaign, error)
	ByID(ctx context.Context, id int64) (Campaign, error)
	ByName(ctx context.Context, name string) (Campaign, error)
	List(ctx context.Context, limit int) ([]Campaign, error)
	SetState(ctx context.Context, id int64, state string, at time.Time) error
	// Enrol adds meters as pending; meters enrolled already are left as
	// they are. It returns how many were added.
	Enrol(ctx context.Context, campaignID int64, meterIDs []int64) (int, error)
	// EnrolAll adds every meter matching f as pending (not removed ones).
	EnrolAll(ctx context.Context, campaignID int64, f MeterFilter) (int, error)
	// Pending returns up to limit pending meter IDs above after, in order.
	Pending(ctx context.Context, campaignID, after int64, limit int) ([]int64, error)
	Meter(ctx context.Context, campaignID, meterID int64) (CampaignMeter, error)
	// Meters lists a campaign's meters above after in meter ID order,
	// in one state or ("" ) all.
	Meters(ctx context.Context, campaignID int64, state string, after int64, limit int) ([]CampaignMeter, error)
	// OfMeter lists the campaign rows of one meter, newest campaign first.
	OfMeter(ctx context.Context, meterID int64) ([]CampaignMeter, error)
	// Advance moves a meter's row to state `to` if it is in one of from,
	// setting the state's time, the detail and (for issued) the token
	// count; ErrConflict when the row is in another state.
	Advance(ctx context.Context, m CampaignMeter, at time.Time, from ...string) error
	// Counts returns how many meters are in each state.
	Counts(ctx context.Context, campaignID int64) (map[string]int64, error)
	// AddTokens stores the tokens a campaign issued to meters, in one
	// statement; (campaign, meter, ordinal) is unique, so a set is stored
	// once.
	AddTokens(ctx context.Context, campaignID int64, ts []Token) error
	// Tokens returns a meter's tokens from a campaign in ordinal order.
	Tokens(ctx context.Context, campaignID, meterID int64) ([]Token, error)
	// RequestTokens returns an engineering request's tokens in ordinal
	// order ((request, ordinal) is unique since migration 0004).
	RequestTokens(ctx context.Context, requestID int64) ([]Token, error)
}
