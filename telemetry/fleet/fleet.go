// Package fleet attaches the fleet emulator (package meter/sim) to a
// head-end, so a whole fleet exercises the real paths end to end: every
// emulated meter is registered as an AMI meter of its own customer, connects
// to the head-end's MQTT broker with its own credentials (derived from its
// telemetry key, as a real meter's are), reports readings, events and voucher
// acknowledgements in frames sealed under that key, buys credit through the
// vending service when its customer runs low, and takes the remote top-ups
// the head-end sends on its downlink topic.
//
// The emulator steps simulated time faster than real time; purchases and
// deliveries happen at the head-end's real time. Downlinks arrive on MQTT
// goroutines and are queued, then handed to the fleet between steps, so the
// fleet itself stays single-threaded as package sim requires.
package fleet

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"sluice/auth"
	"sluice/keys"
	"sluice/kms"
	"sluice/meter"
	"sluice/meter/sim"
	"sluice/store"
	"sluice/telemetry/ingest"
	"sluice/telemetry/mqttlink"
	"sluice/vend"
)

// Config describes the fleet and where its head-end is.
type Config struct {
	Store store.Store
	KMS   kms.KeyManager
	Vend  *vend.Service
	// BrokerURL is the head-end's broker, mqtt://host:port.
	BrokerURL string
	// Prefix is prepended to topics (tests sharing one broker).
	Prefix string
	// Tariff is the code of an existing tariff the meters are put on.
	Tariff string
	// Vendor is the vending point the fleet's customers buy at; it is
	// created with FloatCents of float when missing.
	Vendor     string
	FloatCents int64
	// TopUpCents is what a customer pays each time it buys.
	TopUpCents int64
	// Sim is the fleet: Meters, FirstID, Seed, Start, Step, Report, shares.
	// Keyring and ReceiptKey are filled in from the KMS; InitialCredit is
	// replaced by a first purchase per household.
	Sim sim.Config
}

// Attached is a fleet connected to a head-end.
type Attached struct {
	Fleet *sim.Fleet
	conns []*mqttlink.Conn

	mu        sync.Mutex
	downlinks []downlink
	stats     Stats
}

// Stats counts what crossed the link besides what the fleet counts itself.
type Stats struct {
	Purchases         int // purchases made through the vending service
	PurchasesRefused  int
	Downlinks         int // vouchers received on downlink topics
	DownlinksRejected int // refused by the meter (duplicates of a top-up already loaded, mostly)
}

type downlink struct {
	meter   uint64
	payload []byte
}

// fleetOperator is the operator the fleet's purchases are made as. Its
// password hash is not a valid hash, so nobody can log in as it.
const fleetOperator = "fleet-emulator"

