package store

import (
	"context"
	"errors"
	"time"
)

// Vendor is a vending point: an office counter, a shop, a payment channel.
// Its float is prepaid money that vends draw down.
type Vendor struct {
	ID              int64
	Code            string
	Name            string
	FloatCents      int64
	DailyLimitCents int64
	Disabled        bool
	CreatedAt       time.Time
}

// Vendors is the vending-point aggregate.
type Vendors interface {
	Create(ctx context.Context, v Vendor) (Vendor, error)
	ByID(ctx context.Context, id int64) (Vendor, error)
	ByCode(ctx context.Context, code string) (Vendor, error)
	List(ctx context.Context) ([]Vendor, error)
	Update(ctx context.Context, v Vendor) error
	// AdjustFloat adds delta (negative for a vend) to the float in one
	// conditional statement; ErrConstraint when it would go below zero.
	AdjustFloat(ctx context.Context, id, delta int64) (after int64, err error)
	// DaySales is what the vendor sold on day.
	DaySales(ctx context.Context, id int64, day string) (int64, error)
}

// SupplyGroup is an STS supply group: its vending key and the key revision
// new tokens are made under.
type SupplyGroup struct {
	Code      string // 6 digits
	Name      string
	DKGA      string // "02" or "04"
	EA        string // "07" or "11"
	BaseDate  int
	KRN       int
	TI        int
	CreatedAt time.Time
}

// SupplyGroups is the supply-group aggregate.
type SupplyGroups interface {
	Create(ctx context.Context, g SupplyGroup) error
	Get(ctx context.Context, code string) (SupplyGroup, error)
	List(ctx context.Context) ([]SupplyGroup, error)
	Update(ctx context.Context, g SupplyGroup) error
}

// Tariff is a tariff's stored JSON definition (package tariff parses it).
type Tariff struct {
	Code       string
	Definition []byte
	UpdatedAt  time.Time
}

// Tariffs is the tariff aggregate.
type Tariffs interface {
	Put(ctx context.Context, t Tariff) error
	Get(ctx context.Context, code string) (Tariff, error)
	List(ctx context.Context) ([]Tariff, error)
}

// Customer is a household or business account.
type Customer struct {
	ID        int64
	Account   string
	Name      string
	Address   string
	Phone     string
	Area      string
	DebtCents int64
	CreatedAt time.Time
}

// Customers is the customer aggregate.
type Customers interface {
	Create(ctx context.Context, c Customer) (Customer, error)
	ByID(ctx context.Context, id int64) (Customer, error)
	ByAccount(ctx context.Context, account string) (Customer, error)
	// Search matches account, name or phone by prefix, case-insensitive.
	Search(ctx context.Context, q string, limit int) ([]Customer, error)
	Update(ctx context.Context, c Customer) error
	// AdjustDebt adds delta to the debt; ErrConstraint below zero.
	AdjustDebt(ctx context.Context, id, delta int64) error
}

// Meter kinds.
const (
	MeterSTS  = "sts"  // keypad, STS tokens
	MeterCard = "card" // CPU card, signed vouchers
	MeterAMI  = "ami"  // networked, vouchers by downlink
)

// Meter is a water meter and its key state.
type Meter struct {
	ID         int64
	Number     string
	Kind       string
	CustomerID int64 // 0: none
	TariffCode string
	Area       string
	// STS parameters as programmed into the meter.
	SGC      string
	KRN      int
	TI       int
	KT       int
	BaseDate int
	// Counters of what was issued.
	LastTID    int64
	VoucherSeq int64
	KeyVersion int
	// RootVersion is the meter-root version the meter's symmetric keys
	// derive from, pinned when it is provisioned (keys.MeterKey); 0 on
	// Create means 1.
	RootVersion int
	// ProvisionCounter is the counter of the last provisioning record
	// issued to the meter (0: none).
	ProvisionCounter int64
	// ProvisionIdentity is the Ed25519 identity key of the board the last
	// record was issued to (nil: never provisioned).
	ProvisionIdentity []byte
	Status            string
	CreatedAt         time.Time
}

