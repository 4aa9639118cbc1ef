package server

import (
	"net/http"
	"time"

	"sluice/auth"
	"sluice/vend"
)

// Role groups used by the table below.
var (
	staff      = roles(auth.Admin, auth.Supervisor, auth.Vendor, auth.Engineer, auth.Auditor)
	management = roles(auth.Admin, auth.Supervisor)
	readers    = roles(auth.Admin, auth.Supervisor, auth.Auditor)
	sellers    = roles(auth.Vendor)
	lookup     = roles(auth.Admin, auth.Supervisor, auth.Vendor, auth.Engineer, auth.Auditor)
)

// apiRoutes is the whole API, one line per endpoint.
func (s *Server) apiRoutes() []route {
	return []route{
		// Sessions.
		{Method: "POST", Path: "/auth/login", Roles: nil, Tag: "auth", Summary: "Log in; sets the session cookie",
			Request: LoginRequest{}, Response: Me{}, h: s.login},
		{Method: "POST", Path: "/auth/logout", Roles: staff, Tag: "auth", Summary: "End the session", BeforePasswordChange: true,
			Response: OK{}, h: s.logout},
		{Method: "GET", Path: "/auth/me", Roles: staff, Tag: "auth", Summary: "Who am I", BeforePasswordChange: true,
			Response: Me{}, h: s.me},
		{Method: "POST", Path: "/auth/password", Roles: staff, Tag: "auth", Summary: "Change my password", BeforePasswordChange: true,
			Request: PasswordRequest{}, Response: OK{}, h: s.changePassword},

		// Operators and API keys (administrators).
		{Method: "GET", Path: "/operators", Roles: roles(auth.Admin, auth.Auditor), Tag: "operators", Summary: "List operators",
			Response: []Operator{}, h: s.listOperators},
		{Method: "POST", Path: "/operators", Roles: roles(auth.Admin), Tag: "operators", Summary: "Create an operator (returns a one-time password)",
			Request: auth.NewOperator{}, Response: NewOperatorResponse{}, Status: http.StatusCreated, h: s.createOperator},
		{Method: "PATCH", Path: "/operators/{username}", Roles: roles(auth.Admin), Tag: "operators", Summary: "Change an operator's role, vending point or state",
			Request: auth.OperatorChange{}, Response: Operator{}, h: s.updateOperator},
		{Method: "GET", Path: "/api-keys", Roles: roles(auth.Admin, auth.Auditor), Tag: "operators", Summary: "List API keys",
			Response: []APIKey{}, h: s.listAPIKeys},
		{Method: "POST", Path: "/api-keys", Roles: roles(auth.Admin), Tag: "operators", Summary: "Issue an API key for a vending terminal or channel (shown once)",
			Request: APIKeyRequest{}, Response: NewAPIKeyResponse{}, Status: http.StatusCreated, h: s.createAPIKey},
		{Method: "DELETE", Path: "/api-keys/{id}", Roles: roles(auth.Admin), Tag: "operators", Summary: "Revoke an API key",
			Response: OK{}, h: s.revokeAPIKey},

		// Registry.
		{Method: "GET", Path: "/vendors", Roles: readers, Tag: "vendors", Summary: "List vending points and their floats",
			Response: []Vendor{}, h: s.listVendors},
		{Method: "POST", Path: "/vendors", Roles: roles(auth.Admin), Tag: "vendors", Summary: "Open a vending point",
			Request: vend.NewVendor{}, Response: Vendor{}, Status: http.StatusCreated, h: s.createVendor},
		{Method: "PATCH", Path: "/vendors/{code}", Roles: roles(auth.Admin), Tag: "vendors", Summary: "Change a vending point's name, daily limit or state",
			Request: vend.VendorChange{}, Response: Vendor{}, h: s.updateVendor},
		{Method: "GET", Path: "/vendors/mine", Roles: sellers, Tag: "vendors", Summary: "The caller's own vending point: float, daily limit, sold today",
			Response: Vendor{}, h: s.myVendor},
		{Method: "POST", Path: "/vendors/{code}/deposits", Roles: roles(auth.Supervisor), Tag: "vendors", Summary: "Record a float deposit",
			Request: DepositBody{}, Response: Vendor{}, Status: http.StatusCreated, h: s.deposit},
		{Method: "GET", Path: "/supply-groups", Roles: roles(auth.Admin, auth.Supervisor, auth.Engineer, auth.Auditor), Tag: "registry", Summary: "List STS supply groups",
			Response: []SupplyGroup{}, h: s.listSupplyGroups},
		{Method: "PUT", Path: "/supply-groups/{code}", Roles: roles(auth.Admin), Tag: "registry", Summary: "Create or reconfigure a supply group (raising KRN or base date schedules key changes)",
			Request: vend.SupplyGroupSpec{}, Response: SupplyGroup{}, h: s.putSupplyGroup},
		{Method: "GET", Path: "/tariffs", Roles: staff, Tag: "registry", Summary: "List tariffs",
			Response: []TariffDoc{}, h: s.listTariffs},
		{Method: "PUT", Path: "/tariffs/{code}", Roles: roles(auth.Admin), Tag: "registry", Summary: "Create or replace a tariff (validated; errors name the field)",
			Request: TariffDoc{}, Response: TariffDoc{}, h: s.putTariff},
		{Method: "GET", Path: "/customers", Roles: lookup, Tag: "registry", Summary: "Search customers by account, name or phone (?q=)",
			Response: []Customer{}, h: s.searchCustomers},
		{Method: "POST", Path: "/customers", Roles: management, Tag: "registry", Summary: "Open a customer account",
			Request: vend.NewCustomer{}, Response: Customer{}, Status: http.StatusCreated, h: s.createCustomer},
		{Method: "GET", Path: "/customers/{account}", Roles: lookup, Tag: "registry", Summary: "A customer and their meters",
			Response: CustomerDetail{}, h: s.getCustomer},
		{Method: "POST", Path: "/customers/{account}/debt", Roles: roles(auth.Supervisor), Tag: "registry", Summary: "Take on arrears to recover from purchases",
			Request: DebtBody{}, Response: Customer{}, Status: http.StatusCreated, h: s.takeOnDebt},
		{Method: "GET", Path: "/meters", Roles: lookup, Tag: "registry", Summary: "Search meters by number, account or name (?q=)",
			Response: []Meter{}, h: s.searchMeters},
		{Method: "POST", Path: "/meters", Roles: management, Tag: "registry", Summary: "Register a meter",
			Request: vend.NewMeter{}, Response: Meter{}, Status: http.StatusCreated, h: s.createMeter},
		{Method: "GET", Path: "/meters/{number}", Roles: lookup, Tag: "registry", Summary: "A meter with its key state",
			Response: Meter{}, h: s.getMeter},
		{Method: "POST", Path: "/meters/{number}/assign", Roles: management, Tag: "registry", Summary: "Assign a meter to a customer account",
			Request: AssignBody{}, Response: Meter{}, h: s.assignMeter},
		{Method: "GET", Path: "/meters/{number}/tokens", Roles: roles(auth.Admin, auth.Supervisor, auth.Engineer, auth.Auditor), Tag: "registry", Summary: "Tokens and vouchers issued to a meter",
			Response: []TokenRow{}, h: s.meterTokens},
		{Method: "GET", Path: "/meters/{number}/purchases", Roles: roles(auth.Admin, auth.Supervisor, auth.Auditor), Tag: "registry", Summary: "Purchases for a meter",
			Response: []PurchaseRow{}, h: s.meterPurchases},
		{Method: "GET", Path: "/meters/{number}/readings", Roles: lookup, Tag: "telemetry", Summary: "A meter's verified readings, newest first (?from=&to= RFC 3339, limit=)",
			Response: []ReadingRow{}, h: s.meterReadings},
		{Method: "GET", Path: "/meters/{number}/events", Roles: lookup, Tag: "telemetry", Summary: "A meter's reported events, newest first (?since= RFC 3339, limit=)",
			Response: []EventRow{}, h: s.meterEvents},

		// Vending.
		{Method: "POST", Path: "/purchases/preview", Roles: sellers, Tag: "vending", Summary: "Tariff breakdown of a purchase, without issuing",
			Request: vend.PurchaseRequest{}, Response: vend.Preview{}, h: s.preview},
		{Method: "POST", Path: "/purchases", Roles: sellers, Tag: "vending", Summary: "Sell water (Idempotency-Key header: a retry returns the same tokens)",
			Request: vend.PurchaseRequest{}, Response: vend.Receipt{}, Status: http.StatusCreated, Headers: []string{"Idempotency-Key"}, h: s.purchase},
		{Method: "GET", Path: "/purchases/{id}", Roles: roles(auth.Vendor, auth.Supervisor, auth.Auditor), Tag: "vending", Summary: "Reprint a receipt (audited; cashiers see their vending point's only)",
			Response: vend.Receipt{}, h: s.reprint},
		{Method: "POST", Path: "/purchases/{id}/reverse", Roles: roles(auth.Supervisor), Tag: "vending", Summary: "Reverse a purchase, or post a compensating entry",
			Request: vend.ReversalRequest{}, Response: vend.Reversal{}, h: s.reverse},

		// Audit and ledger.
		{Method: "GET", Path: "/audit", Roles: roles(auth.Auditor, auth.Admin), Tag: "audit", Summary: "Sealed audit records from a sequence number (?from=&limit=)",
			Response: []AuditRecord{}, h: s.auditRecords},
	}
}

