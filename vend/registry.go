package vend

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"sluice/kms"
	"sluice/store"
	"sluice/sts"
	"sluice/tariff"
)

// The registry: customers, meters, supply groups, tariffs and vending
// points. Each change is audited in its own transaction.

// NewCustomer is a customer account to open.
type NewCustomer struct {
	Account string `json:"account"`
	Name    string `json:"name"`
	Address string `json:"address,omitempty"`
	Phone   string `json:"phone,omitempty"`
	Area    string `json:"area,omitempty"`
}

func text(field, v string, min, max int) error {
	if len(v) < min || len(v) > max {
		return fieldErr(field, "must be %d to %d characters", min, max)
	}
	for _, r := range v {
		if r < 0x20 || r == 0x7f {
			return fieldErr(field, "must not contain control characters")
		}
	}
	return nil
}

// CreateCustomer opens a customer account.
func (s *Service) CreateCustomer(ctx context.Context, a Actor, n NewCustomer) (store.Customer, error) {
	if err := checkRef("account", n.Account); err != nil {
		return store.Customer{}, err
	}
	for _, f := range []struct {
		name, v  string
		min, max int
	}{{"name", n.Name, 1, 128}, {"address", n.Address, 0, 256}, {"phone", n.Phone, 0, 32}, {"area", n.Area, 0, 64}} {
		if err := text(f.name, f.v, f.min, f.max); err != nil {
			return store.Customer{}, err
		}
	}
	var c store.Customer
	err := s.cfg.Store.Tx(ctx, func(tx store.Tx) error {
		var err error
		c, err = tx.Customers().Create(ctx, store.Customer{Account: n.Account, Name: n.Name, Address: n.Address, Phone: n.Phone, Area: n.Area})
		if errors.Is(err, store.ErrConflict) {
			return fieldErr("account", "%s exists already", n.Account)
		}
		if err != nil {
			return err
		}
		return store.AppendAudit(ctx, tx, s.now().UTC(), a.String(), "customer.create", "customer/"+c.Account, n)
	})
	return c, err
}

// NewMeter is a meter to register.
type NewMeter struct {
	Number   string `json:"number"`
	Kind     string `json:"kind"`
	Customer string `json:"customer,omitempty"` // account
	Tariff   string `json:"tariff"`
	Area     string `json:"area,omitempty"`
	// STS meters: the supply group and the key the meter left the factory
	// with; key revision and tariff index default to the group's.
	SupplyGroup string `json:"supply_group,omitempty"`
	KRN         int    `json:"krn,omitempty"`
	TI          *int   `json:"ti,omitempty"`
	BaseDate    int    `json:"base_date,omitempty"`
}

// CreateMeter registers a meter.
func (s *Service) CreateMeter(ctx context.Context, a Actor, n NewMeter) (store.Meter, error) {
	m := store.Meter{Number: n.Number, Kind: n.Kind, TariffCode: n.Tariff, Area: n.Area, KT: 2}
	switch n.Kind {
	case store.MeterSTS:
		if _, err := sts.ParsePAN(n.Number); err != nil {
			return store.Meter{}, fieldErr("number", "an STS meter number is its 18-digit PAN: %v", err)
		}
		if n.SupplyGroup == "" {
			return store.Meter{}, fieldErr("supply_group", "is required for STS meters")
		}
	case store.MeterCard, store.MeterAMI:
		if id, err := strconv.ParseUint(n.Number, 10, 64); err != nil || id == 0 || n.Number[0] == '0' {
			return store.Meter{}, fieldErr("number", "card and AMI meters are numbered by their decimal serial (no leading zero)")
		}
		if n.SupplyGroup != "" {
			return store.Meter{}, fieldErr("supply_group", "applies to STS meters only")
		}
	default:
		return store.Meter{}, fieldErr("kind", "must be sts, card or ami")
	}
	if err := text("area", n.Area, 0, 64); err != nil {
		return store.Meter{}, err
	}
	// The meter's keys will be derived under today's root: pin it, so a
	// later rotation leaves this meter's keys where they are.
	if s.cfg.Keys != nil {
		v, err := s.cfg.Keys.MeterRootVersion(ctx)
		if err != nil && !errors.Is(err, kms.ErrNotFound) {
			return store.Meter{}, err
		}
		m.RootVersion = v
	}
	err := s.cfg.Store.Tx(ctx, func(tx store.Tx) error {
		if _, err := tx.Tariffs().Get(ctx, n.Tariff); err != nil {
			return fieldErr("tariff", "no tariff %q", n.Tariff)
		}
		if n.Customer != "" {
			c, err := tx.Customers().ByAccount(ctx, n.Customer)
			if err != nil {
				return fieldErr("customer", "no customer %q", n.Customer)
			}
			m.CustomerID = c.ID
		}
		if n.Kind == store.MeterSTS {
			g, err := tx.SupplyGroups().Get(ctx, n.SupplyGroup)
			if err != nil {
				return fieldErr("supply_group", "no supply group %q", n.SupplyGroup)
			}
			m.SGC, m.KRN, m.TI, m.BaseDate = g.Code, g.KRN, g.TI, g.BaseDate
			if n.KRN != 0 {
				if n.KRN < 1 || n.KRN > 9 {
					return fieldErr("krn", "must be 1 to 9")
				}
				m.KRN = n.KRN
			}
			if n.TI != nil {
				if *n.TI < 0 || *n.TI > 99 {
					return fieldErr("ti", "must be 0 to 99")
				}
				m.TI = *n.TI
			}
			if n.BaseDate != 0 {
				if n.BaseDate != 1993 && n.BaseDate != 2014 && n.BaseDate != 2035 {
					return fieldErr("base_date", "must be 1993, 2014 or 2035")
				}
				m.BaseDate = n.BaseDate
			}
		}
		var err error
		m, err = tx.Meters().Create(ctx, m)
		if errors.Is(err, store.ErrConflict) {
			return fieldErr("number", "meter %s exists already", n.Number)
		}
		if err != nil {
			return err
		}
		return store.AppendAudit(ctx, tx, s.now().UTC(), a.String(), "meter.create", "meter/"+m.Number, n)
	})
	return m, err
}

