package protect

import (
	"fmt"
	"slices"
	"time"

	"sluice/store"
	"sluice/telemetry/frame"
)

// Rule names, the alerts' rule field.
const (
	RuleUnsoldCredit    = "unsold-credit"
	RuleFlowWhileClosed = "flow-while-closed"
	RuleReverseFlow     = "reverse-flow"
	RuleTamperMagnet    = "tamper-magnet"
	RuleTamperCover     = "tamper-cover"
	RuleTokenGuessing   = "token-guessing"
	RuleVoucherRejected = "voucher-rejected"
	RuleSilent          = "silent"
	RuleBypassOwn       = "bypass-own-history"
	RuleBypassArea      = "bypass-neighbours"
	RuleCounterReuse    = "counter-reuse"
	RuleDefaultKey      = "wmbus-default-key"
)

// Thresholds tune the rules (docs/revenue-protection.md). The zero value of
// a field means its default.
type Thresholds struct {
	// UnsoldCreditLitres is the credit a meter may report loaded beyond
	// what was vended for it before it is an alert (meters delivered with
	// factory credit). Default 0: any excess.
	UnsoldCreditLitres int64
	// FlowWhileClosedLitres is the forward-register growth between two
	// readings with the valve closed that counts as flow. Default 5.
	FlowWhileClosedLitres int64
	// ReverseLitres is the reverse-register growth between two readings
	// that counts as reverse flow. Default 10.
	ReverseLitres int64
	// TokenRejections within TokenWindow make a guessing alert.
	// Defaults 5 in 24 hours.
	TokenRejections int
	TokenWindow     time.Duration
	// Silence is how long a meter may go without any frame. Default 26h
	// (a daily reporter with two hours' grace).
	Silence time.Duration
	// BypassWindow is the recent period compared against BypassHistory
	// before it. Defaults 7 and 28 days.
	BypassWindow  time.Duration
	BypassHistory time.Duration
	// BypassOwnPercent: recent daily use below this share of the meter's
	// own history. Default 30.
	BypassOwnPercent int64
	// BypassAreaPercent: recent daily use below this share of the median
	// of its area. Default 20.
	BypassAreaPercent int64
	// BypassMinDailyLitres: histories (own or area median) below this
	// are too small to judge. Default 50.
	BypassMinDailyLitres int64
	// BypassMinNeighbours: areas with fewer meters are not judged.
	// Default 5.
	BypassMinNeighbours int
	// Repeat is how often an alert still firing is refreshed (its count
	// and last time). Default 1 hour.
	Repeat time.Duration
}

func (t Thresholds) withDefaults() Thresholds {
	def := func(v *int64, d int64) {
		if *v == 0 {
			*v = d
		}
	}
	def(&t.FlowWhileClosedLitres, 5)
	def(&t.ReverseLitres, 10)
	def(&t.BypassOwnPercent, 30)
	def(&t.BypassAreaPercent, 20)
	def(&t.BypassMinDailyLitres, 50)
	if t.TokenRejections == 0 {
		t.TokenRejections = 5
	}
	if t.TokenWindow == 0 {
		t.TokenWindow = 24 * time.Hour
	}
	if t.Silence == 0 {
		t.Silence = 26 * time.Hour
	}
	if t.BypassWindow == 0 {
		t.BypassWindow = 7 * 24 * time.Hour
	}
	if t.BypassHistory == 0 {
		t.BypassHistory = 28 * 24 * time.Hour
	}
	if t.BypassMinNeighbours == 0 {
		t.BypassMinNeighbours = 5
	}
	if t.Repeat == 0 {
		t.Repeat = time.Hour
	}
	return t
}

// Finding is one rule firing for one meter.
type Finding struct {
	Rule     string
	Severity string
	Summary  string
	Details  map[string]any
}

// State is what the rules remember of one meter between its frames.
type State struct {
	Seen      bool
	Forward   uint64
	Reverse   uint64
	Status    frame.Status
	Loaded    uint64
	Unit      frame.Unit
	Rejection []time.Time // recent STS token rejections (CRC), oldest first
}

