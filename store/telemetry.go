package store

import (
	"context"
	"time"
)

// TelemetryFrame is one authenticated meter frame (package telemetry/frame)
// ready to store: the ingest has verified its MAC and topic before it gets
// here. Exactly one of Reading, Events and Ack is set, as Kind says.
type TelemetryFrame struct {
	MeterID    int64
	Counter    uint32
	Kind       uint8 // 1 reading, 2 event, 3 ack
	Tag        [8]byte
	Time       time.Time // the meter's clock
	ReceivedAt time.Time
	Reading    *Reading
	Events     []TelemetryEvent
	Ack        *TelemetryAck
}

// Reading is one stored meter reading. Counter is the frame counter, 0 for
// readings decoded from wireless M-Bus telegrams.
type Reading struct {
	MeterID    int64
	Counter    uint32
	Time       time.Time
	ReceivedAt time.Time
	Forward    int64 // litres
	Reverse    int64 // litres
	Credit     int64 // credit unit
	Loaded     int64 // cumulative, credit unit
	Unit       uint8 // 1 litres, 2 minor currency units
	Status     uint16
	Interval   time.Duration
	Intervals  []uint32
}

// TelemetryEvent is one event of an event frame.
type TelemetryEvent struct {
	MeterID int64
	Counter uint32
	Index   int
	Kind    uint8
	Reason  uint8
	Time    time.Time
	Value   int64
}

// TelemetryAck is a meter's acknowledgement of a token or voucher.
type TelemetryAck struct {
	MeterID int64
	Counter uint32
	Time    time.Time
	Subject uint8 // 1 token, 2 voucher
	Result  uint8 // 1 accepted, 2 duplicate, 3 rejected
	Reason  uint8
	Ref     int64
	Amount  int64
	Credit  int64
	Loaded  int64
}

// ReplayState is a meter's persisted replay window (package replay) and
// when it was last heard from.
type ReplayState struct {
	MeterID       int64
	Highest       uint32
	Window        []byte // replay.Window marshalled, 20 bytes
	LastFrameAt   time.Time
	LastReadingAt time.Time
}

// FrameOutcome is what the store did with one frame of a batch.
type FrameOutcome uint8

const (
	// FrameStored: the frame was new and is stored.
	FrameStored FrameOutcome = 1 + iota
	// FrameDuplicate: a frame with this meter, counter and tag is stored
	// already (a retransmission); nothing was written.
	FrameDuplicate
	// FrameReused: a different frame is stored under this meter and
	// counter; nothing was written.
	FrameReused
)

// FrameWriter stores a batch of frames and the replay windows they moved
// in one transaction. Frames are idempotent by (meter, counter): the
// outcome of each, in order, says whether it was stored. Windows are only
// ever moved forward (a higher Highest), so two writers cannot move one
// back. *sqlstore.DB implements it with the database's bulk path (COPY
// on PostgreSQL, multi-row INSERT on SQLite).
type FrameWriter interface {
	WriteFrames(ctx context.Context, frames []TelemetryFrame, windows []ReplayState) ([]FrameOutcome, error)
}

// WMBusMeter is a meter read over wireless M-Bus: its telegram address
// (manufacturer code and 8-digit id, "KAM12345678") and its AES key,
// wrapped by the KMS key KeyName version KeyVersion.
type WMBusMeter struct {
	MeterID    int64
	Address    string
	WrappedKey []byte
	KeyName    string
	KeyVersion int
	DefaultKey string // name of the published default key it uses, or ""
	CreatedAt  time.Time
}

// MeterActivity is a meter's last contact and its registered area, for the
// periodic revenue-protection rules.
type MeterActivity struct {
	MeterID     int64
	Number      string
	Area        string
	LastFrameAt time.Time // zero: never reported
}

// Consumption is the litres a meter registered over a period: the growth
// of its forward register between the first and last readings in it.
type Consumption struct {
	MeterID  int64
	Area     string
	Litres   int64
	Readings int
}

// PendingVoucher is a remote top-up not yet acknowledged by its meter.
type PendingVoucher struct {
	TokenID    int64
	MeterID    int64
	Number     string
	PurchaseID int64
	VoucherSeq int64
	Voucher    []byte
	Litres     int64
	CreatedAt  time.Time
	Attempts   int
	LastAt     time.Time
	NextAt     time.Time // zero: never sent
	LastError  string
	Rejected   bool
}

