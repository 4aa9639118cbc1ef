package service

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"sluice/auth"
	"sluice/internal/testenv"
	"sluice/keys"
	"sluice/kms"
	"sluice/kms/filekms/filekmstest"
	"sluice/meter"
	"sluice/meter/sim"
	"sluice/protect"
	"sluice/store"
	"sluice/store/sqlstore"
	"sluice/store/storetest"
	"sluice/telemetry/broker"
	"sluice/telemetry/ingest"
	"sluice/telemetry/mqttlink"
)

const mosquitto = "127.0.0.1:1883"

func telemetryKey(t testing.TB, km kms.KeyManager, id uint64) [16]byte {
	k, _, err := keys.MeterKey(context.Background(), km, kms.Ref(keys.MeterRoot), id, keys.Telemetry, 1)
	if err != nil {
		t.Fatal(err)
	}
	return [16]byte(k)
}

// vendor sells through the emulator's local signing key and, unless the
// meter is a ghost, posts the sale to the ledger as a purchase does.
type vendor struct {
	t     testing.TB
	db    store.Store
	lv    *sim.LocalVendor
	mu    sync.Mutex
	seqs  map[uint64]int64
	sales int
}

func (v *vendor) sell(id uint64, litres uint32, now time.Time, ledger bool) ([]byte, int64, error) {
	b, err := v.lv.Vend(id, litres, now)
	if err != nil {
		return nil, 0, err
	}
	v.mu.Lock()
	v.seqs[id]++
	seq := v.seqs[id]
	v.sales++
	n := v.sales
	v.mu.Unlock()
	if ledger {
		ctx := context.Background()
		num := strconv.FormatUint(id, 10)
		err := v.db.Tx(ctx, func(tx store.Tx) error {
			_, err := tx.Ledger().Append(ctx, store.LedgerEntry{ID: fmt.Sprintf("purchase:%d", n), Type: "purchase", Purchase: strconv.Itoa(n), Time: now.UTC(),
				Postings: []store.Posting{{Account: "credit:" + num, Unit: "L", Amount: int64(litres)}, {Account: "issued:water", Unit: "L", Amount: -int64(litres)}}})
			return err
		})
		if err != nil {
			return nil, 0, err
		}
	}
	return b, seq, nil
}

// Vend implements sim.Vendor: the emulated customers buy honestly.
func (v *vendor) Vend(id uint64, litres uint32, now time.Time) ([]byte, error) {
	b, _, err := v.sell(id, litres, now, true)
	return b, err
}

func prefix() string {
	var b [6]byte
	rand.Read(b[:])
	return "test-" + hex.EncodeToString(b[:]) + "/"
}

type downlink struct {
	id uint64
	b  []byte
}

// TestFleetOverBrokers runs emulated meters against the whole telemetry
// service on each broker: readings flow in, a meter that loads credit
// nobody sold raises an unsold-credit alert within one reporting cycle,
// and a remote top-up is published, loaded by the meter and closed by its
// acknowledgement.
func TestFleetOverBrokers(t *testing.T) {
	for _, embedded := range []bool{true, false} {
		name := "embedded"
		if !embedded {
			name = "mosquitto"
		}
		for _, be := range storetest.Backends() {
			t.Run(name+"/"+be.Name, func(t *testing.T) {
				if !embedded {
					testenv.RequireTCP(t, mosquitto)
				}
				fleetTest(t, be.Open(t, false), embedded)
			})
		}
	}
}

