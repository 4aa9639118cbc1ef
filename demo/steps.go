package demo

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"strconv"
	"strings"
	"time"

	"sluice/keys"
	"sluice/meter"
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
	steps := []struct {
		method, path string
		body         any
		status       int
	}{
		{"PUT", "/api/v1/supply-groups/" + demoSGC, vend.SupplyGroupSpec{Code: demoSGC, Name: "Demo North", DKGA: "04", EA: "11", BaseDate: 2014, KRN: 1, TI: 1}, 200},
		{"PUT", "/api/v1/tariffs/DOM-2026", json.RawMessage(demoTariff), 200},
		{"POST", "/api/v1/vendors", vend.NewVendor{Code: "OFFICE1", Name: "Main office", DailyLimitCents: 5_000_000}, 201},
		{"POST", "/api/v1/customers", vend.NewCustomer{Account: "ACC-001", Name: "Thandi Nkosi", Area: "Zone 4"}, 201},
		{"POST", "/api/v1/meters", vend.NewMeter{Number: demoPAN, Kind: "sts", Customer: "ACC-001", Tariff: "DOM-2026", SupplyGroup: demoSGC}, 201},
	}
	for _, st := range steps {
		if err := a.call(ctx, st.method, st.path, st.body, nil, st.status, nil); err != nil {
			return err
		}
		s.say("%s %s -> %d", st.method, st.path, st.status)
	}
	var err error
	if s.supervisor, err = s.staff(ctx, "sipho", "supervisor", ""); err != nil {
		return err
	}
	if s.cashier, err = s.staff(ctx, "cashier1", "vendor", "OFFICE1"); err != nil {
		return err
	}
	return nil
}

// staff creates an operator and logs it in, changing its one-time password.
func (s *story) staff(ctx context.Context, user, role, vendor string) (*apiClient, error) {
	var created struct {
		OneTimePassword string `json:"one_time_password"`
	}
	body := map[string]string{"username": user, "display_name": user, "role": role}
	if vendor != "" {
		body["vendor"] = vendor
	}
	if err := s.admin.call(ctx, "POST", "/api/v1/operators", body, nil, 201, &created); err != nil {
		return nil, err
	}
	c := s.client()
	if err := c.login(ctx, user, created.OneTimePassword); err != nil {
		return nil, err
	}
	if err := c.call(ctx, "POST", "/api/v1/auth/password", map[string]string{"current_password": created.OneTimePassword, "new_password": "demo password for " + user}, nil, 200, nil); err != nil {
		return nil, err
	}
	s.say("operator %s (%s) created with a one-time password, logged in and chose its own", user, role)
	return c, nil
}

func (s *story) deposit(ctx context.Context) error {
	var v struct {
		FloatCents int64 `json:"float_cents"`
	}
	if err := s.supervisor.call(ctx, "POST", "/api/v1/vendors/OFFICE1/deposits", map[string]any{"amount_cents": 500_000, "reference": "SLIP-0001"}, nil, 201, &v); err != nil {
		return err
	}
	s.say("float of OFFICE1 is now R%s; a vend can never take it below zero", rand2(v.FloatCents))
	var e apiErr
	if err := s.cashier.call(ctx, "POST", "/api/v1/vendors/OFFICE1/deposits", map[string]any{"amount_cents": 1, "reference": "X"}, nil, 403, &e); err != nil {
		return err
	}
	s.say("a cashier trying the same -> 403 %s", e.Error.Code)
	return nil
}

type receipt struct {
	PurchaseID int64 `json:"purchase_id"`
	Reference  string
	Paid       int64 `json:"paid_cents"`
	Change     int64 `json:"change_cents"`
	Litres     int64 `json:"litres"`
	FreeLitres int64 `json:"free_litres"`
	Tokens     []struct {
		Kind   string `json:"kind"`
		Label  string `json:"label"`
		Token  string `json:"token"`
		Litres int64  `json:"litres"`
	} `json:"tokens"`
}

const idemKey = "demo-till-1-000001"

func (s *story) sell(ctx context.Context) error {
	req := vend.PurchaseRequest{Meter: demoPAN, AmountCents: 30000}
	var prev struct {
		Breakdown struct {
			Debt  int64 `json:"debt_recovered"`
			Fixed []struct {
				Name   string
				Amount int64
			} `json:"fixed_charges"`
			Blocks []struct {
				Litres int64 `json:"litres"`
				Amount int64 `json:"amount"`
			} `json:"blocks"`
			VAT        int64 `json:"vat"`
			FreeLitres int64 `json:"free_litres"`
			Change     int64 `json:"change"`
		} `json:"breakdown"`
	}
	if err := s.cashier.call(ctx, "POST", "/api/v1/purchases/preview", req, nil, 200, &prev); err != nil {
		return err
	}
	b := prev.Breakdown
	for _, f := range b.Fixed {
		s.say("preview: fixed charge %-20s R%s", f.Name, rand2(f.Amount))
	}
	for _, bl := range b.Blocks {
		s.say("preview: block %6d litres        R%s", bl.Litres, rand2(bl.Amount))
	}
	s.say("preview: VAT included R%s, free basic water %d litres, change R%s", rand2(b.VAT), b.FreeLitres, rand2(b.Change))
	if err := s.cashier.call(ctx, "POST", "/api/v1/purchases", req, map[string]string{"Idempotency-Key": idemKey}, 201, &s.receipt); err != nil {
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
	var again receipt
	req := vend.PurchaseRequest{Meter: demoPAN, AmountCents: 30000}
	if err := s.cashier.call(ctx, "POST", "/api/v1/purchases", req, map[string]string{"Idempotency-Key": idemKey}, 200, &again); err != nil {
		return err
	}
	if fmt.Sprint(again.Tokens) != fmt.Sprint(s.receipt.Tokens) || again.PurchaseID != s.receipt.PurchaseID {
		return errors.New("the retry returned different tokens")
	}
	s.say("same key, same request -> 200 with the same purchase %s and the same tokens", again.Reference)
	var e apiErr
	req.AmountCents = 50000
	if err := s.cashier.call(ctx, "POST", "/api/v1/purchases", req, map[string]string{"Idempotency-Key": idemKey}, 422, &e); err != nil {
		return err
	}
	s.say("same key, another amount -> 422 %s", e.Error.Code)
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

// apiClient is one browser-like session against the head-end.
type apiClient struct {
	base string
	c    *http.Client
}

func (s *story) client() *apiClient {
	jar, _ := cookiejar.New(nil)
	return &apiClient{base: s.he.URL(), c: &http.Client{Jar: jar, Timeout: 20 * time.Second}}
}

type apiErr struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

func (c *apiClient) login(ctx context.Context, user, pass string) error {
	return c.call(ctx, "POST", "/api/v1/auth/login", map[string]string{"username": user, "password": pass}, nil, 200, nil)
}

// call sends a JSON request, requires the status and decodes the answer.
func (c *apiClient) call(ctx context.Context, method, path string, body any, header map[string]string, want int, out any) error {
	var rd io.Reader
	if body != nil {
		js, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(js)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("X-Sluice-Console", "demo")
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := c.c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		return fmt.Errorf("%s %s = %d, want %d: %s", method, path, resp.StatusCode, want, bytes.TrimSpace(b))
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("%s %s: %w", method, path, err)
		}
	}
	return nil
}