// KeyVersions returns the versions the meter's symmetric keys derive under
// (keys.MeterKey): its meter-root version and its per-meter key version,
// each 1 when the row holds none in range (rows from before the columns).
func (m Meter) KeyVersions() (root int, version uint16) {
	root, version = m.RootVersion, 1
	if root < 1 {
		root = 1
	}
	if m.KeyVersion >= 1 && m.KeyVersion <= 0xffff {
		version = uint16(m.KeyVersion)
	}
	return root, version
}

// Meters is the meter aggregate.
type Meters interface {
	Create(ctx context.Context, m Meter) (Meter, error)
	ByID(ctx context.Context, id int64) (Meter, error)
	ByNumber(ctx context.Context, number string) (Meter, error)
	// ForUpdate reads a meter and locks its row until the transaction
	// ends (PostgreSQL), so two vends for one meter serialise.
	ForUpdate(ctx context.Context, id int64) (Meter, error)
	// Provisioned records a provisioning record issued to the meter: its
	// counter, which must be above the stored one (ErrConflict otherwise),
	// the root version of the keys it carries and the identity key of the
	// board it was issued to. Update leaves all three alone.
	Provisioned(ctx context.Context, id int64, rootVersion int, counter int64, identity []byte) error
	// Search matches number, customer account or name by prefix.
	Search(ctx context.Context, q string, limit int) ([]Meter, error)
	ByCustomer(ctx context.Context, customerID int64) ([]Meter, error)
	// Update writes every mutable field of m.
	Update(ctx context.Context, m Meter) error
	// Count returns how many meters exist.
	Count(ctx context.Context) (int64, error)
}

// MeterMonth is a meter's position on the month's block ladder.
type MeterMonth struct {
	MeterID        int64
	Month          string // YYYY-MM
	PaidLitres     int64
	FreeIssued     bool
	FixedCollected int64
}

// MeterMonths stores block-ladder positions.
type MeterMonths interface {
	// Get returns the month's row, or a zero one when none exists.
	Get(ctx context.Context, meterID int64, month string) (MeterMonth, error)
	Put(ctx context.Context, m MeterMonth) error
}

// Purchase states.
const (
	PurchaseCompleted = "completed"
	PurchaseReversed  = "reversed"
)

// Purchase is one sale of water credit.
type Purchase struct {
	ID             int64
	VendorID       int64
	IdempotencyKey string
	RequestHash    []byte
	OperatorID     int64
	MeterID        int64
	CustomerID     int64
	TenderedCents  int64
	PaidCents      int64
	Litres         int64
	State          string
	// Response is the JSON answer given, returned again on retry.
	Response  []byte
	CreatedAt time.Time
}

// PurchaseStart is what a purchase learns from its first statement.
type PurchaseStart struct {
	// Meter is read and locked until the transaction ends (PostgreSQL;
	// SQLite's write transactions are exclusive anyway).
	Meter Meter
	// KeyUsed: the vendor has used the idempotency key already.
	KeyUsed bool
	// NextID is reserved for the purchase: Record inserts the row under
	// it once, receipt included, instead of inserting and then storing a
	// receipt that names the ID.
	NextID int64
}

// PurchaseInputs are the rows a purchase reads besides its meter, read in
// one statement once the meter is locked (so what the meter's lock
// protects, the block ladder, is read after any vend that held it).
type PurchaseInputs struct {
	Vendor   Vendor
	Customer Customer
	// SupplyGroup is the meter's, zero for a meter without one.
	SupplyGroup SupplyGroup
	// TariffUpdatedAt stamps the meter's tariff, so a parsed tariff can
	// be kept and its definition read only when it changed.
	TariffUpdatedAt time.Time
	// Month is the meter's block-ladder row, zero when it has none yet.
	Month MeterMonth
}

// PurchaseRecord is everything a completed purchase writes besides what
// Start read and locked.
type PurchaseRecord struct {
	// Purchase has the ID reserved by Start and the receipt as Response.
	Purchase Purchase
	// Tokens are the purchase's, in order; Record sets their PurchaseID.
	Tokens []Token
	// Meter carries the meter's new counters and key state.
	Meter Meter
	// Month is the meter's block-ladder row after the purchase.
	Month  MeterMonth
	Ledger LedgerEntry
	Audit  AuditRecord
	// Day is the vendor's local day (YYYY-MM-DD) the sale counts against
	// the daily limit on.
	Day string
	// DebtRecovered is what the purchase paid off the customer's debt.
	DebtRecovered int64
}