func fleetTest(t *testing.T, db *sqlstore.DB, embedded bool) {
	ctx := context.Background()
	const first, n = 4710001, 3
	km := filekmstest.WithMeterRoot(t)
	ids := map[uint64]int64{}
	err := db.Tx(ctx, func(tx store.Tx) error {
		if err := tx.Tariffs().Put(ctx, store.Tariff{Code: "DOM", Definition: []byte(`{}`)}); err != nil {
			return err
		}
		for i := range uint64(n) {
			m, err := tx.Meters().Create(ctx, store.Meter{Number: strconv.FormatUint(first+i, 10), Kind: store.MeterAMI, TariffCode: "DOM", Area: "north"})
			if err != nil {
				return err
			}
			ids[first+i] = m.ID
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	p := prefix()
	cfg := Config{Mode: "embedded", Listen: "127.0.0.1:0", Prefix: p, RetryMin: 50 * time.Millisecond, RetryMax: time.Second,
		DeliverEvery: 20 * time.Millisecond, ProtectEvery: time.Hour, Thresholds: protect.Thresholds{UnsoldCreditLitres: 2000}}
	if !embedded {
		cfg.Mode, cfg.URL, cfg.ClientID = "external", "mqtt://"+mosquitto, p+"headend"
	}
	svc, err := New(cfg, Deps{Store: db, KMS: km, Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	url := "mqtt://" + mosquitto
	if embedded {
		url = "mqtt://" + svc.Broker.(*broker.Embedded).Addr()
	}

	// Each meter has its own connection and credentials, and listens for
	// its downlinks.
	down := make(chan downlink, 8)
	conns := map[uint64]*mqttlink.Conn{}
	for i := range uint64(n) {
		id := first + i
		k := telemetryKey(t, km, id)
		pw, _ := ingest.MQTTPassword(k[:])
		c, err := mqttlink.Dial(ctx, mqttlink.DialConfig{URL: url, Username: mqttlink.Username(id), Password: pw, Prefix: p,
			ClientID: p + "meter-" + mqttlink.Username(id), Meter: id,
			OnDownlink: func(_ string, b []byte) { down <- downlink{id, b} }})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		conns[id] = c
	}
	link := mqttlink.New(mqttlink.Config{Report: time.Hour,
		Publisher: func(id uint64) (mqttlink.Publisher, error) { return conns[id], nil },
		Key:       func(id uint64) [16]byte { return telemetryKey(t, km, id) }})

	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	lv := sim.NewLocalVendor(priv, first, n)
	v := &vendor{t: t, db: db, lv: lv, seqs: map[uint64]int64{}}
	start := time.Date(2026, 11, 25, 6, 0, 0, 0, time.UTC)
	fleet, err := sim.New(sim.Config{Meters: n, FirstID: first, Seed: 7, Start: start, Step: 15 * time.Minute, Report: time.Hour,
		Params: meter.DefaultParams(), TopUp: 1000, Keyring: lv.Keyring(), PerPersonDay: 100, InitialCredit: 2000,
		ReceiptKey: func(id uint64) [16]byte { return telemetryKey(t, km, id) }}, link, v)
	if err != nil {
		t.Fatal(err)
	}
	stepFor := func(d time.Duration) {
		t.Helper()
		for end := fleet.Now().Add(d); fleet.Now().Before(end); {
			if err := fleet.Step(); err != nil {
				t.Fatal(err)
			}
		}
	}
	alerts := func(rule string) map[int64]store.Alert {
		out := map[int64]store.Alert{}
		db.Read(ctx, func(tx store.Tx) error {
			as, _ := tx.Alerts().List(ctx, store.AlertFilter{Rule: rule})
			for _, a := range as {
				out[a.MeterID] = a
			}
			return nil
		})
		return out
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s (ingest: stored %d, duplicate %d, forged %d)", what,
					svc.Ingest.Count(ingest.Stored), svc.Ingest.Count(ingest.Duplicate), svc.Ingest.Count(ingest.Forged))
			}
		}
	}

	// Three hours of honest use: readings arrive, nothing is unsold.
	stepFor(3 * time.Hour)
	waitFor("three readings per meter", func() bool { return svc.Ingest.Count(ingest.Stored) >= 3*n })
	if a := alerts(protect.RuleUnsoldCredit); len(a) != 0 {
		t.Fatalf("honest meters raised unsold-credit alerts: %+v", a)
	}

	// Meter 2 loads 500 L that were never sold (a ghost vend: signed, but
	// not in the ledger), then reports once.
	ghost := uint64(first + 1)
	b, _, err := v.sell(ghost, 500, fleet.Now(), false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fleet.Deliver(ghost, b); err != nil {
		t.Fatal(err)
	}
	stepFor(time.Hour)
	waitFor("the unsold-credit alert", func() bool { _, ok := alerts(protect.RuleUnsoldCredit)[ids[ghost]]; return ok })
	if a := alerts(protect.RuleUnsoldCredit); len(a) != 1 {
		t.Fatalf("unsold-credit alerts %+v: want only the ghost meter's", a)
	}

	// Remote top-up of meter 1: a sold voucher in the tokens table is
	// published, loaded by the meter, acknowledged and closed.
	buyer := uint64(first)
	vb, seq, err := v.sell(buyer, 300, fleet.Now(), true)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Tx(ctx, func(tx store.Tx) error {
		_, err := tx.Tokens().Create(ctx, store.Token{MeterID: ids[buyer], Kind: store.TokenCredit, Voucher: vb, VoucherSeq: seq, Litres: 300})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	svc.Kick()
	var got downlink
	select {
	case got = <-down:
	case <-time.After(10 * time.Second):
		t.Fatal("the voucher was never published to the meter")
	}
	if got.id != buyer {
		t.Fatalf("voucher reached meter %d", got.id)
	}
	rc, err := fleet.Deliver(got.id, got.b)
	if err != nil || rc.Status != meter.Loaded {
		t.Fatalf("meter refused the voucher: %+v %v", rc, err)
	}
	waitFor("delivery closed", func() bool {
		var pending []store.PendingVoucher
		db.Read(ctx, func(tx store.Tx) error { pending, _ = tx.Telemetry().PendingVouchers(ctx, time.Time{}, 10); return nil })
		return len(pending) == 0
	})
	db.Read(ctx, func(tx store.Tx) error {
		ts, _ := tx.Tokens().ByMeter(ctx, ids[buyer], 10)
		if len(ts) != 1 || ts[0].DeliveredAt.IsZero() {
			t.Errorf("token not marked delivered: %+v", ts)
		}
		return nil
	})
	// A redelivery (retry racing the ack) is answered Duplicate and changes
	// nothing; draining any retries the loop made meanwhile.
	for {
		select {
		case d := <-down:
			if rc, err := fleet.Deliver(d.id, d.b); !errors.Is(err, nil) && rc.Status != meter.Duplicate {
				t.Fatalf("redelivered voucher: %+v %v", rc, err)
			}
			continue
		default:
		}
		break
	}
	if a := alerts(protect.RuleUnsoldCredit); len(a) != 1 {
		t.Fatalf("a sold remote top-up raised unsold credit: %+v", a)
	}
}

// Gateways log in with their configured credentials and may publish only
// on their own topic; their telegrams become readings.
func TestGatewayOnEmbeddedBroker(t *testing.T) {
	db := storetest.OpenSQLite(t, false)
	ctx := context.Background()
	km := filekmstest.WithMeterRoot(t)
	var meterID int64
	db.Tx(ctx, func(tx store.Tx) error {
		tx.Tariffs().Put(ctx, store.Tariff{Code: "DOM", Definition: []byte(`{}`)})
		m, err := tx.Meters().Create(ctx, store.Meter{Number: "76348799", Kind: store.MeterAMI, TariffCode: "DOM"})
		meterID = m.ID
		return err
	})
	p := prefix()
	svc, err := New(Config{Listen: "127.0.0.1:0", Prefix: p, Gateways: map[string]string{"gw-north-1": "gateway secret"}, DeliverEvery: time.Hour},
		Deps{Store: db, KMS: km})
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	key := []byte{0x28, 0xF6, 0x4A, 0x24, 0x98, 0x80, 0x64, 0xA0, 0x79, 0xAA, 0x2C, 0x80, 0x7D, 0x61, 0x02, 0xAE}
	if _, err := svc.WMBus.Register(ctx, meterID, "KAM76348799", key); err != nil {
		t.Fatal(err)
	}
	url := "mqtt://" + svc.Broker.(*broker.Embedded).Addr()
	if _, err := mqttlink.Dial(ctx, mqttlink.DialConfig{URL: url, Username: "gw-north-1", Password: "wrong", Prefix: p}); err == nil {
		t.Fatal("a gateway logged in with a wrong password")
	}
	gw, err := mqttlink.Dial(ctx, mqttlink.DialConfig{URL: url, Username: "gw-north-1", Password: "gateway secret", Prefix: p})
	if err != nil {
		t.Fatal(err)
	}
	defer gw.Close()
	tg := []byte("2A442D2C998734761B168D2091D37CAC21E1D68CDAFFCD3DC452BD802913FF7B1706CA9E355D6C2701CC24\n")
	if err := gw.Publish(ctx, "sluice/v1/wmbus/gw-south-2", tg); err == nil {
		t.Fatal("a gateway published as another")
	}
	if err := gw.Publish(ctx, "sluice/v1/wmbus/gw-north-1", tg); err != nil {
		t.Fatal(err)
	}
	db.Read(ctx, func(tx store.Tx) error {
		rs, _ := tx.Telemetry().Readings(ctx, meterID, time.Time{}, time.Now().Add(time.Hour), 10)
		if len(rs) != 1 || rs[0].Forward != 6408 {
			t.Errorf("readings %+v", rs)
		}
		return nil
	})
}

func TestPendingRoute(t *testing.T) {
	db := storetest.OpenSQLite(t, false)
	ctx := context.Background()
	svc, err := New(Config{Mode: "off"}, Deps{Store: db, KMS: filekmstest.WithMeterRoot(t)})
	if err != nil {
		t.Fatal(err)
	}
	db.Tx(ctx, func(tx store.Tx) error {
		tx.Tariffs().Put(ctx, store.Tariff{Code: "DOM", Definition: []byte(`{}`)})
		m, err := tx.Meters().Create(ctx, store.Meter{Number: "4710001", Kind: store.MeterAMI, TariffCode: "DOM"})
		if err != nil {
			return err
		}
		_, err = tx.Tokens().Create(ctx, store.Token{MeterID: m.ID, Kind: store.TokenCredit, Voucher: []byte{1}, VoucherSeq: 9, Litres: 250})
		return err
	})
	var route func() (any, error)
	for _, r := range svc.Routes() {
		if r.Path == "/downlinks/pending" {
			route = func() (any, error) { return r.Handler(ctx, nil, auth.Principal{}) }
			if fmt.Sprint(r.Roles) != fmt.Sprint([]string{auth.Supervisor, auth.Admin, auth.Auditor}) {
				t.Fatalf("roles %v", r.Roles)
			}
		}
	}
	if route == nil {
		t.Fatal("no pending downlinks route")
	}
	v, err := route()
	if err != nil {
		t.Fatal(err)
	}
	l := v.(PendingList)
	if len(l.Downlinks) != 1 || l.Downlinks[0].Meter != "4710001" || l.Downlinks[0].VoucherSeq != 9 || l.Downlinks[0].Litres != 250 || l.Downlinks[0].Attempts != 0 {
		t.Fatalf("pending %+v", l)
	}
}

// The head-end's wiring: routes before the server exists, metrics into
// the server's registry after.
func TestWiringOrder(t *testing.T) {
	db := storetest.OpenSQLite(t, false)
	svc, err := New(Config{Mode: "off"}, Deps{Store: db, KMS: filekmstest.WithMeterRoot(t)})
	if err != nil {
		t.Fatal(err)
	}
	if len(svc.Routes()) != 5 {
		t.Fatalf("%d routes", len(svc.Routes()))
	}
	reg := prometheus.NewRegistry()
	if err := svc.Register(reg); err != nil {
		t.Fatal(err)
	}
	if err := svc.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	mfs, _ := reg.Gather()
	found := false
	for _, mf := range mfs {
		found = found || mf.GetName() == "sluice_telemetry_frames_total"
	}
	if !found {
		t.Fatal("telemetry metrics not registered")
	}
	if err := svc.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := New(Config{Mode: "bogus"}, Deps{Store: db, KMS: filekmstest.WithMeterRoot(t)}); err == nil {
		t.Fatal("bad mode accepted")
	}
}
