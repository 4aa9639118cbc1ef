package client

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"

	"sluice/auth"
	"sluice/server"
	"sluice/vend"
)

// Login starts a console session: the head-end sets the session cookie in
// the http.Client's jar.
func (c *Client) Login(ctx context.Context, username, password string) (server.Me, error) {
	var me server.Me
	_, err := c.Do(ctx, http.MethodPost, "/auth/login", server.LoginRequest{Username: username, Password: password}, &me)
	return me, err
}

// ChangePassword changes the session operator's password.
func (c *Client) ChangePassword(ctx context.Context, current, next string) error {
	_, err := c.Do(ctx, http.MethodPost, "/auth/password", server.PasswordRequest{CurrentPassword: current, NewPassword: next}, nil)
	return err
}

// FirstLogin logs in with a one-time password (a new operator's, or the
// bootstrap administrator's) and replaces it with password, which the
// head-end requires before anything else.
func (c *Client) FirstLogin(ctx context.Context, username, oneTime, password string) error {
	if _, err := c.Login(ctx, username, oneTime); err != nil {
		return err
	}
	return c.ChangePassword(ctx, oneTime, password)
}

// CreateOperator creates an operator (administrators); the answer carries
// its one-time password.
func (c *Client) CreateOperator(ctx context.Context, op auth.NewOperator) (server.NewOperatorResponse, error) {
	var out server.NewOperatorResponse
	_, err := c.Do(ctx, http.MethodPost, "/operators", op, &out)
	return out, err
}

// Onboard creates operator op and returns a session of its own, logged in
// with the one-time password and already moved to password. opts configure
// the new client (without WithHTTPClient it gets a cookie jar of its own).
func (c *Client) Onboard(ctx context.Context, op auth.NewOperator, password string, opts ...Option) (*Client, error) {
	created, err := c.CreateOperator(ctx, op)
	if err != nil {
		return nil, err
	}
	s := New(c.url, opts...)
	if err := s.FirstLogin(ctx, op.Username, created.OneTimePassword, password); err != nil {
		return nil, err
	}
	return s, nil
}

// CreateAPIKey issues an API key for operator (administrators). The key
// itself is in the answer only: the head-end keeps its hash.
func (c *Client) CreateAPIKey(ctx context.Context, operator, label string) (server.NewAPIKeyResponse, error) {
	var out server.NewAPIKeyResponse
	_, err := c.Do(ctx, http.MethodPost, "/api-keys", server.APIKeyRequest{Operator: operator, Label: label}, &out)
	return out, err
}

// PutSupplyGroup creates or reconfigures an STS supply group.
func (c *Client) PutSupplyGroup(ctx context.Context, g vend.SupplyGroupSpec) (server.SupplyGroup, error) {
	var out server.SupplyGroup
	_, err := c.Do(ctx, http.MethodPut, "/supply-groups/"+url.PathEscape(g.Code), g, &out)
	return out, err
}

// PutTariff creates or replaces tariff code from its JSON document.
func (c *Client) PutTariff(ctx context.Context, code string, doc json.RawMessage) error {
	_, err := c.Do(ctx, http.MethodPut, "/tariffs/"+url.PathEscape(code), doc, nil)
	return err
}

// CreateVendor opens a vending point.
func (c *Client) CreateVendor(ctx context.Context, v vend.NewVendor) (server.Vendor, error) {
	var out server.Vendor
	_, err := c.Do(ctx, http.MethodPost, "/vendors", v, &out)
	return out, err
}

// Vendors lists the vending points and their floats.
func (c *Client) Vendors(ctx context.Context) ([]server.Vendor, error) {
	var out []server.Vendor
	_, err := c.Do(ctx, http.MethodGet, "/vendors", nil, &out)
	return out, err
}

// Deposit records a float deposit for vending point vendor (supervisors).
func (c *Client) Deposit(ctx context.Context, vendor string, d server.DepositBody) (server.Vendor, error) {
	var out server.Vendor
	_, err := c.Do(ctx, http.MethodPost, "/vendors/"+url.PathEscape(vendor)+"/deposits", d, &out)
	return out, err
}

// CreateCustomer opens a customer account.
func (c *Client) CreateCustomer(ctx context.Context, cu vend.NewCustomer) (server.Customer, error) {
	var out server.Customer
	_, err := c.Do(ctx, http.MethodPost, "/customers", cu, &out)
	return out, err
}

// CreateMeter registers a meter.
func (c *Client) CreateMeter(ctx context.Context, m vend.NewMeter) (server.Meter, error) {
	var out server.Meter
	_, err := c.Do(ctx, http.MethodPost, "/meters", m, &out)
	return out, err
}

// Preview is the tariff breakdown of a purchase, without selling.
func (c *Client) Preview(ctx context.Context, req vend.PurchaseRequest) (vend.Preview, error) {
	var out vend.Preview
	_, err := c.Do(ctx, http.MethodPost, "/purchases/preview", req, &out)
	return out, err
}

// Purchase sells water under idempotency key key and decodes the receipt
// into rc; rc nil discards it unread (the bench's load generator does not
// look at it). replayed is true when the head-end answered from an earlier
// purchase under the same key (200 instead of 201): the same tokens again.
func (c *Client) Purchase(ctx context.Context, key string, req vend.PurchaseRequest, rc *vend.Receipt) (replayed bool, err error) {
	var out any
	if rc != nil {
		out = rc
	}
	status, err := c.DoIdempotent(ctx, key, http.MethodPost, "/purchases", req, out)
	return status == http.StatusOK, err
}
