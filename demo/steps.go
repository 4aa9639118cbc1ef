package demo

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"sluice/auth"
	"sluice/client"
	"sluice/keys"
	"sluice/meter"
	"sluice/server"
	"sluice/store"
	"sluice/sts"
	"sluice/vend"
)

const (
	demoPAN = "600727000000000009"
	demoSGC = "123457"
	// demoVendingKey is a published test value, never a real utility's key:
	// production vending keys arrive in the utility's key file at a key
	// ceremony (sluice keys import-sts).
	demoVendingKey = "123457 1 dkga04 abababababababab949494949494949401234567\n"
)

func (s *story) importKeys(ctx context.Context) error {
	vks, err := keys.ParseVendingKeys([]byte(demoVendingKey))
	if err != nil {
		return err
	}
	infos, err := keys.ImportVendingKeys(ctx, s.he.KMS(), vks)
	if err != nil {
		return err
	}
	for _, i := range infos {
		s.say("imported %s (%s, version %d); the head-end never holds it in the clear again", i.Name, i.Kind, i.Version)
	}
	all, err := s.he.KMS().Keys(ctx)
	if err != nil {
		return err
	}
	var names []string
	for _, k := range all {
		names = append(names, k.Name)
	}
	s.say("key store holds: %s", strings.Join(names, ", "))
	return nil
}

func (s *story) registry(ctx context.Context) error {
	a := s.admin
	if _, err := a.PutSupplyGroup(ctx, vend.SupplyGroupSpec{Code: demoSGC, Name: "Demo North", DKGA: "04", EA: "11", BaseDate: 2014, KRN: 1, TI: 1}); err != nil {
		return err
	}
	s.say("PUT /api/v1/supply-groups/%s: supply group Demo North, DKGA 04, EA 11, KRN 1", demoSGC)
	if err := a.PutTariff(ctx, "DOM-2026", demoTariff); err != nil {
		return err
	}
	s.say("PUT /api/v1/tariffs/DOM-2026: rising blocks, free basic water, a fixed charge, VAT")
	if _, err := a.CreateVendor(ctx, vend.NewVendor{Code: "OFFICE1", Name: "Main office", DailyLimitCents: 5_000_000}); err != nil {
		return err
	}
	s.say("POST /api/v1/vendors: vending point OFFICE1")
	if _, err := a.CreateCustomer(ctx, vend.NewCustomer{Account: "ACC-001", Name: "Thandi Nkosi", Area: "Zone 4"}); err != nil {
		return err
	}
	s.say("POST /api/v1/customers: account ACC-001")
	if _, err := a.CreateMeter(ctx, vend.NewMeter{Number: demoPAN, Kind: "sts", Customer: "ACC-001", Tariff: "DOM-2026", SupplyGroup: demoSGC}); err != nil {
		return err
	}
	s.say("POST /api/v1/meters: STS meter %s", demoPAN)
	var err error
	if s.supervisor, err = s.staff(ctx, "sipho", auth.Supervisor, ""); err != nil {
		return err
	}
	if s.cashier, err = s.staff(ctx, "cashier1", auth.Vendor, "OFFICE1"); err != nil {
		return err
	}
	return nil
}

// staff creates an operator and logs it in, changing its one-time password.
func (s *story) staff(ctx context.Context, user, role, vendor string) (*client.Client, error) {
	c, err := s.admin.Onboard(ctx, auth.NewOperator{Username: user, DisplayName: user, Role: role, Vendor: vendor}, "demo password for "+user)
	if err != nil {
		return nil, err
	}
	s.say("operator %s (%s) created with a one-time password, logged in and chose its own", user, role)
	return c, nil
}

// refused requires err to be the head-end refusing with want and returns
// the refusal.
func refused(err, want error) (*client.Error, error) {
	var e *client.Error
	if !errors.As(err, &e) || !errors.Is(err, want) {
		return nil, fmt.Errorf("want the head-end to refuse with %q, got %v", want, err)
	}
	return e, nil
}

func (s *story) deposit(ctx context.Context) error {
	v, err := s.supervisor.Deposit(ctx, "OFFICE1", server.DepositBody{AmountCents: 500_000, Reference: "SLIP-0001"})
	if err != nil {
		return err
	}
	s.say("float of OFFICE1 is now R%s; a vend can never take it below zero", rand2(v.FloatCents))
	_, err = s.cashier.Deposit(ctx, "OFFICE1", server.DepositBody{AmountCents: 1, Reference: "X"})
	e, err := refused(err, client.ErrForbidden)
	if err != nil {
		return fmt.Errorf("a cashier's deposit: %w", err)
	}
	s.say("a cashier trying the same -> %d %s", e.Status, e.Code)
	return nil
}

const idemKey = "demo-till-1-000001"