// Why Purchases.Record refused a purchase. Each comes wrapped together with
// ErrConflict or ErrConstraint.
var (
	// ErrKeyUsed: the vendor used the idempotency key already.
	ErrKeyUsed = errors.New("idempotency key used")
	// ErrFloatShort: the vendor's float does not cover the purchase.
	ErrFloatShort = errors.New("float too low")
	// ErrOverDailyLimit: the purchase would exceed the vendor's daily limit.
	ErrOverDailyLimit = errors.New("over the daily limit")
)

// Purchases is the purchase aggregate.
type Purchases interface {
	// Start begins a purchase for the vendor's idempotency key on the
	// meter numbered meterNumber: it locks and reads the meter, tells
	// whether the key is used and reserves the purchase's ID, in one
	// statement. ErrNotFound when there is no such meter.
	Start(ctx context.Context, vendorID int64, key, meterNumber string) (PurchaseStart, error)
	// Inputs reads the vendor, the meter's customer, supply group, tariff
	// stamp and month's row in one statement; ErrNotFound when the
	// vendor, customer or tariff does not exist.
	Inputs(ctx context.Context, vendorID int64, m Meter, month string) (PurchaseInputs, error)
	// Record writes a purchase: its row, tokens, the meter's counters, the
	// block ladder, the ledger entry, the audit record, the float debit,
	// the day's sales and the debt recovered, in that order (the vendor's
	// rows last: they are the most contended). PostgreSQL gets them in one
	// round trip (a pipeline). The first refusal ends it: ErrKeyUsed,
	// ErrFloatShort, ErrOverDailyLimit or another store error.
	Record(ctx context.Context, r PurchaseRecord) error
	ByID(ctx context.Context, id int64) (Purchase, error)
	ByKey(ctx context.Context, vendorID int64, key string) (Purchase, error)
	ByMeter(ctx context.Context, meterID int64, limit int) ([]Purchase, error)
	SetState(ctx context.Context, id int64, state string) error
}

// Token kinds, in the order a meter must take them.
const (
	TokenKeyChange   = "key_change"
	TokenFreeWater   = "free_water"
	TokenCredit      = "credit"
	TokenEngineering = "engineering"
)

// Token is one STS token or signed voucher issued to a meter.
type Token struct {
	ID         int64
	MeterID    int64
	PurchaseID int64 // 0 for engineering tokens
	RequestID  int64 // engineering request, 0 otherwise
	Ordinal    int
	Kind       string
	Class      int
	Subclass   int
	TID        int64  // 0: none (key change, voucher)
	Digits     string // 20-digit STS token, or ""
	Voucher    []byte // signed voucher, or nil
	VoucherSeq int64  // 0: none
	Litres     int64
	CreatedAt  time.Time
	// DeliveredAt is when the meter acknowledged a voucher sent to it over
	// the network; zero until then.
	DeliveredAt time.Time
}

// Tokens stores issued tokens; uniqueness of (meter, TID), (meter, voucher
// sequence) and (purchase, ordinal) is a constraint.
type Tokens interface {
	Create(ctx context.Context, t Token) (Token, error)
	ByPurchase(ctx context.Context, purchaseID int64) ([]Token, error)
	ByMeter(ctx context.Context, meterID int64, limit int) ([]Token, error)
	// MarkDelivered records a meter's acknowledgement of a voucher; it
	// reports false when the voucher was delivered already (a duplicate ack).
	MarkDelivered(ctx context.Context, meterID, voucherSeq int64, at time.Time) (bool, error)
}

// Posting is one line of a ledger entry (package ledger's Posting, stored).
type Posting struct {
	Account string // "kind:id"
	Unit    string // currency code, or "L" for the litre memo accounts
	Amount  int64  // positive debit, negative credit
}

// LedgerEntry is a stored package ledger Entry.
type LedgerEntry struct {
	Seq      int64 // commit order, assigned by the store
	ID       string
	Type     string
	Purchase string
	Reverses string
	Time     time.Time
	Postings []Posting
	Tokens   []byte // JSON array of ledger.Token
}

