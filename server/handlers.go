package server

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"sluice/auth"
	"sluice/store"
	"sluice/vend"
)

// --- sessions

func (s *Server) login(c *call) error {
	var req LoginRequest
	if err := c.decode(&req); err != nil {
		return err
	}
	if req.Username == "" || len(req.Username) > 64 {
		return Error(http.StatusUnprocessableEntity, "invalid_request", "username", "username is required")
	}
	if len(req.Password) > 256 {
		return Error(http.StatusUnprocessableEntity, "invalid_request", "password", "password is too long")
	}
	tok, op, err := s.cfg.Auth.Login(c.ctx(), req.Username, req.Password, remoteIP(c.r))
	if err != nil {
		outcome := "failed"
		if errors.Is(err, auth.ErrRateLimited) {
			outcome = "rate_limited"
		}
		s.logins.WithLabelValues(outcome).Inc()
		return err
	}
	s.logins.WithLabelValues("ok").Inc()
	http.SetCookie(c.w, cookie(tok, s.cfg.SecureCookies, time.Now().Add(auth.SessionTTL)))
	o, err := s.operatorView(c.ctx(), op)
	if err != nil {
		return err
	}
	return c.json(http.StatusOK, Me{Operator: o, MustChangePassword: op.MustChangePassword, Via: "session"})
}

func (s *Server) logout(c *call) error {
	if c.session != "" {
		if err := s.cfg.Auth.Logout(c.ctx(), c.p, c.session); err != nil {
			return err
		}
	}
	http.SetCookie(c.w, cookie("", s.cfg.SecureCookies, time.Unix(1, 0)))
	return c.json(http.StatusOK, OK{OK: true})
}

func (s *Server) me(c *call) error {
	o, err := s.operatorView(c.ctx(), c.p.Operator)
	if err != nil {
		return err
	}
	return c.json(http.StatusOK, Me{Operator: o, MustChangePassword: c.p.Operator.MustChangePassword, Via: c.p.Via})
}

func (s *Server) changePassword(c *call) error {
	var req PasswordRequest
	if err := c.decode(&req); err != nil {
		return err
	}
	if err := s.cfg.Auth.ChangePassword(c.ctx(), c.p, req.CurrentPassword, req.NewPassword); err != nil {
		return err
	}
	return c.json(http.StatusOK, OK{OK: true})
}

// --- operators

// operatorView shows an operator with its vending point's code.
func (s *Server) operatorView(ctx context.Context, o store.Operator) (Operator, error) {
	v := Operator{Username: o.Username, DisplayName: o.DisplayName, Role: o.Role, Disabled: o.Disabled,
		MustChangePassword: o.MustChangePassword, CreatedAt: o.CreatedAt}
	if o.VendorID == 0 {
		return v, nil
	}
	err := s.cfg.Store.Read(ctx, func(tx store.Tx) error {
		vd, err := tx.Vendors().ByID(ctx, o.VendorID)
		v.Vendor = vd.Code
		return err
	})
	return v, err
}

func (s *Server) listOperators(c *call) error {
	var out []Operator
	err := s.cfg.Store.Read(c.ctx(), func(tx store.Tx) error {
		ops, err := tx.Operators().List(c.ctx())
		if err != nil {
			return err
		}
		vendors := map[int64]string{}
		vs, err := tx.Vendors().List(c.ctx())
		if err != nil {
			return err
		}
		for _, v := range vs {
			vendors[v.ID] = v.Code
		}
		out = make([]Operator, 0, len(ops))
		for _, o := range ops {
			out = append(out, Operator{Username: o.Username, DisplayName: o.DisplayName, Role: o.Role, Vendor: vendors[o.VendorID],
				Disabled: o.Disabled, MustChangePassword: o.MustChangePassword, CreatedAt: o.CreatedAt})
		}
		return nil
	})
	if err != nil {
		return err
	}
	return c.json(http.StatusOK, out)
}

