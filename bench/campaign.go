package bench

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"sluice/campaign"
	"sluice/keys"
	"sluice/kms"
	"sluice/store"
	"sluice/sts"
)

// benchVendingKey2 is revision 2 of the bench supply group's vending key, a
// made-up value: the campaign moves every meter to it.
var benchVendingKey2 = []byte("\x13\x57\x9b\xdf\x02\x46\x8a\xce\x13\x57\x9b\xdf\x02\x46\x8a\xce\x55\xaa\x55\xaa")

// runCampaign measures a key-change campaign: the supply group moves to key
// revision 2 and campaign.Run issues every meter its four-token EA11
// key-change set (DKGA04 in the key manager, MISTY1, the meter's new key
// state and tokens stored), one transaction per batch.
func runCampaign(ctx context.Context, o *Options) ([]Result, error) {
	return o.onEachDriver(ctx, one(campaignOn))
}

func campaignOn(ctx context.Context, o *Options, drv string) (Result, error) {
	r, err := startBareRig(ctx, o, drv)
	if err != nil {
		return Result{}, err
	}
	defer r.close()
	he := r.heads[0]
	n := o.CampaignMeters
	// The meters are written straight to the store: registering thousands
	// through the API would measure the API.
	const perTx = 500
	for first := 0; first < n; first += perTx {
		err := he.Store().Tx(ctx, func(tx store.Tx) error {
			for i := first; i < min(first+perTx, n); i++ {
				c, err := tx.Customers().Create(ctx, store.Customer{Account: fmt.Sprintf("CAMP-%06d", i), Name: "Campaign household"})
				if err != nil {
					return err
				}
				drn := "6007271" + fmt.Sprintf("%010d", i)
				luhn, err := sts.LuhnDigit(drn)
				if err != nil {
					return err
				}
				if _, err := tx.Meters().Create(ctx, store.Meter{Number: drn + strconv.Itoa(luhn), Kind: store.MeterSTS, CustomerID: c.ID,
					TariffCode: "DOM-2026", SGC: "123457", KRN: 1, TI: 1, KT: 2, BaseDate: 2014, Status: "active"}); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return Result{}, fmt.Errorf("meters: %w", err)
		}
	}
	if _, err := keys.ImportVendingKeys(ctx, he.KMS(), []keys.VendingKey{{SGC: 123457, KRN: 2, Kind: kms.STSDKGA04, Key: benchVendingKey2}}); err != nil {
		return Result{}, err
	}
	svc := campaign.New(campaign.Config{Store: he.Store(), Vend: he.Vend(), KM: he.KMS()})
	c, enrolled, err := svc.Start(ctx, "bench", campaign.Spec{Name: "bench key revision 2", Kind: campaign.KindSTS, SupplyGroup: "123457", KRN: 2, TI: -1})
	if err != nil {
		return Result{}, err
	}
	// Dual control, where this build has it: a second operator approves
	// the campaign before it can run. Not part of the timed run.
	if a, ok := any(svc).(interface {
		Approve(context.Context, string, int64) (campaign.Status, error)
	}); ok {
		if _, err := a.Approve(ctx, "bench-approver", c.ID); err != nil {
			return Result{}, fmt.Errorf("approve: %w", err)
		}
	}
	start := time.Now()
	p, err := svc.Run(ctx, c.ID, "bench", nil)
	el := time.Since(start)
	if err != nil {
		return Result{}, err
	}
	if p.Failed != 0 || p.Issued != int64(enrolled) {
		return Result{}, fmt.Errorf("campaign issued %d of %d meters, %d failed", p.Issued, enrolled, p.Failed)
	}
	rate := float64(p.Issued) / el.Seconds()
	o.say("campaign %s: %d meters issued their key-change sets in %v (%.0f meters/s)", drv, p.Issued, el.Round(time.Millisecond), rate)
	return Result{Name: "campaign." + drv + ".keychange", Value: rate, Unit: "meters/s",
		Params: map[string]any{"db": drv, "meters": p.Issued, "batch": campaign.DefaultBatch, "ea": "11", "tokens_per_meter": 4}}, nil
}
