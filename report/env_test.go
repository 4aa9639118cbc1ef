package report

import (
	"context"
	"testing"
	"time"

	"sluice/kms/filekms/filekmstest"
	"sluice/store"
	"sluice/store/sqlstore"
	"sluice/tariff/tarifftest"
	"sluice/vend"
)

const (
	pan       = "600727000000000009"
	cardMeter = "4700123"
	amiMeter  = "5800001"
	sgc       = "123457"
)

// env is a head-end store with two vending points, an STS, a card and an
// AMI meter, and a vending service on a settable clock.
type env struct {
	db         *sqlstore.DB
	svc        *vend.Service
	now        time.Time
	cashier1   vend.Actor
	cashier2   vend.Actor
	supervisor vend.Actor
	engineer   vend.Actor
}

func newEnv(t testing.TB, db *sqlstore.DB, start time.Time) *env {
	t.Helper()
	ctx := context.Background()
	km := filekmstest.WithVendingKey(t)
	def := tarifftest.Domestic()
	e := &env{db: db, now: start}
	err := db.Tx(ctx, func(tx store.Tx) error {
		actor := func(user, role string, vendorID int64) (vend.Actor, error) {
			o, err := tx.Operators().Create(ctx, store.Operator{Username: user, DisplayName: user, Role: role, PasswordHash: "x", VendorID: vendorID})
			return vend.Actor{OperatorID: o.ID, Username: user, Role: role, VendorID: vendorID}, err
		}
		v1, err := tx.Vendors().Create(ctx, store.Vendor{Code: "OFFICE1", Name: "Main office", DailyLimitCents: 10_000_000})
		if err != nil {
			return err
		}
		v2, err := tx.Vendors().Create(ctx, store.Vendor{Code: "SHOP2", Name: "Corner shop", DailyLimitCents: 10_000_000})
		if err != nil {
			return err
		}
		if e.cashier1, err = actor("cashier1", "vendor", v1.ID); err != nil {
			return err
		}
		if e.cashier2, err = actor("cashier2", "vendor", v2.ID); err != nil {
			return err
		}
		if e.supervisor, err = actor("super1", "supervisor", 0); err != nil {
			return err
		}
		if e.engineer, err = actor("eng1", "engineer", 0); err != nil {
			return err
		}
		if err := tx.Tariffs().Put(ctx, store.Tariff{Code: "DOM-2026", Definition: def}); err != nil {
			return err
		}
		if err := tx.SupplyGroups().Create(ctx, store.SupplyGroup{Code: sgc, Name: "North", DKGA: "04", EA: "11", BaseDate: 2014, KRN: 1, TI: 1}); err != nil {
			return err
		}
		c1, err := tx.Customers().Create(ctx, store.Customer{Account: "ACC-001", Name: "Thandi Nkosi", Area: "Soweto"})
		if err != nil {
			return err
		}
		if _, err := tx.Meters().Create(ctx, store.Meter{Number: pan, Kind: store.MeterSTS, CustomerID: c1.ID, TariffCode: "DOM-2026",
			SGC: sgc, KRN: 1, TI: 1, KT: 2, BaseDate: 2014, Area: "Soweto"}); err != nil {
			return err
		}
		c2, err := tx.Customers().Create(ctx, store.Customer{Account: "ACC-002", Name: "Pieter van Wyk", Area: "Brixton"})
		if err != nil {
			return err
		}
		if _, err = tx.Meters().Create(ctx, store.Meter{Number: cardMeter, Kind: store.MeterCard, CustomerID: c2.ID, TariffCode: "DOM-2026", Area: "Brixton"}); err != nil {
			return err
		}
		c3, err := tx.Customers().Create(ctx, store.Customer{Account: "ACC-003", Name: "Lindiwe Dube", Area: "Brixton"})
		if err != nil {
			return err
		}
		_, err = tx.Meters().Create(ctx, store.Meter{Number: amiMeter, Kind: store.MeterAMI, CustomerID: c3.ID, TariffCode: "DOM-2026", Area: "Brixton"})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	e.svc = vend.New(vend.Config{Store: db, Keys: vend.KMSKeys{KM: km}, Now: func() time.Time { return e.now }})
	return e
}