// AssignMeter moves a meter to a customer account (a change of tenant).
func (s *Service) AssignMeter(ctx context.Context, a Actor, number, account string) (store.Meter, error) {
	var m store.Meter
	err := s.cfg.Store.Tx(ctx, func(tx store.Tx) error {
		var err error
		if m, err = tx.Meters().ByNumber(ctx, number); err != nil {
			return err
		}
		c, err := tx.Customers().ByAccount(ctx, account)
		if err != nil {
			return fieldErr("customer", "no customer %q", account)
		}
		m.CustomerID = c.ID
		if err := tx.Meters().Update(ctx, m); err != nil {
			return err
		}
		return store.AppendAudit(ctx, tx, s.now().UTC(), a.String(), "meter.assign", "meter/"+m.Number, map[string]string{"customer": account})
	})
	return m, err
}

// SupplyGroupSpec is an STS supply group's configuration.
type SupplyGroupSpec struct {
	Code     string `json:"code"`
	Name     string `json:"name"`
	DKGA     string `json:"dkga"`
	EA       string `json:"ea"`
	BaseDate int    `json:"base_date"`
	KRN      int    `json:"krn"`
	TI       int    `json:"ti"`
}

func (g SupplyGroupSpec) validate() error {
	if _, err := sts.ParseSGC(g.Code); err != nil || len(g.Code) != 6 {
		return fieldErr("code", "must be 6 digits")
	}
	if err := text("name", g.Name, 1, 128); err != nil {
		return err
	}
	if g.DKGA != "02" && g.DKGA != "04" {
		return fieldErr("dkga", "must be \"02\" or \"04\"")
	}
	if g.EA != "07" && g.EA != "11" {
		return fieldErr("ea", "must be \"07\" or \"11\"")
	}
	if g.DKGA == "02" && g.EA == "11" {
		return fieldErr("ea", "DKGA02 makes 64-bit keys, which only EA07 takes")
	}
	if g.BaseDate != 1993 && g.BaseDate != 2014 && g.BaseDate != 2035 {
		return fieldErr("base_date", "must be 1993, 2014 or 2035")
	}
	if g.KRN < 1 || g.KRN > 9 {
		return fieldErr("krn", "must be 1 to 9")
	}
	if g.TI < 0 || g.TI > 99 {
		return fieldErr("ti", "must be 0 to 99")
	}
	return nil
}