// Attach registers the fleet at the head-end and connects every meter.
func Attach(ctx context.Context, cfg Config) (*Attached, error) {
	if cfg.Sim.Meters <= 0 || cfg.Sim.FirstID == 0 {
		return nil, errors.New("fleet: need at least one meter and a first meter ID above 0")
	}
	if cfg.TopUpCents <= 0 {
		cfg.TopUpCents = 20000
	}
	actor, err := register(ctx, cfg)
	if err != nil {
		return nil, err
	}
	tkeys := make(map[uint64][16]byte, cfg.Sim.Meters)
	for i := range cfg.Sim.Meters {
		id := cfg.Sim.FirstID + uint64(i)
		k, _, err := keys.MeterKey(ctx, cfg.KMS, kms.Ref(keys.MeterRoot), id, keys.Telemetry, 1)
		if err != nil {
			return nil, fmt.Errorf("fleet: telemetry key of meter %d: %w", id, err)
		}
		tkeys[id] = [16]byte(k)
	}
	ring, err := keys.TrustedKeys(ctx, cfg.KMS)
	if err != nil {
		return nil, fmt.Errorf("fleet: trusted keys: %w", err)
	}
	a := &Attached{}
	conns := make(map[uint64]*mqttlink.Conn, cfg.Sim.Meters)
	for id, k := range tkeys {
		pw, err := ingest.MQTTPassword(k[:])
		if err != nil {
			a.Close()
			return nil, err
		}
		c, err := mqttlink.Dial(ctx, mqttlink.DialConfig{URL: cfg.BrokerURL, Username: mqttlink.Username(id), Password: pw,
			ClientID: cfg.Prefix + "fleet-" + mqttlink.Username(id), Prefix: cfg.Prefix, Meter: id,
			OnDownlink: func(_ string, b []byte) { a.queue(id, b) }})
		if err != nil {
			a.Close()
			return nil, fmt.Errorf("fleet: meter %d: %w", id, err)
		}
		conns[id] = c
		a.conns = append(a.conns, c)
	}
	link := mqttlink.New(mqttlink.Config{Report: cfg.Sim.Report,
		Publisher: func(id uint64) (mqttlink.Publisher, error) { return conns[id], nil },
		Key:       func(id uint64) [16]byte { return tkeys[id] }})
	sc := cfg.Sim
	sc.Keyring = ring
	sc.ReceiptKey = func(id uint64) [16]byte { return tkeys[id] }
	if sc.Params.Unit == 0 {
		sc.Params = meter.DefaultParams()
	}
	// Every litre a meter holds must have been sold, or revenue protection
	// rightly calls it unsold: the fleet starts empty and each household
	// makes a first purchase before the clock runs.
	sc.InitialCredit = 0
	v := &vendor{a: a, svc: cfg.Vend, actor: actor, cents: cfg.TopUpCents, seed: sc.Seed}
	if a.Fleet, err = sim.New(sc, link, v); err != nil {
		a.Close()
		return nil, err
	}
	for id := range tkeys {
		b, err := v.Vend(id, sc.TopUp, sc.Start)
		if err == nil {
			_, err = a.Fleet.Deliver(id, b)
		}
		if err != nil {
			a.Close()
			return nil, fmt.Errorf("fleet: first purchase for meter %d: %w", id, err)
		}
	}
	return a, nil
}

// register makes sure the vending point, the fleet's operator, a customer per
// meter and the meters exist, and returns the operator as a vending actor.
func register(ctx context.Context, cfg Config) (vend.Actor, error) {
	sys := vend.Actor{Username: fleetOperator}
	var v store.Vendor
	err := cfg.Store.Read(ctx, func(tx store.Tx) error {
		var err error
		v, err = tx.Vendors().ByCode(ctx, cfg.Vendor)
		return err
	})
	if errors.Is(err, store.ErrNotFound) {
		if v, err = cfg.Vend.CreateVendor(ctx, sys, vend.NewVendor{Code: cfg.Vendor, Name: "Fleet emulator", DailyLimitCents: 10_000_000_000}); err != nil {
			return vend.Actor{}, err
		}
		if cfg.FloatCents > 0 {
			if _, err := cfg.Vend.Deposit(ctx, sys, vend.DepositRequest{Vendor: cfg.Vendor, AmountCents: cfg.FloatCents, Reference: "FLEET-FLOAT"}); err != nil {
				return vend.Actor{}, err
			}
		}
	} else if err != nil {
		return vend.Actor{}, err
	}
	var op store.Operator
	err = cfg.Store.Tx(ctx, func(tx store.Tx) error {
		var err error
		op, err = tx.Operators().ByUsername(ctx, fleetOperator)
		if errors.Is(err, store.ErrNotFound) {
			op, err = tx.Operators().Create(ctx, store.Operator{Username: fleetOperator, DisplayName: "Fleet emulator (no login)",
				Role: auth.Vendor, PasswordHash: "!no-login", VendorID: v.ID})
		}
		return err
	})
	if err != nil {
		return vend.Actor{}, fmt.Errorf("fleet: operator: %w", err)
	}
	for i := range cfg.Sim.Meters {
		number := strconv.FormatUint(cfg.Sim.FirstID+uint64(i), 10)
		account := "FLEET-" + number
		var exists bool
		cfg.Store.Read(ctx, func(tx store.Tx) error {
			_, err := tx.Meters().ByNumber(ctx, number)
			exists = err == nil
			return nil
		})
		if exists {
			continue
		}
		if _, err := cfg.Vend.CreateCustomer(ctx, sys, vend.NewCustomer{Account: account, Name: "Household " + number, Area: "fleet"}); err != nil && !errors.Is(err, vend.ErrInvalid) {
			return vend.Actor{}, err
		}
		if _, err := cfg.Vend.CreateMeter(ctx, sys, vend.NewMeter{Number: number, Kind: store.MeterAMI, Customer: account, Tariff: cfg.Tariff, Area: "fleet"}); err != nil {
			return vend.Actor{}, fmt.Errorf("fleet: register meter %s: %w", number, err)
		}
	}
	return vend.Actor{OperatorID: op.ID, Username: op.Username, Role: op.Role, VendorID: v.ID}, nil
}

