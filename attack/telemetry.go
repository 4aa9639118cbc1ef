package attack

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"sluice/auth"
	"sluice/client"
	"sluice/keys"
	"sluice/kms"
	"sluice/protect"
	"sluice/telemetry/frame"
	"sluice/telemetry/ingest"
	"sluice/telemetry/mqttlink"
	"sluice/telemetry/replay"
	"sluice/telemetry/topic"
	"sluice/vend"
)

// The telemetry attacks (11 and 11b) play against a running head-end
// (startHeadend): its embedded MQTT broker with per-meter credentials, its
// ingest and its revenue protection, reached only the ways a meter or an
// attacker reaches them, over MQTT and the HTTP API. What they measure comes
// from the head-end's own outputs: the sluice_telemetry_frames_total counters
// on /metrics, the readings table, and GET /api/v1/alerts.

// registerAMI registers an AMI meter for the lab's customer through the API.
func (hl *headendLab) registerAMI(ctx context.Context, id uint64) error {
	_, err := hl.clients[auth.Admin].CreateMeter(ctx, vend.NewMeter{Number: strconv.FormatUint(id, 10), Kind: "ami", Customer: "ACC-LAB-1", Tariff: "DOM-2026"})
	return err
}

// telemetryKey is meter id's telemetry key as the head-end's KMS derives it
// (key version 1, the version a newly registered meter has).
func (hl *headendLab) telemetryKey(ctx context.Context, id uint64) ([16]byte, error) {
	k, _, err := keys.MeterKey(ctx, hl.h.KMS(), kms.Ref(keys.MeterRoot), id, keys.Telemetry, 1)
	if err != nil {
		return [16]byte{}, err
	}
	return [16]byte(k), nil
}

var clientSeq atomic.Uint64

// dial connects to the head-end's broker as username; meter, when not 0,
// also subscribes to that meter's downlinks.
func (hl *headendLab) dial(ctx context.Context, username, password string, meter uint64) (*mqttlink.Conn, error) {
	if hl.mqtt == "" {
		return nil, errors.New("the head-end did not report its MQTT broker's address")
	}
	return mqttlink.Dial(ctx, mqttlink.DialConfig{URL: "mqtt://" + hl.mqtt, Username: username, Password: password,
		ClientID: fmt.Sprintf("attack-lab-%d", clientSeq.Add(1)), Meter: meter})
}

// meterConn is meter id's own MQTT connection: its number and the password
// its telemetry key gives (ingest.MQTTPassword). It publishes only: the lab
// hands meters their vouchers itself.
func (hl *headendLab) meterConn(ctx context.Context, id uint64) (*mqttlink.Conn, error) {
	k, err := hl.telemetryKey(ctx, id)
	if err != nil {
		return nil, err
	}
	pw, err := ingest.MQTTPassword(k[:])
	if err != nil {
		return nil, err
	}
	return hl.dial(ctx, mqttlink.Username(id), pw, 0)
}

var framesMetric = regexp.MustCompile(`^sluice_telemetry_frames_total\{result="([a-z_]+)"\} ([0-9.e+]+)$`)

