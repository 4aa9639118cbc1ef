package campaignapi_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"

	"sluice/auth"
	"sluice/campaign"
	"sluice/campaign/campaignapi"
	"sluice/keys"
	"sluice/kms"
	"sluice/kms/filekms/filekmstest"
	"sluice/server"
	"sluice/server/servertest"
	"sluice/store"
	"sluice/store/sqlstore"
	"sluice/store/storetest"
	"sluice/sts"
	"sluice/vend"
)

const pass = "a long enough test password"

func pan(i int) string {
	s := fmt.Sprintf("600727%011d", i)
	d, _ := sts.LuhnDigit(s)
	return s + fmt.Sprint(d)
}

func TestCampaignsOverHTTP(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *sqlstore.DB) {
		ctx := context.Background()
		km := filekmstest.WithKeys(t)
		if _, err := keys.ImportVendingKeys(ctx, km, []keys.VendingKey{
			{SGC: 123457, KRN: 1, Kind: kms.STSDKGA04, Key: bytes.Repeat([]byte{1}, 20)},
			{SGC: 123457, KRN: 2, Kind: kms.STSDKGA04, Key: bytes.Repeat([]byte{2}, 20)},
		}); err != nil {
			t.Fatal(err)
		}
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
			if err := tx.Tariffs().Put(ctx, store.Tariff{Code: "T", Definition: []byte(`{}`)}); err != nil {
				return err
			}
			if err := tx.SupplyGroups().Create(ctx, store.SupplyGroup{Code: "123457", Name: "North", DKGA: "04", EA: "11", BaseDate: 1993, KRN: 1, TI: 1}); err != nil {
				return err
			}
			for i := 1; i <= 5; i++ {
				if _, err := tx.Meters().Create(ctx, store.Meter{Number: pan(i), Kind: store.MeterSTS, TariffCode: "T", SGC: "123457", KRN: 1, TI: 1, KT: 2, BaseDate: 1993}); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		v := vend.New(vend.Config{Store: db, Keys: vend.KMSKeys{KM: km}})
		svc := campaign.New(campaign.Config{Store: db, Vend: v, KM: km})
		srv := server.New(server.Config{Store: db, Auth: auth.NewService(db, cheap, nil), Vend: v, Extra: campaignapi.Routes(svc)})
		ts := httptest.NewServer(srv.Handler())
		t.Cleanup(ts.Close)
		login := func(user string) *servertest.Client { return servertest.Login(t, ts.URL, user, pass) }
		admin, eng, aud, cashier := login("admin1"), login("engineer1"), login("auditor1"), login("vendor1")

		body := campaignapi.StartBody{Name: "rollover", Kind: "sts", SupplyGroup: "123457", KRN: 2, BaseDate: 2014}
		for _, c := range []*servertest.Client{eng, aud, cashier} {
			if code, _ := c.Do("POST", "/campaigns", body); code != 403 {
				t.Fatalf("start by a non-admin: %d", code)
			}
		}
		if code, b := admin.Do("POST", "/campaigns", campaignapi.StartBody{Name: "bad", Kind: "sts", SupplyGroup: "123457", KRN: 7}); code != 422 || !strings.Contains(string(b), `"field":"krn"`) {
			t.Fatalf("start without the vending key: %d %s", code, b)
		}
		var started campaignapi.StartResult
		admin.Must(201, "POST", "/campaigns", body, &started)
		if started.Enrolled != 5 || started.Status.Progress.Pending != 5 {
			t.Fatalf("started %+v", started)
		}
		id := fmt.Sprint(started.Status.ID)
		if _, err := svc.Run(ctx, started.Status.ID, "cli:test", nil); !errors.Is(err, campaign.ErrNotApproved) {
			t.Fatalf("run before approval: %v", err)
		}
		if code, b := admin.Do("POST", "/campaigns/"+id+"/approve", nil); code != 403 || !strings.Contains(string(b), "dual control") {
			t.Fatalf("approval by the proposer: %d %s", code, b)
		}
		for _, c := range []*servertest.Client{eng, aud, cashier} {
			if code, _ := c.Do("POST", "/campaigns/"+id+"/approve", nil); code != 403 {
				t.Fatalf("approval by a non-decider: %d", code)
			}
		}
		var approved campaign.Status
		login("supervisor1").Must(200, "POST", "/campaigns/"+id+"/approve", nil, &approved)
		if approved.ApprovedBy != "operator:supervisor1" {
			t.Fatalf("approved %+v", approved)
		}
		if _, err := svc.Run(ctx, started.Status.ID, "cli:test", nil); err != nil {
			t.Fatal(err)
		}
		var st campaign.Status
		aud.Must(200, "GET", "/campaigns/"+id, nil, &st)
		if st.Progress.Issued != 5 || st.Params.BaseDate != 2014 || st.Params.FromBase != 1993 {
			t.Fatalf("status %+v", st)
		}
		if code, _ := cashier.Do("GET", "/campaigns/"+id, nil); code != 403 {
			t.Fatalf("cashier reads a campaign: %d", code)
		}
		var d campaignapi.MeterDetail
		eng.Must(200, "GET", "/campaigns/"+id+"/meters/"+pan(1), nil, &d)
		if len(d.Issued) != 4 || d.Issued[0].Token == "" || d.State != "issued" {
			t.Fatalf("meter detail %+v", d)
		}
		if code, _ := aud.Do("GET", "/campaigns/"+id+"/meters/"+pan(1), nil); code != 403 {
			t.Fatalf("auditor reads tokens: %d", code)
		}
		var ms campaign.MeterState
		eng.Must(200, "POST", "/campaigns/"+id+"/meters/"+pan(1)+"/delivered", nil, &ms)
		if ms.State != "delivered" {
			t.Fatalf("delivered %+v", ms)
		}
		if code, _ := eng.Do("POST", "/campaigns/"+id+"/meters/"+pan(1)+"/delivered", nil); code != 409 {
			t.Fatalf("second delivery: %d", code)
		}
		var page campaignapi.MeterPage
		aud.Must(200, "GET", "/campaigns/"+id+"/meters?state=issued&limit=2", nil, &page)
		if len(page.Meters) != 2 || page.Next == 0 {
			t.Fatalf("page %+v", page)
		}
		aud.Must(200, "GET", fmt.Sprintf("/campaigns/%s/meters?state=issued&limit=2&after=%d", id, page.Next), nil, &page)
		if len(page.Meters) != 2 {
			t.Fatalf("page 2 %+v", page)
		}
		var rep campaign.Report
		aud.Must(200, "GET", "/campaigns/"+id+"/report", nil, &rep)
		if rep.TokensIssued != 20 || len(rep.Unconfirmed) != 5 || rep.Progress.Delivered != 1 {
			t.Fatalf("report %+v", rep)
		}
		var list []campaign.Status
		eng.Must(200, "GET", "/campaigns", nil, &list)
		if len(list) != 1 {
			t.Fatalf("list %+v", list)
		}
		// The routes are in the generated OpenAPI document.
		code, doc := aud.Do("GET", "/openapi.json", nil)
		if code != 200 || !strings.Contains(string(doc), `"/api/v1/campaigns/{id}/report"`) || !strings.Contains(string(doc), `"/api/v1/campaigns/{id}/meters/{meter}/delivered"`) {
			t.Fatalf("openapi: %d %.300s", code, doc)
		}
		admin.Must(200, "POST", "/campaigns/"+id+"/cancel", nil, &st)
		if st.State != "cancelled" {
			t.Fatalf("cancelled %+v", st)
		}
		if code, _ := admin.Do("POST", "/campaigns/"+id+"/cancel", nil); code != 409 {
			t.Fatalf("second cancel: %d", code)
		}
	})
}