// Reading applies the per-reading rules: flow with the valve closed,
// reverse flow, latched tamper flags. It returns the meter's next state.
// Unsold credit needs the vended total from the ledger: see Unsold.
func Reading(th Thresholds, s State, number string, r frame.Reading) (State, []Finding) {
	th = th.withDefaults()
	var out []Finding
	if r.Status&frame.TamperMagnet != 0 {
		out = append(out, Finding{RuleTamperMagnet, store.SeverityWarning,
			fmt.Sprintf("meter %s reports a magnet on its sensor: it under-registers while it is there", number), nil})
	}
	if r.Status&frame.TamperCover != 0 {
		out = append(out, Finding{RuleTamperCover, store.SeverityWarning,
			fmt.Sprintf("meter %s reports its cover opened", number), nil})
	}
	reverse := r.Status&frame.ReverseFlow != 0
	var revGrowth, fwdGrowth int64
	if s.Seen {
		if r.Reverse > s.Reverse {
			revGrowth = int64(r.Reverse - s.Reverse)
		}
		if r.Forward > s.Forward {
			fwdGrowth = int64(r.Forward - s.Forward)
		}
	}
	if reverse || revGrowth >= th.ReverseLitres {
		out = append(out, Finding{RuleReverseFlow, store.SeverityWarning,
			fmt.Sprintf("meter %s registered reverse flow (%d L since the last reading): a turned meter winds its register back", number, revGrowth),
			map[string]any{"reverse_litres": revGrowth, "status_flag": reverse}})
	}
	// Flow counts as "while closed" only when the valve was closed at both
	// ends of the interval, so water drawn before a closing does not fire.
	if s.Seen && s.Status&frame.ValveClosed != 0 && r.Status&frame.ValveClosed != 0 && fwdGrowth >= th.FlowWhileClosedLitres {
		out = append(out, Finding{RuleFlowWhileClosed, store.SeverityCritical,
			fmt.Sprintf("meter %s registered %d L with its valve closed: the valve is bypassed or forced", number, fwdGrowth),
			map[string]any{"litres": fwdGrowth}})
	}
	s.Seen, s.Forward, s.Reverse, s.Status, s.Unit = true, r.Forward, r.Reverse, r.Status, r.Unit
	return s, out
}

// Unsold compares the credit a meter reports as loaded since manufacture
// against the credit vended for it (the ledger's credit:<meter> memo
// account, litres). More loaded than sold means credit that did not come
// from a sale: a forged card or token, or a compromised key.
func Unsold(th Thresholds, number string, unit frame.Unit, loaded uint64, vended int64) (Finding, bool) {
	th = th.withDefaults()
	if unit != frame.UnitLitres {
		return Finding{}, false // money meters are reconciled in money; not compared here
	}
	excess := int64(loaded) - vended
	if excess <= th.UnsoldCreditLitres {
		return Finding{}, false
	}
	return Finding{RuleUnsoldCredit, store.SeverityCritical,
		fmt.Sprintf("meter %s reports %d L loaded, %d L were vended: %d L nobody sold (forged card or token, or a compromised key: change the meter's keys)",
			number, loaded, vended, excess),
		map[string]any{"loaded_litres": loaded, "vended_litres": vended, "excess_litres": excess, "suggest": "key-change"}}, true
}

// Event kinds and reasons of docs/telemetry.md that rules read.
const (
	evTokenRejected   = 2
	evTamper          = 9
	evFlowWhileClosed = 11
	evLockout         = 13
	reasonCRC         = 2
	tamperMagnet      = 1
	tamperCover       = 2
	tamperReverse     = 4
)

// Events applies the rules to logged events: tamper, flow while closed,
// and STS token rejections (a CRC failure is what a guessing attack
// produces; a keypad lockout means the meter itself saw it).
func Events(th Thresholds, s State, number string, es []frame.Event) (State, []Finding) {
	th = th.withDefaults()
	var out []Finding
	for _, e := range es {
		switch e.Kind {
		case evTamper:
			if e.Value&tamperMagnet != 0 {
				out = append(out, Finding{RuleTamperMagnet, store.SeverityWarning, fmt.Sprintf("meter %s logged a magnet on its sensor", number), nil})
			}
			if e.Value&tamperCover != 0 {
				out = append(out, Finding{RuleTamperCover, store.SeverityWarning, fmt.Sprintf("meter %s logged its cover opened", number), nil})
			}
			if e.Value&tamperReverse != 0 {
				out = append(out, Finding{RuleReverseFlow, store.SeverityWarning, fmt.Sprintf("meter %s logged reverse flow", number), nil})
			}
		case evFlowWhileClosed:
			out = append(out, Finding{RuleFlowWhileClosed, store.SeverityCritical,
				fmt.Sprintf("meter %s logged %d L with its valve closed", number, e.Value), map[string]any{"litres": e.Value}})
		case evLockout:
			out = append(out, Finding{RuleTokenGuessing, store.SeverityCritical,
				fmt.Sprintf("meter %s locked its keypad after repeated bad tokens (%d s)", number, e.Value), map[string]any{"lockout_seconds": e.Value}})
		case evTokenRejected:
			if e.Reason != reasonCRC {
				continue
			}
			s.Rejection = append(s.Rejection, e.Time)
		}
	}
	if len(s.Rejection) > 0 {
		latest := slices.MaxFunc(s.Rejection, func(a, b time.Time) int { return a.Compare(b) })
		s.Rejection = slices.DeleteFunc(s.Rejection, func(t time.Time) bool { return latest.Sub(t) >= th.TokenWindow })
		if len(s.Rejection) >= th.TokenRejections {
			out = append(out, Finding{RuleTokenGuessing, store.SeverityCritical,
				fmt.Sprintf("meter %s rejected %d tokens for a bad CRC within %s: someone is guessing tokens", number, len(s.Rejection), th.TokenWindow),
				map[string]any{"rejections": len(s.Rejection)}})
		}
	}
	return s, out
}

