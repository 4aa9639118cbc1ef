package attack

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"sluice/auth"
	"sluice/keys"
	"sluice/meter"
	"sluice/protect"
	"sluice/server"
	"sluice/telemetry/frame"
	"sluice/telemetry/mqttlink"
	"sluice/telemetry/topic"
	"sluice/voucher"
)

// Meters of attack 11b: two that end up holding credit nobody sold, and a
// control that holds exactly what was sold.
const (
	unsoldGhost, unsoldRogue, unsoldControl = 111_000_001, 111_000_002, 111_000_003
	// unsoldExtra is the credit, in litres, each attacked meter loads
	// beyond its purchase.
	unsoldExtra = 5000
	// reportEvery is the lab meters' reporting period (meter time).
	reportEvery = 15 * time.Minute
)

func unsoldCredit() Attack {
	return Attack{
		ID:       "11b",
		Name:     "meter reporting credit nobody sold",
		Weakness: "forged cards or tokens, a compromised key or ghost vending leave credit on meters that no purchase explains",
		Defence:  "revenue protection reconciles, on every reading and acknowledgement, the credit the meter reports as loaded since manufacture (under its telemetry MAC) against the litres vended for it (the ledger's credit:<meter> memo account) and raises a critical unsold-credit alert suggesting a key change",
		Play: func(ctx context.Context, lab *Lab, r *Recorder) error {
			hl, err := startHeadend(ctx, lab)
			if err != nil {
				return err
			}
			defer hl.stop()
			return playUnsold(ctx, lab, hl, r)
		},
	}
}

// amiMeter is a reference meter on the head-end's keys, with its own MQTT
// connection.
type amiMeter struct {
	*LabMeter
	key      *frame.Key
	conn     *mqttlink.Conn
	sold     int64           // litres of the vouchers its purchase issued
	receipts []meter.Receipt // what it answered to them
}

// send seals f with the meter's next journaled frame counter and publishes
// it on the meter's topic of f's kind; it returns once the head-end has
// stored it (the PUBACK).
func (m *amiMeter) send(ctx context.Context, f frame.Frame) error {
	c, err := m.FrameCounter()
	if err != nil {
		return err
	}
	f.Meter, f.Counter = m.ID(), c
	b, err := frame.Seal(nil, m.key, &f)
	if err != nil {
		return err
	}
	k := map[frame.Kind]topic.Kind{frame.KindReading: topic.Reading, frame.KindEvent: topic.Event, frame.KindAck: topic.Ack}[f.Kind]
	return m.conn.Publish(ctx, topic.ForMeter(m.ID(), k), b)
}

// report sends the meter's registers, as its periodic reading does.
func (m *amiMeter) report(ctx context.Context, now time.Time) error {
	sn := m.Snapshot()
	if sn.Unit != meter.Litres {
		return fmt.Errorf("meter %d counts credit in unit %d, not litres", sn.ID, sn.Unit)
	}
	return m.send(ctx, frame.Frame{Kind: frame.KindReading, Time: now.Truncate(time.Second), Reading: frame.Reading{
		Forward: sn.Forward, Reverse: sn.Reverse, Credit: sn.Credit, Loaded: sn.Loaded, Unit: frame.UnitLitres,
		Status: frame.Status(sn.Status) | frame.Status(sn.Tamper)<<6}})
}

