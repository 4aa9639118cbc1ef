package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"sluice/config"
	"sluice/headend"
	"sluice/kms/filekms"
	"sluice/meter/sim"
	"sluice/telemetry/fleet"
	"sluice/vend"
)

type fleetFlags struct {
	first  uint64
	tariff string
	broker string
	topUp  int64
}

// meterFleetHeadend runs an emulated fleet against a running head-end: its
// database and key store (the configuration's) and its MQTT broker.
func meterFleetHeadend(ctx context.Context, sio stdio, cfg config.Config, ff fleetFlags, sc sim.Config, until time.Time, every time.Duration) error {
	if ff.tariff == "" {
		return errors.New("--tariff: name an existing tariff for the fleet's meters")
	}
	url := ff.broker
	if url == "" {
		if cfg.MQTT.Mode != "embedded" {
			return errors.New("--mqtt: the head-end's broker is external; give its URL")
		}
		url = "mqtt://" + cfg.MQTT.Listen
	}
	db, err := headend.OpenStore(ctx, cfg)
	if err != nil {
		return err
	}
	defer db.Close()
	if err := db.Ready(ctx); err != nil {
		return fmt.Errorf("head-end database: %w (start `sluice serve` first)", err)
	}
	km, err := headend.OpenKMS(ctx, cfg, filekms.Options{})
	if err != nil {
		return err
	}
	defer km.Close()
	loc, err := cfg.Location()
	if err != nil {
		return err
	}
	sc.FirstID = ff.first
	t0 := time.Now()
	a, err := fleet.Attach(ctx, fleet.Config{Store: db, KMS: km, Vend: vend.New(vend.Config{Store: db, Keys: vend.KMSKeys{KM: km}, Location: loc}),
		BrokerURL: url, Tariff: ff.tariff, Vendor: "FLEET", FloatCents: 1_000_000_000, TopUpCents: ff.topUp, Sim: sc})
	if err != nil {
		return err
	}
	defer a.Close()
	fmt.Fprintf(sio.err, "%d meters registered, connected to %s and given a first purchase in %v\n", sc.Meters, url, time.Since(t0).Round(time.Millisecond))
	last := a.Fleet.Summary()
	line := func(s sim.Summary) {
		st := a.Stats()
		fmt.Fprintf(sio.out, "%s  meters %d  valve closed %d  low credit %d  used %.1f m3  readings sent %d  purchases %d (refused %d)  top-ups by downlink %d\n",
			s.Time.Format("2006-01-02 15:04"), s.Meters, s.ValveClosed, s.LowCredit, float64(s.ForwardL-last.ForwardL)/1000,
			s.Readings-last.Readings, st.Purchases, st.PurchasesRefused, st.Downlinks)
		last = s
	}
	err = a.Run(ctx, until, every, line)
	if errors.Is(err, context.Canceled) {
		line(a.Fleet.Summary())
		return nil
	}
	return err
}
