package vend

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"testing"

	"sluice/keys"
	"sluice/store"
	"sluice/store/sqlstore"
	"sluice/store/storetest"
	"sluice/sts"
	"sluice/voucher"
)

// staff are the operators of a dual-control test.
type staff struct {
	engineer, engineer2, supervisor, admin, auditor Actor
}

func newStaff(t *testing.T, db *sqlstore.DB) staff {
	t.Helper()
	ctx := context.Background()
	var s staff
	err := db.Tx(ctx, func(tx store.Tx) error {
		for _, x := range []struct {
			a    *Actor
			name string
			role string
		}{{&s.engineer, "eng1", roleEngineer}, {&s.engineer2, "eng2", roleEngineer}, {&s.supervisor, "sup1", roleSupervisor},
			{&s.admin, "admin1", roleAdmin}, {&s.auditor, "aud1", "auditor"}} {
			o, err := tx.Operators().Create(ctx, store.Operator{Username: x.name, DisplayName: x.name, Role: x.role, PasswordHash: "x"})
			if err != nil {
				return err
			}
			*x.a = Actor{OperatorID: o.ID, Username: o.Username, Role: o.Role}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func requestTokens(t *testing.T, db *sqlstore.DB, id int64) []store.Token {
	t.Helper()
	var toks []store.Token
	err := db.Read(context.Background(), func(tx store.Tx) (err error) {
		toks, err = tx.Campaigns().RequestTokens(context.Background(), id)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return toks
}

func TestDualControlSameOperatorCannotDecide(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *sqlstore.DB) {
		ctx := context.Background()
		e := newEnv(t, db, 0)
		s := newStaff(t, db)
		req, err := e.svc.RequestEngineering(ctx, s.engineer, EngineeringRequest{Meter: pan, Action: ActClearTamper, Reason: "cover replaced after inspection"})
		if err != nil {
			t.Fatal(err)
		}
		if req.State != store.RequestPending || req.RequestedBy != "eng1" || len(req.Tokens) != 0 {
			t.Fatalf("request %+v", req)
		}
		// The requester, even promoted to supervisor meanwhile, cannot
		// approve or reject their own request.
		self := s.engineer
		self.Role = roleSupervisor
		if _, err := e.svc.ApproveEngineering(ctx, self, req.ID); !errors.Is(err, ErrForbidden) {
			t.Fatalf("self-approval: %v, want ErrForbidden", err)
		}
		if _, err := e.svc.RejectEngineering(ctx, self, req.ID, "no"); !errors.Is(err, ErrForbidden) {
			t.Fatalf("self-rejection: %v, want ErrForbidden", err)
		}
		// Another engineer, a cashier or an auditor cannot decide either.
		for _, a := range []Actor{s.engineer2, e.cashier, s.auditor} {
			if _, err := e.svc.ApproveEngineering(ctx, a, req.ID); !errors.Is(err, ErrForbidden) {
				t.Fatalf("approval by %s (%s): %v, want ErrForbidden", a.Username, a.Role, err)
			}
		}
		// The database refuses it too, whatever code asks.
		err = db.Tx(ctx, func(tx store.Tx) error {
			return tx.EngineeringRequests().Decide(ctx, req.ID, store.RequestIssued, s.engineer.OperatorID, e.now)
		})
		if !errors.Is(err, store.ErrConstraint) {
			t.Fatalf("database self-decision: %v, want ErrConstraint", err)
		}
		// Only engineers file requests.
		if _, err := e.svc.RequestEngineering(ctx, s.supervisor, EngineeringRequest{Meter: pan, Action: ActClearTamper, Reason: "x"}); !errors.Is(err, ErrForbidden) {
			t.Fatalf("request by a supervisor: %v, want ErrForbidden", err)
		}
		got, err := e.svc.EngineeringRequestByID(ctx, s.engineer, req.ID)
		if err != nil || got.State != store.RequestPending || len(requestTokens(t, db, req.ID)) != 0 {
			t.Fatalf("after refused decisions: %+v %v", got, err)
		}
	})
}

func TestDualControlRejectIssuesNothing(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *sqlstore.DB) {
		ctx := context.Background()
		e := newEnv(t, db, 0)
		s := newStaff(t, db)
		before := meterRow(t, db, pan)
		req, err := e.svc.RequestEngineering(ctx, s.engineer, EngineeringRequest{Meter: pan, Action: ActClearCredit, Reason: "customer moved out"})
		if err != nil {
			t.Fatal(err)
		}
		rej, err := e.svc.RejectEngineering(ctx, s.supervisor, req.ID, "no work order")
		if err != nil {
			t.Fatal(err)
		}
		if rej.State != store.RequestRejected || rej.DecidedBy != "sup1" || len(rej.Tokens) != 0 {
			t.Fatalf("rejected %+v", rej)
		}
		if _, err := e.svc.ApproveEngineering(ctx, s.admin, req.ID); !errors.Is(err, ErrRequestClosed) || !errors.Is(err, store.ErrConflict) {
			t.Fatalf("approve after reject: %v, want ErrRequestClosed", err)
		}
		if n := len(requestTokens(t, db, req.ID)); n != 0 {
			t.Fatalf("rejected request has %d tokens", n)
		}
		if after := meterRow(t, db, pan); after.LastTID != before.LastTID || after.VoucherSeq != before.VoucherSeq {
			t.Fatalf("meter counters moved: %+v -> %+v", before, after)
		}
		wantAudit(t, db, "engineering.request", "engineering.reject")
	})
}

func TestDualControlSTSTokensAcceptedByMeter(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *sqlstore.DB) {
		ctx := context.Background()
		e := newEnv(t, db, 0)
		s := newStaff(t, db)
		d := meterDecoder(t, sts.Base2014)
		for _, c := range []struct {
			action string
			value  uint32
			sub    uint8
		}{{ActClearTamper, 0, sts.SubClearTamper}, {ActWaterMeterFactor, 1000, sts.SubSetWaterMeterFactor}, {ActClearCredit, 0, sts.SubClearCredit}} {
			req, err := e.svc.RequestEngineering(ctx, s.engineer, EngineeringRequest{Meter: pan, Action: c.action, EngineeringParams: EngineeringParams{Value: c.value}, Reason: "work order 77"})
			if err != nil {
				t.Fatal(err)
			}
			ok, err := e.svc.ApproveEngineering(ctx, s.supervisor, req.ID)
			if err != nil {
				t.Fatal(err)
			}
			if ok.State != store.RequestIssued || len(ok.Tokens) != 1 || ok.DecidedBy != "sup1" {
				t.Fatalf("approved %+v", ok)
			}
			r, err := d.AcceptDigits(ok.Tokens[0].Token)
			if err != nil {
				t.Fatalf("meter refused %s token: %v", c.action, err)
			}
			if r.Kind != sts.KindManagement || r.Subclass != c.sub || uint32(r.Field) != c.value {
				t.Fatalf("%s accepted as %+v", c.action, r)
			}
			// The engineer sees the token on their own request.
			mine, err := e.svc.EngineeringRequestByID(ctx, s.engineer, req.ID)
			if err != nil || len(mine.Tokens) != 1 || mine.Tokens[0].Token != ok.Tokens[0].Token {
				t.Fatalf("engineer's view %+v %v", mine, err)
			}
			if _, err := e.svc.EngineeringRequestByID(ctx, s.engineer2, req.ID); !errors.Is(err, ErrNotFound) {
				t.Fatalf("another engineer reads the request: %v", err)
			}
			// Approving twice issues nothing more.
			if _, err := e.svc.ApproveEngineering(ctx, s.admin, req.ID); !errors.Is(err, ErrRequestClosed) {
				t.Fatalf("second approval: %v", err)
			}
			if n := len(requestTokens(t, db, req.ID)); n != 1 {
				t.Fatalf("%d tokens after a second approval", n)
			}
		}
		mine, err := e.svc.EngineeringRequests(ctx, s.engineer2, "", 10)
		if err != nil || len(mine) != 0 {
			t.Fatalf("engineer 2 lists %d requests (%v)", len(mine), err)
		}
		all, err := e.svc.EngineeringRequests(ctx, s.auditor, store.RequestIssued, 10)
		if err != nil || len(all) != 3 {
			t.Fatalf("auditor lists %d issued requests (%v)", len(all), err)
		}
		wantAudit(t, db, "engineering.request", "engineering.approve", "engineering.issue")
	})
}