// frameCounts scrapes the ingest's counters from the head-end's /metrics.
func (hl *headendLab) frameCounts(ctx context.Context) (map[string]int64, error) {
	b, err := client.New(hl.url).Metrics(ctx)
	if err != nil {
		return nil, err
	}
	out := map[string]int64{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if m := framesMetric.FindStringSubmatch(sc.Text()); m != nil {
			v, err := strconv.ParseFloat(m[2], 64)
			if err != nil {
				return nil, fmt.Errorf("metric %q: %w", sc.Text(), err)
			}
			out[m[1]] = int64(v)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("/metrics has no sluice_telemetry_frames_total")
	}
	return out, sc.Err()
}

// delta is after - before, by result, leaving out results that did not move.
func delta(before, after map[string]int64) map[string]int64 {
	d := map[string]int64{}
	for k, v := range after {
		if v != before[k] {
			d[k] = v - before[k]
		}
	}
	return d
}

// counts prints counter deltas in a stable order: "forged 56, stored 1".
func counts(m map[string]int64) string {
	if len(m) == 0 {
		return "none"
	}
	var b strings.Builder
	for i, k := range slices.Sorted(maps.Keys(m)) {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s %d", k, m[k])
	}
	return b.String()
}

func sum(m map[string]int64) int64 {
	var n int64
	for _, v := range m {
		n += v
	}
	return n
}

// readings counts the rows the ingest stored in the readings table for a
// meter (the head-end has no readings route; the table is what billing and
// the console read).
func (hl *headendLab) readings(ctx context.Context, id uint64) (int64, error) {
	var n int64
	err := hl.h.Store().SQL().QueryRowContext(ctx,
		`SELECT count(*) FROM readings WHERE meter_id = (SELECT id FROM meters WHERE number = ?)`, strconv.FormatUint(id, 10)).Scan(&n)
	return n, err
}

// ingestState is the ingest's frame counters and meter id's stored
// readings: what every telemetry case compares before and after.
func (hl *headendLab) ingestState(ctx context.Context, id uint64) (map[string]int64, int64, error) {
	counts, err := hl.frameCounts(ctx)
	if err != nil {
		return nil, 0, err
	}
	rows, err := hl.readings(ctx, id)
	return counts, rows, err
}

// alerts lists the alerts of a rule as a supervisor sees them through the
// API.
func (hl *headendLab) alerts(ctx context.Context, rule string) ([]protect.AlertView, error) {
	var l protect.AlertList
	_, err := hl.clients[auth.Supervisor].Do(ctx, "GET", "/alerts?rule="+url.QueryEscape(rule)+"&limit=1000", nil, &l)
	return l.Alerts, err
}

// settleTimeout bounds the wait for the head-end to act on what it was sent
// (an alert raised, a delivery closed). It is generous because the lab runs
// in CI beside other test binaries on two cores, and a verdict must come
// from what the head-end did, not from how busy the machine was: a wait
// that ends early on a loaded machine would report a defence as broken.
// Waits poll, so a quiet run takes milliseconds.
const settleTimeout = 60 * time.Second

// alertFor returns the alert of rule whose subject is meter id, waiting for
// it up to wait (revenue protection runs right after the ingest's commit,
// which is after the frame's PUBACK).
func (hl *headendLab) alertFor(ctx context.Context, rule string, id uint64, wait time.Duration) (protect.AlertView, bool, error) {
	subject := "meter:" + strconv.FormatUint(id, 10)
	for deadline := time.Now().Add(wait); ; {
		as, err := hl.alerts(ctx, rule)
		if err != nil {
			return protect.AlertView{}, false, err
		}
		for _, a := range as {
			if a.Subject == subject {
				return a, true, nil
			}
		}
		if time.Now().After(deadline) {
			return protect.AlertView{}, false, nil
		}
		select {
		case <-ctx.Done():
			return protect.AlertView{}, false, ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// Meters of attack 11: A and B are customers' meters, C is the attacker's
// own (registered, its key dumped as in attack 5).
const (
	telA, telB, telC = 110_000_001, 110_000_002, 110_000_003
)

func telemetryFrames() Attack {
	return Attack{
		ID:       "11",
		Name:     "forged, replayed and reordered telemetry frames",
		Weakness: "unauthenticated meter reports: forge readings (hide consumption, fake credit), replay yesterday's, re-order them to confuse billing, or speak for another meter on a shared broker",
		Defence:  "per-meter broker credentials with an ACL of the meter's own topics; every frame MACed (AES-CMAC, per-meter telemetry key from the KMS) and checked before parsing, its meter matched to its topic; per-meter frame counter with a 64-frame replay window; frames stored once under (meter, counter); two frames under one counter raise a counter-reuse alert",
		Play: func(ctx context.Context, lab *Lab, r *Recorder) error {
			hl, err := startHeadend(ctx, lab)
			if err != nil {
				return err
			}
			defer hl.stop()
			return playTelemetry(ctx, lab, hl, r)
		},
	}
}

func playTelemetry(ctx context.Context, lab *Lab, hl *headendLab, r *Recorder) error {
	for _, id := range []uint64{telA, telB, telC} {
		if err := hl.registerAMI(ctx, id); err != nil {
			return fmt.Errorf("register meter %d: %w", id, err)
		}
	}
	// Meter A is a reference meter with the keys the head-end's KMS
	// derived for it: its frame counter is its journal's.
	a, err := lab.NewMeter(ctx, telA, MeterSpec{KM: hl.h.KMS()})
	if err != nil {
		return err
	}
	ka, err := frame.NewKey(a.Keys.Telemetry[:])
	if err != nil {
		return err
	}
	rawC, err := hl.telemetryKey(ctx, telC)
	if err != nil {
		return err
	}
	kc, err := frame.NewKey(rawC[:])
	if err != nil {
		return err
	}
	pwC, err := ingest.MQTTPassword(rawC[:])
	if err != nil {
		return err
	}
	connA, err := hl.meterConn(ctx, telA)
	if err != nil {
		return fmt.Errorf("meter A's own login: %w", err)
	}
	defer connA.Close()
	connC, err := hl.meterConn(ctx, telC)
	if err != nil {
		return fmt.Errorf("the attacker's meter's login: %w", err)
	}
	defer connC.Close()

	now := headendNow
	// seal is meter A's side: its next frame counter, its key.
	seal := func(credit int64) ([]byte, error) {
		c, err := a.FrameCounter()
		if err != nil {
			return nil, err
		}
		now = now.Add(15 * time.Minute)
		return frame.Seal(nil, ka, &frame.Frame{Kind: frame.KindReading, Meter: telA, Counter: c, Time: now,
			Reading: frame.Reading{Forward: uint64(c) * 10, Credit: credit, Loaded: 1000, Unit: frame.UnitLitres}})
	}
	readingA := topic.ForMeter(telA, topic.Reading)
	// publish sends on conn and requires the PUBACK: the embedded broker
	// sends it only once the ingest has judged (and, if new, stored) the
	// frame, so the counters are final when it returns.
	publish := func(c *mqttlink.Conn, t string, b []byte) error {
		if err := c.Publish(ctx, t, b); err != nil {
			return fmt.Errorf("publish %s: %w", t, err)
		}
		return nil
	}

	var genuine [][]byte
	for i := 0; i < 10; i++ {
		f, err := seal(900)
		if err != nil {
			return err
		}
		genuine = append(genuine, f)
		if err := publish(connA, readingA, f); err != nil {
			return err
		}
	}
	base, rowsA, err := hl.ingestState(ctx, telA)
	if err != nil {
		return err
	}
	if base["stored"] != int64(len(genuine)) || rowsA != int64(len(genuine)) {
		return fmt.Errorf("the genuine frames were not stored: counters %v, %d readings", base, rowsA)
	}
	rnd := lab.Rand("attack 11 telemetry")

	// 1. Logging in to the broker without the meter's credentials.
	wrong := make([]byte, 16)
	rnd.Read(wrong)
	logins := []struct{ what, user, pw string }{
		{"no credentials", "", ""},
		{"meter A's number, a random password", mqttlink.Username(telA), hex.EncodeToString(wrong)},
		{"meter A's number, meter C's password", mqttlink.Username(telA), pwC},
		{"meter A's number with a leading zero, meter C's password", "0" + mqttlink.Username(telA), pwC},
		{"meter C's password for an unregistered number", "110000099", pwC},
		{"a gateway-like name, a random password", "gw-lab-1", hex.EncodeToString(wrong)},
	}
	admitted := 0
	var let []string
	for _, l := range logins {
		c, err := hl.dial(ctx, l.user, l.pw, 0)
		if err == nil {
			admitted++
			let = append(let, l.what)
			c.Close()
		}
	}
	// Eavesdropping: the attacker's meter asks for meter A's downlinks.
	eaves, err := hl.dial(ctx, mqttlink.Username(telC), pwC, telA)
	subscribed := err == nil
	if subscribed {
		eaves.Close()
	}
	r.Measure("broker_logins_refused", float64(len(logins)-admitted))
	r.Observe("broker login without the meter's credentials", admitted == 0 && !subscribed,
		"%d logins to the embedded broker (no credentials; meter A's number with a random password, with meter C's password, and with a leading zero; C's password for an unregistered number; a gateway-like name): %d admitted %v; the attacker's own meter C subscribing to meter A's downlinks: %s",
		len(logins), admitted, let, either(!subscribed, "refused", "SUBSCRIBED"))

	// 2. The attacker's own meter C publishing on other meters' topics.
	spoof, err := frame.Seal(nil, kc, &frame.Frame{Kind: frame.KindReading, Meter: telA, Counter: 1 << 20, Time: now,
		Reading: frame.Reading{Credit: 1_000_000, Loaded: 1_000_000, Unit: frame.UnitLitres}})
	if err != nil {
		return err
	}
	foreign := []struct {
		topic string
		b     []byte
	}{
		{readingA, genuine[len(genuine)-1]},                // A's genuine frame, replayed from C's connection
		{readingA, spoof},                                  // a reading for A under C's key
		{topic.ForMeter(telA, topic.Event), spoof},         // ... on A's event topic
		{topic.ForMeter(telA, topic.Ack), spoof},           // ... on A's ack topic
		{topic.ForMeter(telB, topic.Reading), spoof},       // on B's
		{topic.ForMeter(telA, topic.Voucher), genuine[0]},  // into A's downlink (a fake remote top-up)
		{"sluice/v1/m/0110000001/up/reading", spoof},       // A's number with a leading zero
		{"sluice/v1/wmbus/gw-lab-1", []byte("2A442D2C\n")}, // a gateway's topic
	}
	before, err := hl.frameCounts(ctx)
	if err != nil {
		return err
	}
	refused, accepted := 0, 0
	var reasons []string
	for _, f := range foreign {
		err := connC.Publish(ctx, f.topic, f.b)
		switch {
		case err == nil:
			accepted++
		case refusal(err) != "":
			refused++
			if why := refusal(err); !slices.Contains(reasons, why) {
				reasons = append(reasons, why)
			}
		default:
			return err
		}
	}
	// The connection is still the attacker's to use: his own meter's
	// reading on his own topic is stored, so the refusals above were the
	// broker's ACL deciding message by message.
	own, err := frame.Seal(nil, kc, &frame.Frame{Kind: frame.KindReading, Meter: telC, Counter: 1, Time: now,
		Reading: frame.Reading{Loaded: 0, Unit: frame.UnitLitres}})
	if err != nil {
		return err
	}
	if err := publish(connC, topic.ForMeter(telC, topic.Reading), own); err != nil {
		return err
	}
	after, rows, err := hl.ingestState(ctx, telA)
	if err != nil {
		return err
	}
	moved := delta(before, after)
	r.Measure("foreign_topic_publishes_refused", float64(refused))
	r.Observe("publishing on another meter's topic", refused == len(foreign) && moved["stored"] == 1 && sum(moved) == 1 && rows == rowsA,
		"the attacker logged in as his own meter C published %d messages on topics not his (A's genuine frame and a reading for A under C's key on A's reading topic, on A's event and ack topics, on B's reading topic, into A's downlink, on A's number with a leading zero, on a gateway's topic): %d refused by the broker (PUBACK: %s), %d taken; his own reading on his own topic afterwards: %s; ingest counters moved: %s; meter A's readings %d -> %d",
		len(foreign), refused, strings.Join(reasons, ", "), accepted, either(moved["stored"] == 1, "stored", "NOT STORED"), counts(moved), rowsA, rows)

	// 3. Forgeries, with meter A's own credentials (assume the broker
	// password leaked: it is derived from the key, but the MAC is the
	// boundary) and with the attacker's.
	before = after
	forged := 0
	for i := 0; i < 1000; i++ {
		f := make([]byte, 20+i%200)
		rnd.Read(f)
		forged++
		if err := publish(connA, readingA, f); err != nil {
			return err
		}
	}
	last := genuine[len(genuine)-1]
	for i := range last {
		f := append([]byte(nil), last...)
		f[i] ^= 0x01
		forged++
		if err := publish(connA, readingA, f); err != nil {
			return err
		}
	}
	var fa frame.Frame
	if err := frame.Open(ka, last, &fa); err != nil {
		return err
	}
	guess := make([]byte, 16)
	rnd.Read(guess)
	gk, err := frame.NewKey(guess)
	if err != nil {
		return err
	}
	up := fa
	up.Counter += 1000
	up.Reading.Credit, up.Reading.Loaded = 1_000_000, 1_000_000
	underGuess, err := frame.Seal(nil, gk, &up)
	if err != nil {
		return err
	}
	underC, err := frame.Seal(nil, kc, &up) // another meter's (the attacker's own) key
	if err != nil {
		return err
	}
	asB := up
	asB.Meter = telB
	bUnderA, err := frame.Seal(nil, ka, &asB) // A's key speaking for B, on A's topic
	if err != nil {
		return err
	}
	crafted := []struct {
		c     *mqttlink.Conn
		topic string
		b     []byte
	}{
		{connA, readingA, underGuess},
		{connA, readingA, underC},
		{connA, readingA, bUnderA},
		{connA, topic.ForMeter(telA, topic.Event), last},         // a reading on the event topic
		{connC, topic.ForMeter(telC, topic.Reading), spoof},      // C's connection, C's topic, a frame naming A
		{connC, topic.ForMeter(telC, topic.Reading), underGuess}, // ... naming A under a guessed key
	}
	for _, f := range crafted {
		forged++
		if err := publish(f.c, f.topic, f.b); err != nil {
			return err
		}
	}
	after, rows, err = hl.ingestState(ctx, telA)
	if err != nil {
		return err
	}
	rowsB, err := hl.readings(ctx, telB)
	if err != nil {
		return err
	}
	moved = delta(before, after)
	taken := moved["stored"] + moved["duplicate"]
	r.Measure("forged_frames", float64(forged))
	r.Measure("forged_frames_stored", float64(taken))
	r.Observe("forged frames", taken == 0 && sum(moved) == int64(forged) && rows == rowsA && rowsB == 0,
		"%d forgeries published and acknowledged by the broker (1000 random frames and every bit-0 flip of a genuine %d-byte frame on meter A's topic with A's own credentials; a reading for A under a guessed key and under the attacker's meter C's key, a reading for B under A's key, a reading on A's event topic; frames naming A on the attacker's own topic): ingest counters: %s; %d stored or taken as duplicates; readings of A %d -> %d, of B %d",
		forged, len(last), counts(moved), taken, rowsA, rows, rowsB)

	// 4. Replays: every genuine frame again, twice, over A's connection.
	before = after
	for rep := 0; rep < 2; rep++ {
		for _, f := range genuine {
			if err := publish(connA, readingA, f); err != nil {
				return err
			}
		}
	}
	after, rows, err = hl.ingestState(ctx, telA)
	if err != nil {
		return err
	}
	moved = delta(before, after)
	r.Measure("replayed_frames", float64(2*len(genuine)))
	r.Observe("replayed frames", moved["duplicate"] == int64(2*len(genuine)) && moved["stored"] == 0 && rows == rowsA,
		"%d genuine frames re-sent twice: ingest counters: %s; readings of A %d -> %d",
		len(genuine), counts(moved), rowsA, rows)

	// 5. Reordering within the window, then below it; and a second,
	// different frame under the newest counter (a cloned meter).
	var batch [][]byte
	for i := 0; i < 20; i++ {
		f, err := seal(800)
		if err != nil {
			return err
		}
		batch = append(batch, f)
	}
	before = after
	for i := len(batch) - 1; i >= 0; i-- {
		if err := publish(connA, readingA, batch[i]); err != nil {
			return err
		}
	}
	after, err = hl.frameCounts(ctx)
	if err != nil {
		return err
	}
	reordered := delta(before, after)
	held, err := seal(750) // captured, delivered late
	if err != nil {
		return err
	}
	for i := 0; i < replay.Size+5; i++ {
		if _, err := seal(700); err != nil { // sealed, never delivered
			return err
		}
	}
	newest, err := seal(700)
	if err != nil {
		return err
	}
	if err := publish(connA, readingA, newest); err != nil {
		return err
	}
	if before, err = hl.frameCounts(ctx); err != nil {
		return err
	}
	if err := publish(connA, readingA, held); err != nil {
		return err
	}
	after, err = hl.frameCounts(ctx)
	if err != nil {
		return err
	}
	stale := delta(before, after)
	var nf frame.Frame
	if err := frame.Open(ka, newest, &nf); err != nil {
		return err
	}
	nf.Reading.Credit = 5_000_000
	clone, err := frame.Seal(nil, ka, &nf)
	if err != nil {
		return err
	}
	before = after
	if err := publish(connA, readingA, clone); err != nil {
		return err
	}
	after, err = hl.frameCounts(ctx)
	if err != nil {
		return err
	}
	reuse := delta(before, after)
	alert, raised, err := hl.alertFor(ctx, protect.RuleCounterReuse, telA, settleTimeout)
	if err != nil {
		return err
	}
	rows2, err := hl.readings(ctx, telA)
	if err != nil {
		return err
	}
	r.Measure("reordered_frames", float64(len(batch)))
	r.Observe("reordered frames", reordered["stored"] == int64(len(batch)) && sum(reordered) == int64(len(batch)) &&
		stale["out_of_window"] == 1 && sum(stale) == 1 && reuse["reused"] == 1 && sum(reuse) == 1 && raised &&
		rows2 == rows+int64(len(batch))+1,
		"%d frames delivered newest first: counters: %s; a frame held back and delivered %d counters behind the newest: %s; a different frame under the newest counter (only a key holder, e.g. a cloned meter, can make it): %s; %s alert for meter A: %s; readings of A %d -> %d (the %d reordered frames and the newest, each once)",
		len(batch), counts(reordered), replay.Size+6, counts(stale), counts(reuse), protect.RuleCounterReuse, either(raised, alert.Severity+" "+alert.State, "NONE"),
		rows, rows2, len(batch))
	return nil
}

// refusal returns why the broker refused a publish, or "" when err is not
// a refusal. mqttlink.ErrRefused is meant to say so, but paho reports a
// PUBACK reason code >= 0x80 as an error of its own, which mqttlink passes
// on wrapped, so the reason text is matched as well.
func refusal(err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, mqttlink.ErrRefused):
		return "refused"
	case strings.Contains(err.Error(), "not authorized"):
		return "not authorized"
	}
	return ""
}

// either returns yes when cond holds, else no.
func either(cond bool, yes, no string) string {
	if cond {
		return yes
	}
	return no
}