func (s *Server) createOperator(c *call) error {
	var req auth.NewOperator
	if err := c.decode(&req); err != nil {
		return err
	}
	op, pw, err := s.cfg.Auth.CreateOperator(c.ctx(), c.p, req)
	if err != nil {
		return err
	}
	v, err := s.operatorView(c.ctx(), op)
	if err != nil {
		return err
	}
	return c.json(http.StatusCreated, NewOperatorResponse{Operator: v, OneTimePassword: pw})
}

func (s *Server) updateOperator(c *call) error {
	var req auth.OperatorChange
	if err := c.decode(&req); err != nil {
		return err
	}
	op, err := s.cfg.Auth.UpdateOperator(c.ctx(), c.p, c.r.PathValue("username"), req)
	if err != nil {
		return err
	}
	v, err := s.operatorView(c.ctx(), op)
	if err != nil {
		return err
	}
	return c.json(http.StatusOK, v)
}

func (s *Server) listAPIKeys(c *call) error {
	var out []APIKey
	err := s.cfg.Store.Read(c.ctx(), func(tx store.Tx) error {
		keys, err := tx.Credentials().APIKeys(c.ctx())
		if err != nil {
			return err
		}
		out = make([]APIKey, 0, len(keys))
		for _, k := range keys {
			op, err := tx.Operators().ByID(c.ctx(), k.OperatorID)
			if err != nil {
				return err
			}
			out = append(out, apiKeyView(k, op.Username))
		}
		return nil
	})
	if err != nil {
		return err
	}
	return c.json(http.StatusOK, out)
}

func apiKeyView(k store.APIKey, operator string) APIKey {
	v := APIKey{ID: k.ID, Prefix: k.Prefix, Operator: operator, Label: k.Label, CreatedAt: k.CreatedAt}
	if !k.RevokedAt.IsZero() {
		t := k.RevokedAt
		v.RevokedAt = &t
	}
	return v
}

func (s *Server) createAPIKey(c *call) error {
	var req APIKeyRequest
	if err := c.decode(&req); err != nil {
		return err
	}
	k, key, err := s.cfg.Auth.CreateAPIKey(c.ctx(), c.p, req.Operator, req.Label)
	if err != nil {
		return err
	}
	return c.json(http.StatusCreated, NewAPIKeyResponse{APIKey: apiKeyView(k, req.Operator), Key: key})
}

func (s *Server) revokeAPIKey(c *call) error {
	id, err := c.pathID("id")
	if err != nil {
		return err
	}
	if err := s.cfg.Auth.RevokeAPIKey(c.ctx(), c.p, id); err != nil {
		return err
	}
	return c.json(http.StatusOK, OK{OK: true})
}

// --- vending points

func (s *Server) vendorView(ctx context.Context, tx store.Tx, v store.Vendor) (Vendor, error) {
	day := s.cfg.Vend.Today()
	sold, err := tx.Vendors().DaySales(ctx, v.ID, day)
	return Vendor{Code: v.Code, Name: v.Name, FloatCents: v.FloatCents, DailyLimitCents: v.DailyLimitCents, SoldTodayCents: sold, Disabled: v.Disabled}, err
}

func (s *Server) listVendors(c *call) error {
	return readJSON(c, func(tx store.Tx) ([]Vendor, error) {
		vs, err := tx.Vendors().List(c.ctx())
		if err != nil {
			return nil, err
		}
		out := make([]Vendor, 0, len(vs))
		for _, v := range vs {
			vv, err := s.vendorView(c.ctx(), tx, v)
			if err != nil {
				return nil, err
			}
			out = append(out, vv)
		}
		return out, nil
	})
}

func (s *Server) vendorResponse(c *call, status int, v store.Vendor) error {
	return readJSONStatus(c, status, func(tx store.Tx) (Vendor, error) { return s.vendorView(c.ctx(), tx, v) })
}