func (a *Attached) queue(id uint64, b []byte) {
	a.mu.Lock()
	a.downlinks = append(a.downlinks, downlink{id, b})
	a.mu.Unlock()
}

// deliver hands the queued downlinks to their meters.
func (a *Attached) deliver() {
	a.mu.Lock()
	q := a.downlinks
	a.downlinks = nil
	a.mu.Unlock()
	for _, d := range q {
		a.stats.Downlinks++
		if _, err := a.Fleet.Deliver(d.meter, d.payload); err != nil {
			a.stats.DownlinksRejected++
		}
	}
}

// Run steps the fleet until simulated time reaches until, delivering
// downlinks between steps and calling progress as package sim's Run does.
func (a *Attached) Run(ctx context.Context, until time.Time, every time.Duration, progress func(sim.Summary)) error {
	if every <= 0 {
		every = 24 * time.Hour
	}
	for a.Fleet.Now().Before(until) {
		if err := ctx.Err(); err != nil {
			return err
		}
		mark := a.Fleet.Now().Truncate(every)
		a.deliver()
		if err := a.Fleet.Step(); err != nil {
			return err
		}
		if progress != nil && (!a.Fleet.Now().Truncate(every).Equal(mark) || !a.Fleet.Now().Before(until)) {
			progress(a.Fleet.Summary())
		}
	}
	a.deliver()
	return nil
}

// Stats returns the link's counts.
func (a *Attached) Stats() Stats { return a.stats }

// Close disconnects every meter.
func (a *Attached) Close() {
	for _, c := range a.conns {
		c.Close()
	}
}

// vendor buys through the vending service: a real purchase, in the ledger,
// for the meter's customer. The receipt's last voucher (the credit) goes
// straight into the meter, as a customer with the receipt would; the head-end
// also sends every voucher of the purchase on the meter's downlink, which the
// meter then takes or acknowledges as a duplicate.
type vendor struct {
	a     *Attached
	svc   *vend.Service
	actor vend.Actor
	cents int64
	seed  uint64
	n     int
}

func (v *vendor) Vend(id uint64, litres uint32, now time.Time) ([]byte, error) {
	v.n++
	key := fmt.Sprintf("fleet-%d-%d-%d", v.seed, id, v.n)
	res, err := v.svc.Purchase(context.Background(), v.actor, key, vend.PurchaseRequest{Meter: strconv.FormatUint(id, 10), AmountCents: v.cents})
	if err != nil {
		v.a.stats.PurchasesRefused++
		return nil, err
	}
	v.a.stats.Purchases++
	toks := res.Receipt.Tokens
	for i := len(toks) - 1; i >= 0; i-- {
		if toks[i].Kind == store.TokenCredit {
			return toks[i].Voucher, nil
		}
	}
	return nil, errors.New("fleet: the purchase bought no water (fixed charges or debt took it all)")
}