func TestDualControlSTSKeyChangeWithoutPurchase(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *sqlstore.DB) {
		ctx := context.Background()
		e := newEnv(t, db, 1_000_000)
		s := newStaff(t, db)
		d := meterDecoder(t, sts.Base2014)
		req, err := e.svc.RequestEngineering(ctx, s.engineer, EngineeringRequest{Meter: pan, Action: ActKeyChange, Reason: "move to KRN 2"})
		if err != nil {
			t.Fatal(err)
		}
		// Nothing is due while the group is on KRN 1: the approval fails
		// and leaves the request pending.
		if _, err := e.svc.ApproveEngineering(ctx, s.supervisor, req.ID); !errors.Is(err, ErrInvalid) {
			t.Fatalf("approval with nothing due: %v", err)
		}
		moveGroup(t, db, 2)
		ok, err := e.svc.ApproveEngineering(ctx, s.supervisor, req.ID)
		if err != nil {
			t.Fatal(err)
		}
		if len(ok.Tokens) != 4 { // EA11: a 128-bit key in four sections
			t.Fatalf("key change tokens %+v", ok.Tokens)
		}
		for _, tok := range ok.Tokens {
			if _, err := d.AcceptDigits(tok.Token); err != nil {
				t.Fatalf("meter refused %s: %v", tok.Label, err)
			}
		}
		if d.KeyID().KRN != 2 {
			t.Fatalf("meter on KRN %d", d.KeyID().KRN)
		}
		// The next purchase needs no key change and its credit opens
		// under the new key.
		res, err := e.svc.Purchase(ctx, e.cashier, "after-kc", PurchaseRequest{Meter: pan, AmountCents: 30000})
		if err != nil {
			t.Fatal(err)
		}
		for _, tok := range res.Receipt.Tokens {
			if tok.Kind == store.TokenKeyChange {
				t.Fatalf("purchase issued a second key change: %+v", res.Receipt.Tokens)
			}
			if _, err := d.AcceptDigits(tok.Token); err != nil {
				t.Fatalf("meter refused %s: %v", tok.Label, err)
			}
		}
	})
}