func playUnsold(ctx context.Context, lab *Lab, hl *headendLab, r *Recorder) error {
	sup, cashier := hl.clients[auth.Supervisor], hl.clients[auth.Vendor]
	if _, err := sup.Deposit(ctx, "LAB1", server.DepositBody{AmountCents: 100_000, Reference: "LAB-SLIP-11B"}); err != nil {
		return err
	}
	attacker := attackerKey(lab)
	meters := map[uint64]*amiMeter{}
	ids := []uint64{unsoldGhost, unsoldRogue, unsoldControl}
	now := headendNow.Add(time.Minute)
	for _, id := range ids {
		if err := hl.registerAMI(ctx, id); err != nil {
			return fmt.Errorf("register meter %d: %w", id, err)
		}
		lm, err := lab.NewMeter(ctx, id, MeterSpec{KM: hl.h.KMS()})
		if err != nil {
			return err
		}
		k, err := frame.NewKey(lm.Keys.Telemetry[:])
		if err != nil {
			return err
		}
		conn, err := hl.meterConn(ctx, id)
		if err != nil {
			return fmt.Errorf("meter %d login: %w", id, err)
		}
		defer conn.Close()
		m := &amiMeter{LabMeter: lm, key: k, conn: conn}
		meters[id] = m

		// A purchase at the vending point; the meter loads the voucher it
		// issued (as the remote top-up delivers it), reports, and
		// acknowledges it, which closes the delivery.
		var rc struct {
			Paid   int64 `json:"paid_cents"`
			Litres int64 `json:"litres"`
			Tokens []struct {
				Voucher []byte `json:"voucher"`
			} `json:"tokens"`
		}
		if _, err := cashier.DoIdempotent(ctx, fmt.Sprintf("lab-11b-%d", id), "POST", "/purchases",
			map[string]any{"meter": strconv.FormatUint(id, 10), "amount_cents": 5_000}, &rc); err != nil {
			return err
		}
		for _, t := range rc.Tokens {
			got, err := m.LoadVoucher(now, t.Voucher, meter.FromRemote)
			if err != nil || got.Status != meter.Loaded {
				return fmt.Errorf("meter %d refused its sold voucher: %+v %v", id, got, err)
			}
			m.sold += got.Amount
			m.receipts = append(m.receipts, got)
		}
		if err := m.report(ctx, now); err != nil {
			return err
		}
	}
	sold, err := pendingDownlinks(ctx, hl, ids)
	if err != nil {
		return err
	}
	for _, id := range ids {
		for _, rcpt := range meters[id].receipts {
			if err := meters[id].send(ctx, mqttlink.AckOf(rcpt)); err != nil {
				return err
			}
		}
	}
	// The acknowledgements close the deliveries after revenue protection
	// has seen each meter's frames, so an empty pending list means the
	// honest cycle has been judged.
	left := sold
	for deadline := time.Now().Add(settleTimeout); left > 0 && time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if left, err = pendingDownlinks(ctx, hl, ids); err != nil {
			return err
		}
	}
	honest, err := hl.alerts(ctx, protect.RuleUnsoldCredit)
	if err != nil {
		return err
	}

	// The attack: credit nobody sold reaches two meters from a card.
	// The ghost vend is signed by the utility's own credit key (an insider
	// at the KMS, or a leaked key) with no purchase behind it. On the other
	// meter a leaked management key installs the attacker's own credit key
	// (a key-change voucher, as the meter's key rotation takes it), and the
	// attacker signs credit with it. Neither meter acknowledges anything
	// upstream: the card receipts stay on the card.
	now = now.Add(5 * time.Minute)
	creditKey, err := keys.VoucherSigner(ctx, hl.h.KMS(), voucher.KindCredit)
	if err != nil {
		return err
	}
	managementKey, err := keys.VoucherSigner(ctx, hl.h.KMS(), voucher.KindKeyChange)
	if err != nil {
		return err
	}
	load := func(id uint64, v voucher.Voucher, s crypto.Signer) error {
		m := meters[id]
		v.MeterID, v.Sequence = id, m.Snapshot().VoucherSeq+1
		v.Issued, v.Expires = now.Add(-time.Hour), now.Add(30*24*time.Hour)
		b, err := voucher.Sign(&v, s)
		if err != nil {
			return err
		}
		got, err := m.LoadVoucher(now, b, meter.FromCard)
		if err != nil || got.Status != meter.Loaded {
			return fmt.Errorf("meter %d did not load the attacker's %v voucher (the attack needs it loaded): %+v %v", id, v.Kind, got, err)
		}
		return nil
	}
	credit := voucher.Voucher{Kind: voucher.KindCredit, Unit: voucher.UnitLitres, Quantity: unsoldExtra}
	if err := load(unsoldGhost, credit, creditKey); err != nil {
		return err
	}
	install := voucher.Voucher{Kind: voucher.KindKeyChange, Slot: voucher.RoleCredit, NewKey: attacker.Public().(ed25519.PublicKey)}
	if err := load(unsoldRogue, install, managementKey); err != nil {
		return err
	}
	if err := load(unsoldRogue, credit, attacker); err != nil {
		return err
	}

	// The next reporting cycle: the control first, then the attacked
	// meters one at a time, each timed from its report to its alert.
	now = now.Add(reportEvery)
	if err := meters[unsoldControl].report(ctx, now); err != nil {
		return err
	}
	type found struct {
		alert   protect.AlertView
		ok      bool
		latency time.Duration
		details struct {
			Loaded int64 `json:"loaded_litres"`
			Vended int64 `json:"vended_litres"`
			Excess int64 `json:"excess_litres"`
		}
	}
	res := map[uint64]*found{}
	for _, id := range []uint64{unsoldGhost, unsoldRogue} {
		start := time.Now()
		if err := meters[id].report(ctx, now); err != nil {
			return err
		}
		a, ok, err := hl.alertFor(ctx, protect.RuleUnsoldCredit, id, settleTimeout)
		if err != nil {
			return err
		}
		f := &found{alert: a, ok: ok, latency: time.Since(start)}
		if ok {
			json.Unmarshal(a.Details, &f.details)
		}
		res[id] = f
	}
	// One worker stores and judges the frames in arrival order, so once
	// the attacked meters' alerts exist the control's report, published
	// before them, has been judged too.
	all, err := hl.alerts(ctx, protect.RuleUnsoldCredit)
	if err != nil {
		return err
	}
	var alerted []string
	for _, a := range all {
		alerted = append(alerted, strings.TrimPrefix(a.Subject, "meter:"))
	}
	slices.Sort(alerted)
	control := slices.Contains(alerted, strconv.FormatUint(unsoldControl, 10))

	r.Observe("meters reporting what was sold", len(honest) == 0 && sold == len(ids) && left == 0,
		"3 AMI meters registered through the API, each sold credit by the vending point (%d, %d, %d L), loaded it and reported: %d remote top-ups pending; acknowledged: %d pending; %d unsold-credit alerts",
		meters[unsoldGhost].sold, meters[unsoldRogue].sold, meters[unsoldControl].sold, sold, left, len(honest))
	for _, c := range []struct {
		id   uint64
		name string
		how  string
	}{
		{unsoldGhost, "ghost-vended credit", "a voucher signed by the utility's own credit key with no purchase behind it (ghost vending, or a leaked key), loaded from a card"},
		{unsoldRogue, "credit under the attacker's own key", "a key-change voucher under a leaked management key made it trust the attacker's credit key, and a voucher he signed with it was loaded from a card"},
	} {
		f := res[c.id]
		m := meters[c.id]
		if f.ok {
			r.Measure(fmt.Sprintf("alert_ms_%d", c.id), float64(f.latency.Microseconds())/1000)
		}
		r.Observe(c.name, f.ok && f.details.Excess == unsoldExtra && f.details.Vended == m.sold,
			"meter %d, sold %d L: %s, %d L, no acknowledgement upstream; its next reading reports %d L loaded: %s alert for meter %d: %s (loaded %d, vended %d, excess %d L), visible to a supervisor %s after that reading was published, on the first report after the load (reporting period %s)",
			c.id, m.sold, c.how, unsoldExtra, m.Snapshot().Loaded, protect.RuleUnsoldCredit, c.id,
			either(f.ok, f.alert.Severity+" "+f.alert.State, "NOT RAISED"), f.details.Loaded, f.details.Vended, f.details.Excess,
			f.latency.Round(time.Millisecond), reportEvery)
	}
	r.Observe("control meter", !control && len(alerted) == 2,
		"meter %d, which reported exactly the %d L it was sold in the same cycle, before the attacked meters: %s; unsold-credit alerts exist for %v",
		unsoldControl, meters[unsoldControl].sold, either(control, "ALERTED", "no alert"), alerted)
	r.Measure("unsold_alerts", float64(len(all)))
	return nil
}

// pendingDownlinks counts the remote top-ups of the meters not yet
// acknowledged (GET /downlinks/pending).
func pendingDownlinks(ctx context.Context, hl *headendLab, ids []uint64) (int, error) {
	var l struct {
		Downlinks []struct {
			Meter string `json:"meter"`
		} `json:"downlinks"`
	}
	if _, err := hl.clients[auth.Supervisor].Do(ctx, "GET", "/downlinks/pending", nil, &l); err != nil {
		return 0, err
	}
	n := 0
	for _, d := range l.Downlinks {
		for _, id := range ids {
			if d.Meter == strconv.FormatUint(id, 10) {
				n++
			}
		}
	}
	return n, nil
}