func (s *Server) createVendor(c *call) error {
	var req vend.NewVendor
	if err := c.decode(&req); err != nil {
		return err
	}
	v, err := s.cfg.Vend.CreateVendor(c.ctx(), c.actor(), req)
	if err != nil {
		return err
	}
	return s.vendorResponse(c, http.StatusCreated, v)
}

func (s *Server) updateVendor(c *call) error {
	var req vend.VendorChange
	if err := c.decode(&req); err != nil {
		return err
	}
	v, err := s.cfg.Vend.UpdateVendor(c.ctx(), c.actor(), c.r.PathValue("code"), req)
	if err != nil {
		return err
	}
	return s.vendorResponse(c, http.StatusOK, v)
}

func (s *Server) deposit(c *call) error {
	var req DepositBody
	if err := c.decode(&req); err != nil {
		return err
	}
	v, err := s.cfg.Vend.Deposit(c.ctx(), c.actor(), vend.DepositRequest{Vendor: c.r.PathValue("code"), AmountCents: req.AmountCents, Bank: req.Bank, Reference: req.Reference})
	if err != nil {
		return err
	}
	return s.vendorResponse(c, http.StatusCreated, v)
}

// --- registry

func supplyGroupView(g store.SupplyGroup) SupplyGroup {
	return SupplyGroup{Code: g.Code, Name: g.Name, DKGA: g.DKGA, EA: g.EA, BaseDate: g.BaseDate, KRN: g.KRN, TI: g.TI}
}

func (s *Server) listSupplyGroups(c *call) error {
	return readJSON(c, func(tx store.Tx) ([]SupplyGroup, error) {
		gs, err := tx.SupplyGroups().List(c.ctx())
		return mapSlice(gs, supplyGroupView), err
	})
}

func (s *Server) putSupplyGroup(c *call) error {
	var req vend.SupplyGroupSpec
	if err := c.decode(&req); err != nil {
		return err
	}
	if req.Code == "" {
		req.Code = c.r.PathValue("code")
	}
	if req.Code != c.r.PathValue("code") {
		return Error(http.StatusUnprocessableEntity, "invalid_request", "code", "the body's code differs from the URL's")
	}
	g, err := s.cfg.Vend.PutSupplyGroup(c.ctx(), c.actor(), req)
	if err != nil {
		return err
	}
	return c.json(http.StatusOK, supplyGroupView(g))
}

func (s *Server) listTariffs(c *call) error {
	return readJSON(c, func(tx store.Tx) ([]json.RawMessage, error) {
		ts, err := tx.Tariffs().List(c.ctx())
		return mapSlice(ts, func(t store.Tariff) json.RawMessage { return t.Definition }), err
	})
}

func (s *Server) putTariff(c *call) error {
	body, err := c.rawBody()
	if err != nil {
		return err
	}
	t, err := s.cfg.Vend.PutTariff(c.ctx(), c.actor(), c.r.PathValue("code"), body)
	if err != nil {
		return err
	}
	return c.json(http.StatusOK, t)
}

func customerView(cu store.Customer) Customer {
	return Customer{Account: cu.Account, Name: cu.Name, Address: cu.Address, Phone: cu.Phone, Area: cu.Area, DebtCents: cu.DebtCents}
}

func (s *Server) searchCustomers(c *call) error {
	q, limit, err := c.search()
	if err != nil {
		return err
	}
	return readJSON(c, func(tx store.Tx) ([]Customer, error) {
		cs, err := tx.Customers().Search(c.ctx(), q, limit)
		return mapSlice(cs, customerView), err
	})
}

func (s *Server) createCustomer(c *call) error {
	var req vend.NewCustomer
	if err := c.decode(&req); err != nil {
		return err
	}
	cu, err := s.cfg.Vend.CreateCustomer(c.ctx(), c.actor(), req)
	if err != nil {
		return err
	}
	return c.json(http.StatusCreated, customerView(cu))
}