func TestDualControlEngineeringVouchers(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *sqlstore.DB) {
		ctx := context.Background()
		e := newEnv(t, db, 0)
		s := newStaff(t, db)
		ring, err := keys.TrustedKeys(ctx, e.km)
		if err != nil {
			t.Fatal(err)
		}
		var mgmt ed25519.PublicKey
		for _, k := range ring {
			if k.Role == voucher.RoleManagement {
				mgmt = k.Public
			}
		}
		newKey, _, _ := ed25519.GenerateKey(nil)
		for _, c := range []struct {
			req  EngineeringRequest
			kind voucher.Kind
		}{
			{EngineeringRequest{Meter: cardMeter, Action: ActClearTamper, Reason: "magnet tamper inspected"}, voucher.KindClearTamper},
			{EngineeringRequest{Meter: amiMeter, Action: ActSetParameter, EngineeringParams: EngineeringParams{Param: 3, Value: 250, ValidHours: 2}, Reason: "pulse weight"}, voucher.KindSetParameter},
			{EngineeringRequest{Meter: amiMeter, Action: ActKeyChange, EngineeringParams: EngineeringParams{Role: "credit", PublicKey: newKey}, Reason: "trust the new credit key"}, voucher.KindKeyChange},
		} {
			req, err := e.svc.RequestEngineering(ctx, s.engineer, c.req)
			if err != nil {
				t.Fatal(err)
			}
			ok, err := e.svc.ApproveEngineering(ctx, s.admin, req.ID)
			if err != nil {
				t.Fatal(err)
			}
			if len(ok.Tokens) != 1 || ok.Tokens[0].Voucher == nil {
				t.Fatalf("approved %+v", ok)
			}
			b := ok.Tokens[0].Voucher
			id := meterID(t, c.req.Meter)
			v, err := voucher.Open(b, ring, id, e.now)
			if err != nil {
				t.Fatalf("%s voucher refused under the trusted keys: %v", c.req.Action, err)
			}
			if v.Kind != c.kind || v.MeterID != id {
				t.Fatalf("voucher %+v", v)
			}
			hours := c.req.ValidHours
			if hours == 0 {
				hours = DefaultVoucherHours
			}
			if got := v.Expires.Sub(v.Issued).Hours(); int(got) != hours {
				t.Fatalf("voucher valid %v hours, want %d", got, hours)
			}
			if _, err := voucher.Open(b, ring, id, v.Expires); !errors.Is(err, voucher.ErrExpired) {
				t.Fatalf("at expiry: %v", err)
			}
			if _, err := voucher.Open(b, ring, id+1, e.now); !errors.Is(err, voucher.ErrWrongMeter) {
				t.Fatalf("on another meter: %v", err)
			}
			// A meter that trusts the management key only for credit
			// refuses the voucher: engineering needs the management role.
			asCredit := voucher.Keyring{{Role: voucher.RoleCredit, Public: mgmt}}
			if _, err := voucher.Open(b, asCredit, id, e.now); !errors.Is(err, voucher.ErrWrongRole) {
				t.Fatalf("under the credit role: %v, want ErrWrongRole", err)
			}
		}
		// Bad requests name the field and store nothing.
		for _, c := range []struct {
			req   EngineeringRequest
			field string
		}{
			{EngineeringRequest{Meter: cardMeter, Action: ActClearCredit, Reason: "x"}, "action"},
			{EngineeringRequest{Meter: cardMeter, Action: ActKeyChange, EngineeringParams: EngineeringParams{Role: "credit", PublicKey: []byte{1, 2}}, Reason: "x"}, "public_key"},
			{EngineeringRequest{Meter: cardMeter, Action: ActSetParameter, EngineeringParams: EngineeringParams{Param: 1, ValidHours: MaxVoucherHours + 1}, Reason: "x"}, "valid_hours"},
			{EngineeringRequest{Meter: pan, Action: ActSetParameter, Reason: "x"}, "action"},
			{EngineeringRequest{Meter: pan, Action: ActWaterMeterFactor, EngineeringParams: EngineeringParams{Value: 70000}, Reason: "x"}, "value"},
			{EngineeringRequest{Meter: pan, Action: ActClearTamper}, "reason"},
			{EngineeringRequest{Meter: "999", Action: ActClearTamper, Reason: "x"}, "meter"},
		} {
			_, err := e.svc.RequestEngineering(ctx, s.engineer, c.req)
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field != c.field {
				t.Errorf("%+v: %v, want a field error on %s", c.req, err, c.field)
			}
		}
		if all, _ := e.svc.EngineeringRequests(ctx, s.supervisor, store.RequestPending, 100); len(all) != 0 {
			t.Fatalf("bad requests stored: %+v", all)
		}
	})
}

