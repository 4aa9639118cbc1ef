package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"sluice/keys"
	"sluice/kms"
	"sluice/kms/filekms"
	"sluice/store"
	"sluice/store/sqlstore"
	"sluice/sts"
)

// campaignDataDir is a data directory with a key store holding the
// standard keys and the vending keys of supply group 123457 KRN 1 and 2, and
// n STS meters on KRN 1 and base date 1993.
func campaignDataDir(t *testing.T, n int) (string, *sqlstore.DB) {
	t.Helper()
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
		for i := 1; i <= n; i++ {
			if _, err := tx.Meters().Create(ctx, store.Meter{Number: testPAN(i), Kind: store.MeterSTS, TariffCode: "T", SGC: "123457", KRN: 1, TI: 1, KT: 2, BaseDate: 1993}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return dir, db
}

func testPAN(i int) string {
	s := fmt.Sprintf("600727%011d", i)
	d, _ := sts.LuhnDigit(s)
	return s + fmt.Sprint(d)
}

func TestKeysCampaignCLI(t *testing.T) {
	dir, db := campaignDataDir(t, 120)
	ctx := context.Background()
	env := map[string]string{"USER": "ops"}
	data := "--data=" + dir
	code, out, errs := runCLI(t, "", env, "keys", "campaign", "start", data, "--name", "rollover-2026", "--kind", "sts", "--supply-group", "123457", "--krn", "2", "--rollover")
	if code != 0 || !strings.Contains(out, "120 meters enrolled") {
		t.Fatalf("start: %d %q %q", code, out, errs)
	}
	if code, _, errs = runCLI(t, "", env, "keys", "campaign", "run", data, "rollover-2026"); code == 0 || !strings.Contains(errs, "not approved") {
		t.Fatalf("run before approval: %d %q", code, errs)
	}
	if code, _, errs = runCLI(t, "", env, "keys", "campaign", "approve", data, "rollover-2026"); code == 0 || !strings.Contains(errs, "dual control") {
		t.Fatalf("approval by the proposer: %d %q", code, errs)
	}
	if code, out, errs = runCLI(t, "", env, "keys", "campaign", "approve", data, "--actor", "cli:supervisor", "rollover-2026"); code != 0 || !strings.Contains(out, "approved by cli:supervisor") {
		t.Fatalf("approve: %d %q %q", code, out, errs)
	}
	code, out, errs = runCLI(t, "", env, "keys", "campaign", "run", data, "--batch", "50", "rollover-2026")
	if code != 0 || !strings.Contains(out, "120 issued in this run") || !strings.Contains(errs, "120/120 100.0%") {
		t.Fatalf("run: %d %q %q", code, out, errs)
	}
	code, out, errs = runCLI(t, "", env, "keys", "campaign", "status", data, "1")
	if code != 0 || !strings.Contains(out, "from KRN 1 TI 1 base 1993 to KRN 2 TI 1 base 2014") || !strings.Contains(out, "issued 120") {
		t.Fatalf("status: %d %q %q", code, out, errs)
	}
	first := testPAN(1)
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
	err := db.Read(ctx, func(tx store.Tx) error {
		recs, err := tx.Audit().Pending(ctx, 1000)
		for _, r := range recs {
			if r.Actor != "cli:ops" && !(r.Action == "campaign.approve" && r.Actor == "cli:supervisor") {
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
	if fmt.Sprint(actions) != "[campaign.start campaign.approve campaign.issue campaign.deliver]" {
		t.Fatalf("audit actions %v", actions)
	}
}

// TestKeysCampaignKilled kills `sluice keys campaign run` with SIGKILL
// three times at whatever point it has reached, then finishes the run:
// every meter ends with exactly one key-change set.
func TestKeysCampaignKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	const meters = 1500
	dir, db := campaignDataDir(t, meters)
	ctx := context.Background()
	bin := filepath.Join(t.TempDir(), "sluice")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	env := map[string]string{"USER": "ops"}
	if code, out, errs := runCLI(t, "", env, "keys", "campaign", "start", "--data", dir, "--name", "r", "--kind", "sts", "--supply-group", "123457", "--krn", "2", "--rollover"); code != 0 {
		t.Fatalf("start: %d %s %s", code, out, errs)
	}
	if code, out, errs := runCLI(t, "", env, "keys", "campaign", "approve", "--data", dir, "--actor", "cli:supervisor", "r"); code != 0 {
		t.Fatalf("approve: %d %s %s", code, out, errs)
	}
	issued := func() int64 {
		var n int64
		err := db.Read(ctx, func(tx store.Tx) error {
			c, err := tx.Campaigns().Counts(ctx, 1)
			n = c[store.CampaignIssued]
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	for kill := 1; kill <= 3; kill++ {
		before := issued()
		cmd := exec.Command(bin, "keys", "campaign", "run", "--quiet", "--batch", "25", "--data", dir, "r")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(20 * time.Second)
		for issued() < before+100 && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		t.Logf("kill %d: %d meters issued", kill, issued())
	}
	if issued() >= meters {
		t.Fatalf("the run finished before the kills: make the fleet larger")
	}
	if code, out, errs := runCLI(t, "", env, "keys", "campaign", "run", "--quiet", "--data", dir, "r"); code != 0 || !strings.Contains(out, "0 pending, 1500 issued") {
		t.Fatalf("resume: %d %s %s", code, out, errs)
	}
	err := db.Read(ctx, func(tx store.Tx) error {
		for i := 1; i <= meters; i++ {
			m, err := tx.Meters().ByNumber(ctx, testPAN(i))
			if err != nil {
				return err
			}
			toks, err := tx.Tokens().ByMeter(ctx, m.ID, 100)
			if err != nil {
				return err
			}
			if len(toks) != 4 || m.KRN != 2 || m.BaseDate != 2014 {
				t.Fatalf("meter %s: %d tokens, KRN %d base %d", m.Number, len(toks), m.KRN, m.BaseDate)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
