package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"

	"sluice/keys"
	"sluice/kms"
	"sluice/kms/filekms"
	"sluice/store"
	"sluice/sts"
)

func TestKeysCampaignCLI(t *testing.T) {
	dir := t.TempDir()
	cfg := loadTestConfig(t, dir)
	ctx := context.Background()
	if err := os.WriteFile(cfg.KMS.PassphraseFile, []byte(testPassphrase+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	km, err := filekms.Create(cfg.KMS.File, []byte(testPassphrase), filekms.Options{Time: 1, MemoryKiB: 64, Threads: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := keys.Init(ctx, km, kms.Ed25519); err != nil {
		t.Fatal(err)
	}
	if _, err := keys.ImportVendingKeys(ctx, km, []keys.VendingKey{
		{SGC: 123457, KRN: 1, Kind: kms.STSDKGA04, Key: []byte("0123456789abcdefghij")},
		{SGC: 123457, KRN: 2, Kind: kms.STSDKGA04, Key: []byte("klmnopqrstuvwxyz0123")},
	}); err != nil {
		t.Fatal(err)
	}
	km.Close()
	db := openTestStore(t, cfg)
	err = db.Tx(ctx, func(tx store.Tx) error {
		if err := tx.Tariffs().Put(ctx, store.Tariff{Code: "T", Definition: []byte(`{}`)}); err != nil {
			return err
		}
		if err := tx.SupplyGroups().Create(ctx, store.SupplyGroup{Code: "123457", Name: "North", DKGA: "04", EA: "11", BaseDate: 1993, KRN: 1, TI: 1}); err != nil {
			return err
		}
		for i := 1; i <= 120; i++ {
			s := fmt.Sprintf("600727%011d", i)
			d, _ := sts.LuhnDigit(s)
			if _, err := tx.Meters().Create(ctx, store.Meter{Number: s + fmt.Sprint(d), Kind: store.MeterSTS, TariffCode: "T", SGC: "123457", KRN: 1, TI: 1, KT: 2, BaseDate: 1993}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"USER": "ops"}
	data := "--data=" + dir
	code, out, errs := runCLI(t, "", env, "keys", "campaign", "start", data, "--name", "rollover-2026", "--kind", "sts", "--supply-group", "123457", "--krn", "2", "--rollover")
	if code != 0 || !strings.Contains(out, "120 meters enrolled") {
		t.Fatalf("start: %d %q %q", code, out, errs)
	}
	code, out, errs = runCLI(t, "", env, "keys", "campaign", "run", data, "--batch", "50", "rollover-2026")
	if code != 0 || !strings.Contains(out, "120 issued in this run") || !strings.Contains(errs, "120/120 100.0%") {
		t.Fatalf("run: %d %q %q", code, out, errs)
	}
	code, out, errs = runCLI(t, "", env, "keys", "campaign", "status", data, "1")
	if code != 0 || !strings.Contains(out, "from KRN 1 TI 1 base 1993 to KRN 2 TI 1 base 2014") || !strings.Contains(out, "issued 120") {
		t.Fatalf("status: %d %q %q", code, out, errs)
	}
	first := fmt.Sprintf("600727%011d", 1)
	d, _ := sts.LuhnDigit(first)
	first += fmt.Sprint(d)
	if code, out, errs = runCLI(t, "", env, "keys", "campaign", "deliver", data, "1", first); code != 0 {
		t.Fatalf("deliver: %d %q %q", code, out, errs)
	}
	code, out, errs = runCLI(t, "", env, "keys", "campaign", "report", data, "--json", "rollover-2026")
	if code != 0 || !strings.Contains(out, `"tokens_issued": 480`) || !strings.Contains(out, `"delivered": 1`) {
		t.Fatalf("report: %d %q %q", code, out, errs)
	}
	if code, _, errs = runCLI(t, "", env, "keys", "campaign", "start", data, "--name", "x", "--kind", "sts", "--supply-group", "123457", "--krn", "5"); code == 0 || !strings.Contains(errs, "krn") {
		t.Fatalf("start without the vending key: %d %q", code, errs)
	}
	// Every step is in the audit log under the CLI's actor.
	var actions []string
	err = db.Read(ctx, func(tx store.Tx) error {
		recs, err := tx.Audit().Pending(ctx, 1000)
		for _, r := range recs {
			if r.Actor != "cli:ops" {
				t.Errorf("audit actor %q", r.Actor)
			}
			if len(actions) == 0 || actions[len(actions)-1] != r.Action {
				actions = append(actions, r.Action)
			}
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(actions) != "[campaign.start campaign.issue campaign.deliver]" {
		t.Fatalf("audit actions %v", actions)
	}
}