// OK is the body of an answer with nothing more to say.
type OK struct {
	OK bool `json:"ok"`
}

// LoginRequest is a login.
type LoginRequest struct {
	Username string `json:"username"`
	Password string `json:"password"`
}

// Me describes the logged-in operator.
type Me struct {
	Operator           Operator `json:"operator"`
	MustChangePassword bool     `json:"must_change_password"`
	Via                string   `json:"via,omitempty"`
}

// PasswordRequest changes the caller's password.
type PasswordRequest struct {
	CurrentPassword string `json:"current_password"`
	NewPassword     string `json:"new_password"`
}

// Operator is an operator as the API shows it (never its hash).
type Operator struct {
	Username           string    `json:"username"`
	DisplayName        string    `json:"display_name"`
	Role               string    `json:"role"`
	Vendor             string    `json:"vendor,omitempty"`
	Disabled           bool      `json:"disabled"`
	MustChangePassword bool      `json:"must_change_password"`
	CreatedAt          time.Time `json:"created_at"`
}

// NewOperatorResponse carries the one-time password, shown once.
type NewOperatorResponse struct {
	Operator        Operator `json:"operator"`
	OneTimePassword string   `json:"one_time_password"`
}

// APIKeyRequest issues a key for an operator.
type APIKeyRequest struct {
	Operator string `json:"operator"`
	Label    string `json:"label"`
}