// PutSupplyGroup creates or reconfigures a supply group. Raising its key
// revision or base date makes every meter of the group take a key change
// with its next purchase (or through a key-change campaign).
func (s *Service) PutSupplyGroup(ctx context.Context, a Actor, spec SupplyGroupSpec) (store.SupplyGroup, error) {
	if err := spec.validate(); err != nil {
		return store.SupplyGroup{}, err
	}
	g := store.SupplyGroup{Code: spec.Code, Name: spec.Name, DKGA: spec.DKGA, EA: spec.EA, BaseDate: spec.BaseDate, KRN: spec.KRN, TI: spec.TI}
	err := s.cfg.Store.Tx(ctx, func(tx store.Tx) error {
		old, err := tx.SupplyGroups().Get(ctx, spec.Code)
		switch {
		case errors.Is(err, store.ErrNotFound):
			if err := tx.SupplyGroups().Create(ctx, g); err != nil {
				return err
			}
		case err != nil:
			return err
		default:
			if g.BaseDate < old.BaseDate {
				return fieldErr("base_date", "cannot move back from %d", old.BaseDate)
			}
			if g.DKGA != old.DKGA || g.EA != old.EA {
				return fieldErr("dkga", "the algorithms of a supply group are fixed; create a new group")
			}
			if err := tx.SupplyGroups().Update(ctx, g); err != nil {
				return err
			}
		}
		return store.AppendAudit(ctx, tx, s.now().UTC(), a.String(), "supply_group.put", "supply-group/"+g.Code, spec)
	})
	return g, err
}

// PutTariff stores a tariff after validating it.
func (s *Service) PutTariff(ctx context.Context, a Actor, code string, definition []byte) (*tariff.Tariff, error) {
	t, err := tariff.Parse(definition)
	if err != nil {
		var fe *tariff.FieldError
		if errors.As(err, &fe) {
			return nil, &FieldError{Field: fe.Field, Msg: fe.Msg}
		}
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if t.Code != code {
		return nil, fieldErr("code", "is %q, the URL names %q", t.Code, code)
	}
	canonical, err := json.Marshal(t)
	if err != nil {
		return nil, err
	}
	err = s.cfg.Store.Tx(ctx, func(tx store.Tx) error {
		if err := tx.Tariffs().Put(ctx, store.Tariff{Code: code, Definition: canonical}); err != nil {
			return err
		}
		return store.AppendAudit(ctx, tx, s.now().UTC(), a.String(), "tariff.put", "tariff/"+code, json.RawMessage(canonical))
	})
	return t, err
}

// NewVendor is a vending point to open.
type NewVendor struct {
	Code            string `json:"code"`
	Name            string `json:"name"`
	DailyLimitCents int64  `json:"daily_limit_cents"`
}

// CreateVendor opens a vending point with an empty float.
func (s *Service) CreateVendor(ctx context.Context, a Actor, n NewVendor) (store.Vendor, error) {
	if err := checkRef("code", n.Code); err != nil {
		return store.Vendor{}, err
	}
	if err := text("name", n.Name, 1, 128); err != nil {
		return store.Vendor{}, err
	}
	if n.DailyLimitCents <= 0 || n.DailyLimitCents > 10_000_000_000 {
		return store.Vendor{}, fieldErr("daily_limit_cents", "must be between 1 and 10000000000")
	}
	var v store.Vendor
	err := s.cfg.Store.Tx(ctx, func(tx store.Tx) error {
		var err error
		v, err = tx.Vendors().Create(ctx, store.Vendor{Code: n.Code, Name: n.Name, DailyLimitCents: n.DailyLimitCents})
		if errors.Is(err, store.ErrConflict) {
			return fieldErr("code", "%s exists already", n.Code)
		}
		if err != nil {
			return err
		}
		return store.AppendAudit(ctx, tx, s.now().UTC(), a.String(), "vendor.create", "vendor/"+v.Code, n)
	})
	return v, err
}

// VendorChange is a partial update of a vending point.
type VendorChange struct {
	Name            *string `json:"name,omitempty"`
	DailyLimitCents *int64  `json:"daily_limit_cents,omitempty"`
	Disabled        *bool   `json:"disabled,omitempty"`
}

// UpdateVendor changes a vending point's name, limit or state.
func (s *Service) UpdateVendor(ctx context.Context, a Actor, code string, c VendorChange) (store.Vendor, error) {
	var v store.Vendor
	err := s.cfg.Store.Tx(ctx, func(tx store.Tx) error {
		var err error
		if v, err = tx.Vendors().ByCode(ctx, code); err != nil {
			return err
		}
		if c.Name != nil {
			if err := text("name", *c.Name, 1, 128); err != nil {
				return err
			}
			v.Name = *c.Name
		}
		if c.DailyLimitCents != nil {
			if *c.DailyLimitCents <= 0 || *c.DailyLimitCents > 10_000_000_000 {
				return fieldErr("daily_limit_cents", "must be between 1 and 10000000000")
			}
			v.DailyLimitCents = *c.DailyLimitCents
		}
		if c.Disabled != nil {
			v.Disabled = *c.Disabled
		}
		if err := tx.Vendors().Update(ctx, v); err != nil {
			return err
		}
		return store.AppendAudit(ctx, tx, s.now().UTC(), a.String(), "vendor.update", "vendor/"+v.Code, c)
	})
	return v, err
}