func (s *Server) getCustomer(c *call) error {
	return readJSON(c, func(tx store.Tx) (CustomerDetail, error) {
		cu, err := tx.Customers().ByAccount(c.ctx(), c.r.PathValue("account"))
		if err != nil {
			return CustomerDetail{}, err
		}
		ms, err := tx.Meters().ByCustomer(c.ctx(), cu.ID)
		return CustomerDetail{Customer: customerView(cu),
			Meters: mapSlice(ms, func(m store.Meter) Meter { return meterView(m, cu.Account) })}, err
	})
}

func (s *Server) takeOnDebt(c *call) error {
	var req DebtBody
	if err := c.decode(&req); err != nil {
		return err
	}
	cu, err := s.cfg.Vend.TakeOnDebt(c.ctx(), c.actor(), vend.DebtRequest{Account: c.r.PathValue("account"), AmountCents: req.AmountCents, Reference: req.Reference})
	if err != nil {
		return err
	}
	return c.json(http.StatusCreated, customerView(cu))
}

func meterView(m store.Meter, account string) Meter {
	return Meter{Number: m.Number, Kind: m.Kind, Customer: account, Tariff: m.TariffCode, Area: m.Area, SupplyGroup: m.SGC,
		KRN: m.KRN, TI: m.TI, BaseDate: m.BaseDate, LastTID: m.LastTID, VoucherSeq: m.VoucherSeq, KeyVersion: m.KeyVersion, Status: m.Status}
}

// meterViews resolves the customer accounts of meters.
func meterViews(ctx context.Context, tx store.Tx, ms []store.Meter) ([]Meter, error) {
	out := make([]Meter, 0, len(ms))
	for _, m := range ms {
		var account string
		if m.CustomerID != 0 {
			cu, err := tx.Customers().ByID(ctx, m.CustomerID)
			if err != nil {
				return nil, err
			}
			account = cu.Account
		}
		out = append(out, meterView(m, account))
	}
	return out, nil
}

func (s *Server) searchMeters(c *call) error {
	q, limit, err := c.search()
	if err != nil {
		return err
	}
	return readJSON(c, func(tx store.Tx) ([]Meter, error) {
		ms, err := tx.Meters().Search(c.ctx(), q, limit)
		if err != nil {
			return nil, err
		}
		return meterViews(c.ctx(), tx, ms)
	})
}

func (s *Server) getMeter(c *call) error {
	return readJSON(c, func(tx store.Tx) (Meter, error) {
		m, err := tx.Meters().ByNumber(c.ctx(), c.r.PathValue("number"))
		if err != nil {
			return Meter{}, err
		}
		vs, err := meterViews(c.ctx(), tx, []store.Meter{m})
		if err != nil {
			return Meter{}, err
		}
		return vs[0], nil
	})
}

func (s *Server) createMeter(c *call) error {
	var req vend.NewMeter
	if err := c.decode(&req); err != nil {
		return err
	}
	m, err := s.cfg.Vend.CreateMeter(c.ctx(), c.actor(), req)
	if err != nil {
		return err
	}
	return c.json(http.StatusCreated, meterView(m, req.Customer))
}

func (s *Server) assignMeter(c *call) error {
	var req AssignBody
	if err := c.decode(&req); err != nil {
		return err
	}
	m, err := s.cfg.Vend.AssignMeter(c.ctx(), c.actor(), c.r.PathValue("number"), req.Customer)
	if err != nil {
		return err
	}
	return c.json(http.StatusOK, meterView(m, req.Customer))
}

func tokenView(t store.Token) TokenRow {
	row := TokenRow{Kind: t.Kind, Purchase: t.PurchaseID, Request: t.RequestID, Class: t.Class, Subclass: t.Subclass,
		TID: t.TID, Token: t.Digits, Sequence: t.VoucherSeq, Litres: t.Litres, CreatedAt: t.CreatedAt}
	if !t.DeliveredAt.IsZero() {
		d := t.DeliveredAt
		row.Delivered = &d
	}
	return row
}