// APIKey is a key as listed (never the key itself).
type APIKey struct {
	ID        int64      `json:"id"`
	Prefix    string     `json:"prefix"`
	Operator  string     `json:"operator"`
	Label     string     `json:"label"`
	CreatedAt time.Time  `json:"created_at"`
	RevokedAt *time.Time `json:"revoked_at,omitempty"`
}

// NewAPIKeyResponse carries the key, shown once.
type NewAPIKeyResponse struct {
	APIKey APIKey `json:"api_key"`
	Key    string `json:"key"`
}

// Vendor is a vending point.
type Vendor struct {
	Code            string `json:"code"`
	Name            string `json:"name"`
	FloatCents      int64  `json:"float_cents"`
	DailyLimitCents int64  `json:"daily_limit_cents"`
	SoldTodayCents  int64  `json:"sold_today_cents"`
	Disabled        bool   `json:"disabled"`
}

// DepositBody records a float deposit for the vending point in the URL.
type DepositBody struct {
	AmountCents int64  `json:"amount_cents"`
	Bank        string `json:"bank,omitempty"`
	Reference   string `json:"reference"`
}

// DebtBody takes on arrears for the customer in the URL.
type DebtBody struct {
	AmountCents int64  `json:"amount_cents"`
	Reference   string `json:"reference"`
}

