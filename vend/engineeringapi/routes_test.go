package engineeringapi_test

import (
	"context"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"sluice/auth"
	"sluice/kms/filekms/filekmstest"
	"sluice/server"
	"sluice/server/servertest"
	"sluice/store"
	"sluice/store/sqlstore"
	"sluice/store/storetest"
	"sluice/sts"
	"sluice/vend"
	"sluice/vend/engineeringapi"
)

const (
	pan  = "600727000000000009"
	pass = "a long enough test password"
)

// vendingKey is the value filekmstest.WithVendingKey imports (SGC 123457,
// KRN 1). The meter derives its decoder key from it with sts.DKGA04, apart
// from the key store's PRF the head-end vends with, so that a token it
// accepts shows the two derivations agree.
var vendingKey = []byte("\xab\xab\xab\xab\xab\xab\xab\xab\x94\x94\x94\x94\x94\x94\x94\x94\x01\x23\x45\x67")

func TestEngineeringOverHTTP(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *sqlstore.DB) {
		ctx := context.Background()
		km := filekmstest.WithVendingKey(t)
		cheap := auth.Params{Memory: 64, Time: 1, Threads: 1}
		hash, err := auth.Hash(pass, cheap)
		if err != nil {
			t.Fatal(err)
		}
		err = db.Tx(ctx, func(tx store.Tx) error {
			for _, role := range auth.Roles {
				if _, err := tx.Operators().Create(ctx, store.Operator{Username: role + "1", DisplayName: role, Role: role, PasswordHash: hash}); err != nil {
					return err
				}
			}
			if _, err := tx.Operators().Create(ctx, store.Operator{Username: "engineer2", DisplayName: "e2", Role: auth.Engineer, PasswordHash: hash}); err != nil {
				return err
			}
			if err := tx.Tariffs().Put(ctx, store.Tariff{Code: "T", Definition: []byte(`{}`)}); err != nil {
				return err
			}
			if err := tx.SupplyGroups().Create(ctx, store.SupplyGroup{Code: "123457", Name: "North", DKGA: "04", EA: "11", BaseDate: 2014, KRN: 1, TI: 1}); err != nil {
				return err
			}
			_, err := tx.Meters().Create(ctx, store.Meter{Number: pan, Kind: store.MeterSTS, TariffCode: "T", SGC: "123457", KRN: 1, TI: 1, KT: 2, BaseDate: 2014})
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		svc := vend.New(vend.Config{Store: db, Keys: vend.KMSKeys{KM: km}})
		srv := server.New(server.Config{Store: db, Auth: auth.NewService(db, cheap, nil), Vend: svc, Extra: engineeringapi.Routes(svc)})
		ts := httptest.NewServer(srv.Handler())
		t.Cleanup(ts.Close)
		login := func(user string) *servertest.Client { return servertest.Login(t, ts.URL, user, pass) }
		eng, eng2, sup, adm, aud, cashier := login("engineer1"), login("engineer2"), login("supervisor1"), login("admin1"), login("auditor1"), login("vendor1")

		var req vend.EngineeringView
		eng.Must(201, "POST", "/engineering-requests", vend.EngineeringRequest{Meter: pan, Action: vend.ActClearTamper, Reason: "cover replaced"}, &req)
		for _, c := range []*servertest.Client{sup, adm, cashier, aud} {
			if code, _ := c.Do("POST", "/engineering-requests", vend.EngineeringRequest{Meter: pan, Action: vend.ActClearTamper, Reason: "x"}); code != 403 {
				t.Fatalf("request by a non-engineer: %d", code)
			}
		}
		if code, b := eng.Do("POST", "/engineering-requests", vend.EngineeringRequest{Meter: pan, Action: "open_valve", Reason: "x"}); code != 422 || !strings.Contains(string(b), `"field":"action"`) {
			t.Fatalf("bad action: %d %s", code, b)
		}
		path := "/engineering-requests/" + itoa(req.ID)
		// Engineers (including the requester), cashiers and auditors
		// cannot decide.
		for _, c := range []*servertest.Client{eng, eng2, cashier, aud} {
			if code, _ := c.Do("POST", path+"/approve", nil); code != 403 {
				t.Fatalf("approval by a non-decider: %d", code)
			}
		}
		var list []vend.EngineeringView
		eng2.Must(200, "GET", "/engineering-requests", nil, &list)
		if len(list) != 0 {
			t.Fatalf("engineer 2 sees %d requests of others", len(list))
		}
		aud.Must(200, "GET", "/engineering-requests?state=pending", nil, &list)
		if len(list) != 1 {
			t.Fatalf("auditor sees %d pending", len(list))
		}
		var ok vend.EngineeringView
		sup.Must(200, "POST", path+"/approve", nil, &ok)
		if ok.State != "issued" || len(ok.Tokens) != 1 {
			t.Fatalf("approved %+v", ok)
		}
		if code, _ := adm.Do("POST", path+"/reject", engineeringapi.RejectBody{Reason: "late"}); code != 409 {
			t.Fatalf("reject after approval: %d", code)
		}
		var mine vend.EngineeringView
		eng.Must(200, "GET", path, nil, &mine)
		key, err := sts.DKGA04(vendingKey, sts.KeyID{KT: 2, SGC: 123457, TI: 1, KRN: 1}, pan, sts.Base2014, sts.EA11)
		if err != nil {
			t.Fatal(err)
		}
		d, err := sts.NewDecoder(sts.DecoderConfig{EA: sts.EA11, Key: key, ID: sts.KeyID{KT: 2, SGC: 123457, TI: 1, KRN: 1}, KEN: 255, Base: sts.Base2014})
		if err != nil {
			t.Fatal(err)
		}
		if r, err := d.AcceptDigits(mine.Tokens[0].Token); err != nil || r.Subclass != sts.SubClearTamper {
			t.Fatalf("meter: %+v %v", r, err)
		}

		if code, doc := aud.Do("GET", "/openapi.json", nil); code != 200 || !strings.Contains(string(doc), `"/api/v1/engineering-requests/{id}/approve"`) {
			t.Fatalf("openapi: %d %.300s", code, doc)
		}
		// Rejection by another operator issues nothing.
		var r2, rej vend.EngineeringView
		eng.Must(201, "POST", "/engineering-requests", vend.EngineeringRequest{Meter: pan, Action: vend.ActClearCredit, Reason: "move out"}, &r2)
		// The requester promoted to supervisor still cannot decide their
		// own request: the service refuses it (403), not only the role table.
		err = db.Tx(ctx, func(tx store.Tx) error {
			o, err := tx.Operators().ByUsername(ctx, "engineer1")
			if err != nil {
				return err
			}
			o.Role = auth.Supervisor
			return tx.Operators().Update(ctx, o)
		})
		if err != nil {
			t.Fatal(err)
		}
		promoted := login("engineer1")
		if code, b := promoted.Do("POST", "/engineering-requests/"+itoa(r2.ID)+"/approve", nil); code != 403 || !strings.Contains(string(b), "dual control") {
			t.Fatalf("self-approval after promotion: %d %s", code, b)
		}
		adm.Must(200, "POST", "/engineering-requests/"+itoa(r2.ID)+"/reject", engineeringapi.RejectBody{Reason: "no work order"}, &rej)
		if rej.State != "rejected" || len(rej.Tokens) != 0 {
			t.Fatalf("rejected %+v", rej)
		}
	})
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