func purchaseView(p store.Purchase) PurchaseRow {
	return PurchaseRow{ID: p.ID, Reference: vend.Reference(p.ID), Tendered: p.TenderedCents, Paid: p.PaidCents,
		Litres: p.Litres, State: p.State, CreatedAt: p.CreatedAt}
}

func (s *Server) meterTokens(c *call) error {
	limit, err := c.queryInt("limit", 50, 1, 500)
	if err != nil {
		return err
	}
	return readJSON(c, func(tx store.Tx) ([]TokenRow, error) {
		m, err := tx.Meters().ByNumber(c.ctx(), c.r.PathValue("number"))
		if err != nil {
			return nil, err
		}
		ts, err := tx.Tokens().ByMeter(c.ctx(), m.ID, limit)
		return mapSlice(ts, tokenView), err
	})
}

func (s *Server) meterPurchases(c *call) error {
	limit, err := c.queryInt("limit", 50, 1, 500)
	if err != nil {
		return err
	}
	return readJSON(c, func(tx store.Tx) ([]PurchaseRow, error) {
		m, err := tx.Meters().ByNumber(c.ctx(), c.r.PathValue("number"))
		if err != nil {
			return nil, err
		}
		ps, err := tx.Purchases().ByMeter(c.ctx(), m.ID, limit)
		return mapSlice(ps, purchaseView), err
	})
}

// --- telemetry views

// timeParam reads an optional RFC 3339 query parameter.
func (c *call) timeParam(name string, def time.Time) (time.Time, error) {
	v := c.r.URL.Query().Get(name)
	if v == "" {
		return def, nil
	}
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return time.Time{}, Error(http.StatusBadRequest, "invalid_request", name, name+" must be an RFC 3339 time such as 2026-11-25T00:00:00Z")
	}
	return t, nil
}

func (s *Server) meterReadings(c *call) error {
	now := time.Now().UTC()
	from, err := c.timeParam("from", now.AddDate(0, 0, -30))
	if err != nil {
		return err
	}
	to, err := c.timeParam("to", now.Add(24*time.Hour))
	if err != nil {
		return err
	}
	limit, err := c.queryInt("limit", 500, 1, 5000)
	if err != nil {
		return err
	}
	return readJSON(c, func(tx store.Tx) ([]ReadingRow, error) {
		m, err := tx.Meters().ByNumber(c.ctx(), c.r.PathValue("number"))
		if err != nil {
			return nil, err
		}
		rs, err := tx.Telemetry().Readings(c.ctx(), m.ID, from, to, limit)
		return mapSlice(rs, func(r store.Reading) ReadingRow {
			unit := "litres"
			if r.Unit == 2 {
				unit = "minor"
			}
			return ReadingRow{Time: r.Time, Forward: r.Forward, Reverse: r.Reverse, Credit: r.Credit, Loaded: r.Loaded,
				Unit: unit, Status: r.Status, FrameNumber: r.Counter}
		}), err
	})
}

func (s *Server) meterEvents(c *call) error {
	since, err := c.timeParam("since", time.Now().UTC().AddDate(0, 0, -30))
	if err != nil {
		return err
	}
	limit, err := c.queryInt("limit", 100, 1, 1000)
	if err != nil {
		return err
	}
	return readJSON(c, func(tx store.Tx) ([]EventRow, error) {
		m, err := tx.Meters().ByNumber(c.ctx(), c.r.PathValue("number"))
		if err != nil {
			return nil, err
		}
		es, err := tx.Telemetry().Events(c.ctx(), m.ID, since, limit)
		return mapSlice(es, func(e store.TelemetryEvent) EventRow {
			return EventRow{Time: e.Time, Kind: e.Kind, Reason: e.Reason, Value: e.Value}
		}), err
	})
}

func (s *Server) myVendor(c *call) error {
	return readJSON(c, func(tx store.Tx) (Vendor, error) {
		v, err := tx.Vendors().ByID(c.ctx(), c.p.Operator.VendorID)
		if err != nil {
			return Vendor{}, err
		}
		return s.vendorView(c.ctx(), tx, v)
	})
}