// Ledger is the append-only double-entry ledger.
type Ledger interface {
	// Append stores an entry; ErrConflict when its ID exists.
	Append(ctx context.Context, e LedgerEntry) (int64, error)
	// ByID returns one entry.
	ByID(ctx context.Context, id string) (LedgerEntry, error)
	// Each streams every entry in commit order.
	Each(ctx context.Context, fn func(LedgerEntry) error) error
	// Balance sums an account's postings in unit.
	Balance(ctx context.Context, account, unit string) (int64, error)
}

// AuditRecord is one row of the audit log; Seq is 0 until sealed.
type AuditRecord struct {
	ID       int64
	At       time.Time
	Actor    string
	Action   string
	Object   string
	Details  []byte
	Seq      int64
	PrevHash []byte
	Hash     []byte
	Anchor   []byte
}

// Audit is the hash-chained audit log.
type Audit interface {
	// Append writes a pending record in the current transaction.
	Append(ctx context.Context, r AuditRecord) error
	// Head returns the last sealed record, or ErrNotFound on an empty chain.
	Head(ctx context.Context) (AuditRecord, error)
	// Pending returns up to limit unsealed records in id order.
	Pending(ctx context.Context, limit int) ([]AuditRecord, error)
	// Seal stores records' places in the chain (Seq, PrevHash, Hash,
	// Anchor), a batch in a few statements. Every record must be pending;
	// if one is not, Seal fails with ErrNotFound and the transaction must
	// roll back.
	Seal(ctx context.Context, rs ...AuditRecord) error
	// Each streams sealed records in sequence order from seq.
	Each(ctx context.Context, from int64, fn func(AuditRecord) error) error
	// CountPending counts unsealed records.
	CountPending(ctx context.Context) (int64, error)
	// LockSealer serialises sealers across replicas for the transaction.
	LockSealer(ctx context.Context) error
}

// Session is a logged-in operator's browser or client session.
type Session struct {
	TokenHash  []byte
	OperatorID int64
	CreatedAt  time.Time
	ExpiresAt  time.Time
}

// APIKey is a vending terminal's or channel's credential.
type APIKey struct {
	ID         int64
	KeyHash    []byte
	Prefix     string
	OperatorID int64
	Label      string
	CreatedAt  time.Time
	RevokedAt  time.Time
}

// Credentials stores sessions, API keys and failed logins.
type Credentials interface {
	CreateSession(ctx context.Context, s Session) error
	Session(ctx context.Context, tokenHash []byte) (Session, error)
	DeleteSession(ctx context.Context, tokenHash []byte) error
	DeleteSessionsOf(ctx context.Context, operatorID int64) error
	CreateAPIKey(ctx context.Context, k APIKey) (APIKey, error)
	// APIKeyOperator reads an API key and the operator it belongs to in
	// one statement (a request's authentication); ErrNotFound when either
	// does not exist.
	APIKeyOperator(ctx context.Context, keyHash []byte) (APIKey, Operator, error)
	APIKeys(ctx context.Context) ([]APIKey, error)
	RevokeAPIKey(ctx context.Context, id int64, at time.Time) error
	RecordLoginFailure(ctx context.Context, username, remote string, at time.Time) error
	// LoginFailures counts failures since a time, by username and by remote.
	LoginFailures(ctx context.Context, username, remote string, since time.Time) (byUser, byRemote int, err error)
	ClearLoginFailures(ctx context.Context, username string) error
}

// Engineering request states.
const (
	RequestPending  = "pending"
	RequestIssued   = "issued"
	RequestRejected = "rejected"
)

// EngineeringRequest is an engineering token or key change awaiting a
// second operator's decision.
type EngineeringRequest struct {
	ID          int64
	MeterID     int64
	Action      string
	Params      []byte // JSON
	Reason      string
	State       string
	RequestedBy int64
	RequestedAt time.Time
	DecidedBy   int64
	DecidedAt   time.Time
}

// EngineeringRequests is the dual-control queue.
type EngineeringRequests interface {
	Create(ctx context.Context, r EngineeringRequest) (EngineeringRequest, error)
	ByID(ctx context.Context, id int64) (EngineeringRequest, error)
	List(ctx context.Context, state string, limit int) ([]EngineeringRequest, error)
	// Decide moves a pending request to state; ErrConstraint when the
	// decider is the requester, ErrConflict when it is not pending.
	Decide(ctx context.Context, id int64, state string, by int64, at time.Time) error
}