// Ack applies the rules to a token or voucher acknowledgement.
func Ack(number string, a frame.Ack) []Finding {
	if a.Subject == frame.SubjectVoucher && a.Result == frame.Rejected {
		return []Finding{{RuleVoucherRejected, store.SeverityWarning,
			fmt.Sprintf("meter %s rejected voucher %d (reason %d): the customer paid for credit the meter refused", number, a.Ref, a.Reason),
			map[string]any{"voucher_seq": a.Ref, "reason": a.Reason}}}
	}
	return nil
}

// Silent reports a meter that has not been heard from for th.Silence.
func Silent(th Thresholds, now time.Time, a store.MeterActivity) (Finding, bool) {
	th = th.withDefaults()
	if a.LastFrameAt.IsZero() || now.Sub(a.LastFrameAt) < th.Silence {
		return Finding{}, false
	}
	return Finding{RuleSilent, store.SeverityWarning,
		fmt.Sprintf("meter %s has not reported since %s: broken, out of battery, shielded or removed", a.Number, a.LastFrameAt.Format(time.RFC3339)),
		map[string]any{"last_frame_at": a.LastFrameAt, "silent_hours": int64(now.Sub(a.LastFrameAt) / time.Hour)}}, true
}

// Bypass compares each meter's recent daily consumption against its own
// history and against the median of its area. recent and history are the
// Consumption over th.BypassWindow and th.BypassHistory; numbers maps meter
// IDs to their numbers for the summaries.
func Bypass(th Thresholds, recent, history []store.Consumption, numbers map[int64]string) map[int64][]Finding {
	th = th.withDefaults()
	days := func(d time.Duration) int64 { return max(int64(d/(24*time.Hour)), 1) }
	rd, hd := days(th.BypassWindow), days(th.BypassHistory)
	past := make(map[int64]int64)
	for _, c := range history {
		if c.Readings >= 2 {
			past[c.MeterID] = c.Litres / hd
		}
	}
	byArea := make(map[string][]int64)
	for _, c := range recent {
		if c.Readings >= 2 && c.Area != "" {
			byArea[c.Area] = append(byArea[c.Area], c.Litres/rd)
		}
	}
	median := make(map[string]int64)
	for area, v := range byArea {
		if len(v) >= th.BypassMinNeighbours {
			slices.Sort(v)
			median[area] = v[len(v)/2]
		}
	}
	out := make(map[int64][]Finding)
	for _, c := range recent {
		if c.Readings < 2 {
			continue
		}
		now := c.Litres / rd
		if p, ok := past[c.MeterID]; ok && p >= th.BypassMinDailyLitres && now*100 < p*th.BypassOwnPercent {
			out[c.MeterID] = append(out[c.MeterID], Finding{RuleBypassOwn, store.SeverityWarning,
				fmt.Sprintf("meter %s registers %d L a day, against %d L a day before: a bypass, a magnet or a vacancy", numbers[c.MeterID], now, p),
				map[string]any{"recent_litres_per_day": now, "history_litres_per_day": p}})
		}
		if m, ok := median[c.Area]; ok && m >= th.BypassMinDailyLitres && now*100 < m*th.BypassAreaPercent {
			out[c.MeterID] = append(out[c.MeterID], Finding{RuleBypassArea, store.SeverityInfo,
				fmt.Sprintf("meter %s registers %d L a day; its neighbours in %s a median of %d L", numbers[c.MeterID], now, c.Area, m),
				map[string]any{"recent_litres_per_day": now, "area_median_litres_per_day": m, "area": c.Area}})
		}
	}
	return out
}