func meterID(t *testing.T, number string) uint64 {
	t.Helper()
	var id uint64
	for _, c := range number {
		id = id*10 + uint64(c-'0')
	}
	return id
}

func meterRow(t *testing.T, db *sqlstore.DB, number string) store.Meter {
	t.Helper()
	var m store.Meter
	err := db.Read(context.Background(), func(tx store.Tx) (err error) {
		m, err = tx.Meters().ByNumber(context.Background(), number)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func moveGroup(t *testing.T, db *sqlstore.DB, krn int) {
	t.Helper()
	ctx := context.Background()
	err := db.Tx(ctx, func(tx store.Tx) error {
		g, err := tx.SupplyGroups().Get(ctx, sgc)
		if err != nil {
			return err
		}
		g.KRN = krn
		return tx.SupplyGroups().Update(ctx, g)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// wantAudit checks the pending audit log holds each action.
func wantAudit(t *testing.T, db *sqlstore.DB, actions ...string) {
	t.Helper()
	ctx := context.Background()
	seen := map[string]bool{}
	err := db.Read(ctx, func(tx store.Tx) error {
		recs, err := tx.Audit().Pending(ctx, 10000)
		for _, r := range recs {
			seen[r.Action] = true
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range actions {
		if !seen[a] {
			t.Errorf("no %s audit record", a)
		}
	}
}

func TestDualControlConcurrentApprovalsIssueOnce(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *sqlstore.DB) {
		ctx := context.Background()
		e := newEnv(t, db, 0)
		s := newStaff(t, db)
		req, err := e.svc.RequestEngineering(ctx, s.engineer, EngineeringRequest{Meter: pan, Action: ActClearTamper, Reason: "work order 9"})
		if err != nil {
			t.Fatal(err)
		}
		// A supervisor and an admin press approve at the same moment.
		errs := make(chan error, 2)
		for _, a := range []Actor{s.supervisor, s.admin} {
			go func() {
				_, err := e.svc.ApproveEngineering(ctx, a, req.ID)
				errs <- err
			}()
		}
		ok := 0
		for range 2 {
			switch err := <-errs; {
			case err == nil:
				ok++
			case errors.Is(err, store.ErrConflict):
			default:
				t.Fatalf("approval: %v", err)
			}
		}
		if ok != 1 {
			t.Fatalf("%d approvals succeeded, want 1", ok)
		}
		if n := len(requestTokens(t, db, req.ID)); n != 1 {
			t.Fatalf("%d tokens issued, want 1", n)
		}
	})
}

func TestDualControlManagementTokenAfterRollover(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *sqlstore.DB) {
		ctx := context.Background()
		e := newEnv(t, db, 0)
		s := newStaff(t, db)
		rollOverKeys(t, db)
		d := meterDecoder(t, sts.Base1993)
		req, err := e.svc.RequestEngineering(ctx, s.engineer, EngineeringRequest{Meter: pan, Action: ActClearTamper, Reason: "magnet tamper inspected"})
		if err != nil {
			t.Fatal(err)
		}
		ok, err := e.svc.ApproveEngineering(ctx, s.supervisor, req.ID)
		if err != nil {
			t.Fatal(err)
		}
		var kinds []string
		for _, tok := range ok.Tokens {
			kinds = append(kinds, tok.Kind)
			r, err := d.AcceptDigits(tok.Token)
			if err != nil {
				t.Fatalf("meter refused %s: %v", tok.Label, err)
			}
			if tok.Kind == store.TokenEngineering && (r.Kind != sts.KindManagement || r.Subclass != sts.SubClearTamper) {
				t.Fatalf("clear tamper accepted as %+v", r)
			}
		}
		if fmt.Sprint(kinds) != "[key_change key_change key_change key_change engineering]" {
			t.Fatalf("tokens %v: want the key change first", kinds)
		}
		if d.KeyID().KRN != 2 || d.Base() != sts.Base2014 {
			t.Fatalf("meter on KRN %d base %d", d.KeyID().KRN, d.Base())
		}
	})
}