// Telemetry is the meter telemetry aggregate: frames and readings, wM-Bus
// registrations and remote top-up delivery.
type Telemetry interface {
	// StoreFrames is FrameWriter's operation inside this transaction, with
	// multi-row statements (the generic path; FrameWriter may be faster).
	StoreFrames(ctx context.Context, frames []TelemetryFrame, windows []ReplayState) ([]FrameOutcome, error)
	// ReplayStates returns the stored windows of the given meters; meters
	// that never reported are absent.
	ReplayStates(ctx context.Context, meterIDs []int64) ([]ReplayState, error)
	// StoreReadings appends readings that carry no frame (wM-Bus).
	StoreReadings(ctx context.Context, rs []Reading) error
	// Readings returns a meter's readings with from <= time < to, newest
	// first, at most limit.
	Readings(ctx context.Context, meterID int64, from, to time.Time, limit int) ([]Reading, error)
	// Events returns a meter's events since a time, newest first.
	Events(ctx context.Context, meterID int64, since time.Time, limit int) ([]TelemetryEvent, error)
	// Acks returns a meter's acknowledgements, newest first.
	Acks(ctx context.Context, meterID int64, limit int) ([]TelemetryAck, error)
	// CountFrames counts stored frames of a meter by kind (0: all kinds).
	CountFrames(ctx context.Context, meterID int64, kind uint8) (int64, error)
	// EnsureReadingPartitions creates the monthly partitions of readings
	// for the months from..from+months-1 where the database partitions
	// (PostgreSQL); a no-op elsewhere.
	EnsureReadingPartitions(ctx context.Context, from time.Time, months int) error

	// PutWMBusMeter registers (or replaces) a meter's wM-Bus address and
	// wrapped key; ErrConflict when the address belongs to another meter.
	PutWMBusMeter(ctx context.Context, m WMBusMeter) error
	// WMBusMeter finds a registration by telegram address.
	WMBusMeter(ctx context.Context, address string) (WMBusMeter, error)

	// Activity lists meters of the given kinds with their last contact.
	Activity(ctx context.Context, kinds []string) ([]MeterActivity, error)
	// Consumption sums each meter's forward-register growth over readings
	// with from <= time < to.
	Consumption(ctx context.Context, from, to time.Time) ([]Consumption, error)

	// PendingVouchers lists vouchers of AMI meters not yet delivered, due
	// at or before now (never-sent ones first), at most limit. With a zero
	// now every undelivered voucher is listed.
	PendingVouchers(ctx context.Context, now time.Time, limit int) ([]PendingVoucher, error)
	// VoucherAttempt records a delivery attempt and when to try next.
	VoucherAttempt(ctx context.Context, tokenID int64, at, next time.Time, errText string) error
	// VoucherRejected marks a voucher the meter refused: no more retries.
	VoucherRejected(ctx context.Context, meterID, voucherSeq int64, reason string, at time.Time) error
}

// Alert severities and states.
const (
	SeverityInfo     = "info"
	SeverityWarning  = "warning"
	SeverityCritical = "critical"

	AlertOpen         = "open"
	AlertAcknowledged = "acknowledged"
	AlertResolved     = "resolved"
)

// Alert is a revenue-protection finding with its life cycle.
type Alert struct {
	ID         int64
	Subject    string // "meter:<number>", "gateway:<id>"
	MeterID    int64  // 0: none
	Rule       string
	Severity   string
	State      string
	Summary    string
	Details    []byte // JSON object
	FirstAt    time.Time
	LastAt     time.Time
	Count      int64
	AckedBy    string
	AckedAt    time.Time
	ResolvedBy string
	ResolvedAt time.Time
	Note       string
}

// AlertFilter selects alerts; zero fields match everything.
type AlertFilter struct {
	State   string
	Rule    string
	MeterID int64
	Since   time.Time // LastAt >= Since
	Limit   int
}

// Alerts is the alert aggregate. At most one alert per (subject, rule) is
// unresolved.
type Alerts interface {
	// Raise opens an alert, or when one for the subject and rule is not
	// resolved, refreshes it (LastAt, Count, Summary, Details, and a higher
	// severity). It reports the alert and whether it was new.
	Raise(ctx context.Context, a Alert) (Alert, bool, error)
	ByID(ctx context.Context, id int64) (Alert, error)
	List(ctx context.Context, f AlertFilter) ([]Alert, error)
	// Acknowledge moves an open alert to acknowledged; ErrConflict when it
	// is not open.
	Acknowledge(ctx context.Context, id int64, by string, at time.Time) (Alert, error)
	// Resolve closes an open or acknowledged alert with a note;
	// ErrConflict when it is resolved already.
	Resolve(ctx context.Context, id int64, by, note string, at time.Time) (Alert, error)
}
