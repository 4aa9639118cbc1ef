package fleet_test

import (
	"context"
	"log/slog"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"sluice/auth"
	"sluice/config"
	"sluice/headend"
	"sluice/kms/filekms"
	"sluice/meter/sim"
	"sluice/protect"
	"sluice/store"
	"sluice/tariff/tarifftest"
	"sluice/telemetry/fleet"
	"sluice/vend"
)

// TestFleetAgainstAHeadend runs an emulated fleet against a real head-end
// over its embedded broker: meters register, report, buy through vending and
// take their top-ups; the ledger explains every litre they load, so revenue
// protection raises no unsold-credit alert.
func TestFleetAgainstAHeadend(t *testing.T) {
	ctx := context.Background()
	cfg, err := config.Load("", nil, []config.Override{
		{Key: "data_dir", Value: filepath.Join(t.TempDir(), "data")}, {Key: "listen", Value: "127.0.0.1:0"},
		{Key: "mqtt.listen", Value: "127.0.0.1:0"},
	})
	if err != nil {
		t.Fatal(err)
	}
	h, err := headend.Start(ctx, cfg, slog.New(slog.DiscardHandler), headend.Options{
		PasswordParams: &auth.Params{Memory: 64, Time: 1, Threads: 1}, KMSOptions: filekms.Options{Time: 1, MemoryKiB: 64, Threads: 1}})
	if err != nil {
		t.Fatal(err)
	}
	defer h.Shutdown(ctx)
	if _, err := h.Vend().PutTariff(ctx, vend.Actor{Username: "test"}, "DOM-2026", tarifftest.Domestic()); err != nil {
		t.Fatal(err)
	}
	const n, first = 4, 9100001
	start := time.Now().UTC().Truncate(time.Hour)
	a, err := fleet.Attach(ctx, fleet.Config{Store: h.Store(), KMS: h.KMS(), Vend: h.Vend(), BrokerURL: "mqtt://" + h.MQTTAddr(),
		Tariff: "DOM-2026", Vendor: "FLEET", FloatCents: 100_000_000, TopUpCents: 30000,
		Sim: sim.Config{Meters: n, FirstID: first, Seed: 3, Start: start, Step: 15 * time.Minute, Report: time.Hour, TopUp: 1000, PerPersonDay: 150, InitialCredit: 400}})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if err := a.Run(ctx, start.Add(48*time.Hour), 24*time.Hour, nil); err != nil {
		t.Fatal(err)
	}
	st := a.Stats()
	if st.Purchases == 0 {
		t.Fatalf("the fleet bought nothing in two days: %+v %+v", st, a.Fleet.Summary())
	}
	// Readings arrive at the head-end asynchronously; wait for them.
	readings := func() int {
		total := 0
		h.Store().Read(ctx, func(tx store.Tx) error {
			for i := range n {
				m, err := tx.Meters().ByNumber(ctx, strconv.Itoa(first+i))
				if err != nil {
					return err
				}
				rs, _ := tx.Telemetry().Readings(ctx, m.ID, start.Add(-time.Hour), start.Add(72*time.Hour), 1000)
				total += len(rs)
			}
			return nil
		})
		return total
	}
	deadline := time.Now().Add(20 * time.Second)
	for readings() < n*40 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if got := readings(); got < n*40 {
		t.Fatalf("head-end stored %d readings from %d meters over 48 simulated hours, want at least %d", got, n, n*40)
	}
	// The free basic water vouchers of those purchases were never typed in:
	// the head-end's remote top-up sends them on the meters' downlinks, the
	// meters load them and acknowledge, and the deliveries close.
	for deadline := time.Now().Add(30 * time.Second); a.Stats().Downlinks == 0 && time.Now().Before(deadline); {
		if err := a.Run(ctx, a.Fleet.Now().Add(15*time.Minute), 24*time.Hour, nil); err != nil {
			t.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if a.Stats().Downlinks == 0 {
		t.Fatal("no remote top-up reached a meter on its downlink")
	}
	var pending int
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		a.Run(ctx, a.Fleet.Now().Add(15*time.Minute), 24*time.Hour, nil)
		h.Store().Read(ctx, func(tx store.Tx) error {
			pv, _ := tx.Telemetry().PendingVouchers(ctx, time.Time{}, 1000)
			pending = len(pv)
			return nil
		})
		if pending == 0 {
			break
		}
	}
	if pending != 0 {
		t.Fatalf("%d vouchers still undelivered after the meters acknowledged their downlinks", pending)
	}
	var unsold []store.Alert
	h.Store().Read(ctx, func(tx store.Tx) error {
		unsold, _ = tx.Alerts().List(ctx, store.AlertFilter{Rule: protect.RuleUnsoldCredit})
		return nil
	})
	if len(unsold) != 0 {
		t.Fatalf("credit bought through vending raised unsold-credit alerts: %+v", unsold)
	}
	t.Logf("fleet: %+v; link: %+v", a.Fleet.Summary(), a.Stats())
}