func (s *story) sell(ctx context.Context) error {
	req := vend.PurchaseRequest{Meter: demoPAN, AmountCents: 30000}
	prev, err := s.cashier.Preview(ctx, req)
	if err != nil {
		return err
	}
	b := prev.Breakdown
	for _, f := range b.Fixed {
		s.say("preview: fixed charge %-20s R%s", f.Name, rand2(int64(f.Amount)))
	}
	for _, bl := range b.Blocks {
		s.say("preview: block %6d litres        R%s", bl.Litres, rand2(int64(bl.Amount)))
	}
	s.say("preview: VAT included R%s, free basic water %d litres, change R%s", rand2(int64(b.VAT)), b.FreeLitres, rand2(int64(b.Change)))
	if _, err := s.cashier.Purchase(ctx, idemKey, req, &s.receipt); err != nil {
		return err
	}
	r := s.receipt
	s.say("sold %s: paid R%s, %d litres + %d free litres", r.Reference, rand2(r.Paid), r.Litres, r.FreeLitres)
	for _, t := range r.Tokens {
		s.say("  %-18s %s", t.Label, group(t.Token))
	}
	return nil
}

func (s *story) retry(ctx context.Context) error {
	var again vend.Receipt
	req := vend.PurchaseRequest{Meter: demoPAN, AmountCents: 30000}
	replayed, err := s.cashier.Purchase(ctx, idemKey, req, &again)
	if err != nil {
		return err
	}
	if !replayed || fmt.Sprint(again.Tokens) != fmt.Sprint(s.receipt.Tokens) || again.PurchaseID != s.receipt.PurchaseID {
		return errors.New("the retry returned different tokens")
	}
	s.say("same key, same request -> 200 with the same purchase %s and the same tokens", again.Reference)
	req.AmountCents = 50000
	_, err = s.cashier.Purchase(ctx, idemKey, req, nil)
	e, err := refused(err, client.ErrIdempotencyKeyReused)
	if err != nil {
		return fmt.Errorf("same key, another amount: %w", err)
	}
	s.say("same key, another amount -> %d %s", e.Status, e.Code)
	return nil
}

func (s *story) meter(ctx context.Context) error {
	// The factory provisions the meter with its own decoder key, derived in
	// the KMS; the meter never learns the vending key.
	sgc, _ := sts.ParseSGC(demoSGC)
	id := sts.KeyID{KT: 2, SGC: sgc, TI: 1, KRN: 1}
	pan := sts.PAN(demoPAN)
	dk, err := vend.KMSKeys{KM: s.he.KMS()}.DecoderKey(ctx, store.SupplyGroup{Code: demoSGC, DKGA: "04", EA: "11"}, 1, id, pan, sts.Base2014)
	if err != nil {
		return err
	}
	meterID, _ := strconv.ParseUint(demoPAN, 10, 64)
	trusted, err := keys.TrustedKeys(ctx, s.he.KMS())
	if err != nil {
		return err
	}
	p := meter.Provision{ID: meterID, Params: meter.DefaultParams(), Keys: meter.Keys{Trusted: trusted},
		STS: &sts.DecoderConfig{EA: sts.EA11, Key: dk, ID: id, KEN: 255, Base: sts.Base2014}}
	ee := meter.NewEEPROM(meter.DefaultEEPROMSize, 32)
	if err := meter.Format(ee, p); err != nil {
		return err
	}
	m, err := meter.Boot(ee, meter.Deps{Rand: rand.Reader})
	if err != nil {
		return err
	}
	now := time.Now()
	for _, t := range s.receipt.Tokens {
		out, err := m.EnterToken(now, t.Token)
		if err != nil {
			return fmt.Errorf("meter refused %s: %w", t.Label, err)
		}
		s.say("meter accepted %s: +%d %s", t.Label, out.Amount, out.Unit)
	}
	snap := m.Snapshot()
	s.say("meter credit now %d litres (valve %s)", snap.Credit, valve(snap.Status))
	if _, err := m.EnterToken(now.Add(time.Minute), s.receipt.Tokens[len(s.receipt.Tokens)-1].Token); err == nil {
		return errors.New("the meter accepted a token twice")
	} else {
		s.say("typing the credit token again -> refused: %v", err)
	}
	if m.Snapshot().Credit != snap.Credit {
		return errors.New("a refused token changed the credit")
	}
	return nil
}

func valve(st meter.Status) string {
	if st&meter.ValveClosed != 0 {
		return "closed"
	}
	return "open"
}

func (s *story) stop(ctx context.Context) error {
	err := s.he.Shutdown(ctx)
	s.he = nil
	if err != nil {
		return err
	}
	s.say("server drained, key store and database closed")
	return nil
}

// group prints a 20-digit token as the receipt does: 4-4-4-4-4.
func group(tok string) string {
	if len(tok) != 20 {
		return tok
	}
	return tok[0:4] + " " + tok[4:8] + " " + tok[8:12] + " " + tok[12:16] + " " + tok[16:20]
}

func rand2(cents int64) string { return fmt.Sprintf("%d.%02d", cents/100, cents%100) }