// AssignBody assigns a meter to a customer.
type AssignBody struct {
	Customer string `json:"customer"`
}

// SupplyGroup is an STS supply group.
type SupplyGroup struct {
	Code     string `json:"code"`
	Name     string `json:"name"`
	DKGA     string `json:"dkga"`
	EA       string `json:"ea"`
	BaseDate int    `json:"base_date"`
	KRN      int    `json:"krn"`
	TI       int    `json:"ti"`
}

// TariffDoc is a tariff in its JSON form (see docs/tariffs.md).
type TariffDoc map[string]any

// Customer is a customer account.
type Customer struct {
	Account   string `json:"account"`
	Name      string `json:"name"`
	Address   string `json:"address"`
	Phone     string `json:"phone"`
	Area      string `json:"area"`
	DebtCents int64  `json:"debt_cents"`
}

// CustomerDetail is a customer with their meters.
type CustomerDetail struct {
	Customer Customer `json:"customer"`
	Meters   []Meter  `json:"meters"`
}

// Meter is a meter and its key state.
type Meter struct {
	Number      string `json:"number"`
	Kind        string `json:"kind"`
	Customer    string `json:"customer,omitempty"`
	Tariff      string `json:"tariff"`
	Area        string `json:"area"`
	SupplyGroup string `json:"supply_group,omitempty"`
	KRN         int    `json:"krn,omitempty"`
	TI          int    `json:"ti,omitempty"`
	BaseDate    int    `json:"base_date,omitempty"`
	LastTID     int64  `json:"last_tid,omitempty"`
	VoucherSeq  int64  `json:"voucher_sequence,omitempty"`
	KeyVersion  int    `json:"key_version"`
	Status      string `json:"status"`
}

// TokenRow is an issued token as listed for a meter.
type TokenRow struct {
	Kind      string     `json:"kind"`
	Purchase  int64      `json:"purchase_id,omitempty"`
	Request   int64      `json:"request_id,omitempty"`
	Class     int        `json:"class"`
	Subclass  int        `json:"subclass"`
	TID       int64      `json:"tid,omitempty"`
	Token     string     `json:"token,omitempty"`
	Sequence  int64      `json:"sequence,omitempty"`
	Litres    int64      `json:"litres,omitempty"`
	CreatedAt time.Time  `json:"created_at"`
	Delivered *time.Time `json:"delivered_at,omitempty"`
}

// PurchaseRow is a purchase as listed.
type PurchaseRow struct {
	ID        int64     `json:"id"`
	Reference string    `json:"reference"`
	Tendered  int64     `json:"tendered_cents"`
	Paid      int64     `json:"paid_cents"`
	Litres    int64     `json:"litres"`
	State     string    `json:"state"`
	CreatedAt time.Time `json:"created_at"`
}

// AuditRecord is one sealed audit record.
type AuditRecord struct {
	Seq     int64     `json:"seq"`
	At      time.Time `json:"at"`
	Actor   string    `json:"actor"`
	Action  string    `json:"action"`
	Object  string    `json:"object"`
	Details string    `json:"details"`
	Hash    string    `json:"hash"`
}

// ReadingRow is one verified meter reading.
type ReadingRow struct {
	Time        time.Time `json:"time"`
	Forward     int64     `json:"forward_litres"`
	Reverse     int64     `json:"reverse_litres"`
	Credit      int64     `json:"credit"`
	Loaded      int64     `json:"loaded"`
	Unit        string    `json:"unit"` // "litres" or "minor"
	Status      uint16    `json:"status"`
	FrameNumber uint32    `json:"frame_counter,omitempty"`
}

// EventRow is one event a meter reported.
type EventRow struct {
	Time   time.Time `json:"time"`
	Kind   uint8     `json:"kind"`
	Reason uint8     `json:"reason"`
	Value  int64     `json:"value"`
}