// --- vending

func (s *Server) preview(c *call) error {
	var req vend.PurchaseRequest
	if err := c.decode(&req); err != nil {
		return err
	}
	p, err := s.cfg.Vend.Preview(c.ctx(), req)
	if err != nil {
		return err
	}
	return c.json(http.StatusOK, p)
}

func (s *Server) purchase(c *call) error {
	var req vend.PurchaseRequest
	if err := c.decode(&req); err != nil {
		return err
	}
	res, err := s.cfg.Vend.Purchase(c.ctx(), c.actor(), c.r.Header.Get("Idempotency-Key"), req)
	if err != nil {
		s.vends.WithLabelValues("refused").Inc()
		return err
	}
	status := http.StatusCreated
	if res.Replayed {
		s.vends.WithLabelValues("replayed").Inc()
		status = http.StatusOK
		c.w.Header().Set("Idempotent-Replayed", "true")
	} else {
		s.vends.WithLabelValues("sold").Inc()
	}
	c.w.Header().Set("Content-Type", "application/json")
	c.w.Header().Set("Cache-Control", "no-store")
	c.w.WriteHeader(status)
	c.w.Write(res.JSON)
	return nil
}

func (s *Server) reprint(c *call) error {
	id, err := c.pathID("id")
	if err != nil {
		return err
	}
	_, js, err := s.cfg.Vend.Receipt(c.ctx(), c.actor(), id, c.p.Operator.Role == auth.Vendor)
	if err != nil {
		return err
	}
	c.w.Header().Set("Content-Type", "application/json")
	c.w.Header().Set("Cache-Control", "no-store")
	c.w.Write(js)
	return nil
}

func (s *Server) reverse(c *call) error {
	id, err := c.pathID("id")
	if err != nil {
		return err
	}
	var req vend.ReversalRequest
	if err := c.decode(&req); err != nil {
		return err
	}
	r, err := s.cfg.Vend.Reverse(c.ctx(), c.actor(), id, req)
	if err != nil {
		return err
	}
	return c.json(http.StatusOK, r)
}

// --- audit

func (s *Server) auditRecords(c *call) error {
	from, err := c.queryInt("from", 1, 1, 1<<62)
	if err != nil {
		return err
	}
	limit, err := c.queryInt("limit", 100, 1, 1000)
	if err != nil {
		return err
	}
	out := []AuditRecord{}
	errStop := errors.New("enough")
	err = s.cfg.Store.Read(c.ctx(), func(tx store.Tx) error {
		err := tx.Audit().Each(c.ctx(), int64(from), func(r store.AuditRecord) error {
			out = append(out, AuditRecord{Seq: r.Seq, At: r.At, Actor: r.Actor, Action: r.Action, Object: r.Object,
				Details: string(r.Details), Hash: hex.EncodeToString(r.Hash)})
			if len(out) == limit {
				return errStop
			}
			return nil
		})
		if errors.Is(err, errStop) {
			return nil
		}
		return err
	})
	if err != nil {
		return err
	}
	return c.json(http.StatusOK, out)
}

// readJSON answers with what fn reads in one read-only transaction.
func readJSON[T any](c *call, fn func(tx store.Tx) (T, error)) error {
	return readJSONStatus(c, http.StatusOK, fn)
}

func readJSONStatus[T any](c *call, status int, fn func(tx store.Tx) (T, error)) error {
	var out T
	err := c.s.cfg.Store.Read(c.ctx(), func(tx store.Tx) error {
		var err error
		out, err = fn(tx)
		return err
	})
	if err != nil {
		return err
	}
	return c.json(status, out)
}

// mapSlice converts every element; never nil, so lists encode as [].
func mapSlice[T, U any](in []T, f func(T) U) []U {
	out := make([]U, 0, len(in))
	for _, v := range in {
		out = append(out, f(v))
	}
	return out
}
