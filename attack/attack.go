package attack

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"time"

	"sluice/meter"
)

// Outcome is the verdict on an attack or one of its cases.
type Outcome string

const (
	// Defeated: the code observed the defence stop the attack.
	Defeated Outcome = "defeated"
	// Succeeded: the code observed the attacker gain what was sought.
	Succeeded Outcome = "succeeded"
	// Pending: the target is not built yet; never counted as defeated.
	Pending Outcome = "pending"
	// Error: the attack could not be played (a component failed to start).
	Error Outcome = "error"
	// Reproduced marks a case that demonstrates a weakness on a legacy
	// configuration Sluice supports but does not recommend (DKGA02): the
	// attack working there is evidence that the lab's attack is real. It
	// never makes an attack count as defeated on its own.
	Reproduced Outcome = "reproduced"
)

// Case is one sub-attack and what was observed.
type Case struct {
	Name     string  `json:"name"`
	Outcome  Outcome `json:"outcome"`
	Evidence string  `json:"evidence"`
}

// Report is the result of one attack.
type Report struct {
	ID       string  `json:"id"`
	Name     string  `json:"name"`
	Weakness string  `json:"weakness"`
	Defence  string  `json:"defence"`
	Outcome  Outcome `json:"outcome"`
	// Evidence is the cases' evidence joined, for the table.
	Evidence string `json:"evidence"`
	Cases    []Case `json:"cases"`
	// Measurements are the figures the evidence quotes, by name.
	Measurements map[string]float64 `json:"measurements,omitempty"`
	Seed         uint64             `json:"seed"`
	Seconds      float64            `json:"seconds"`
	Error        string             `json:"error,omitempty"`
}

// Attack is one entry of the lab.
type Attack struct {
	ID       string
	Name     string
	Weakness string // the weakness of deployed systems it reproduces
	Defence  string // what Sluice does about it
	// Play runs the attack against lab's components and records cases in r.
	// An error means the attack could not be played.
	Play func(ctx context.Context, lab *Lab, r *Recorder) error
}

// Recorder collects the cases and measurements of one attack.
type Recorder struct {
	cases []Case
	m     map[string]float64
}

// Observe records a case whose verdict is the observation defended: true
// when the defence was seen to hold, false when the attacker got through.
func (r *Recorder) Observe(name string, defended bool, format string, args ...any) {
	o := Succeeded
	if defended {
		o = Defeated
	}
	r.cases = append(r.cases, Case{Name: name, Outcome: o, Evidence: fmt.Sprintf(format, args...)})
}

// Reproduced records a case that reproduces a known weakness of a legacy
// configuration; ok false means the lab failed to reproduce it, which is a
// broken harness (an error), not a defence.
func (r *Recorder) Reproduced(name string, ok bool, format string, args ...any) {
	o := Reproduced
	if !ok {
		o = Error
	}
	r.cases = append(r.cases, Case{Name: name, Outcome: o, Evidence: fmt.Sprintf(format, args...)})
}

// Pending records a case whose target does not exist yet.
func (r *Recorder) Pending(name, why string) {
	r.cases = append(r.cases, Case{Name: name, Outcome: Pending, Evidence: "PENDING: " + why})
}

// Measure records a figure the evidence quotes.
func (r *Recorder) Measure(name string, v float64) {
	if r.m == nil {
		r.m = map[string]float64{}
	}
	r.m[name] = v
}

// Options choose what a run does.
type Options struct {
	// Seed feeds every random stream; runs with one seed are repeatable.
	Seed uint64
	// Only restricts the run to these attack IDs (none: all).
	Only []string
	// PCSCReader is the PC/SC reader (a vpcd slot) the sniffing attack
	// uses; "" plays it over the in-process transport.
	PCSCReader string
	// PCSCAddr is the vpcd socket of that reader.
	PCSCAddr string
	// Weaken, if set, changes what the factory writes into every lab meter.
	// Only the lab's own tests use it: a deliberately weakened meter (no
	// keypad lockout, an attacker's key trusted) proves that the harness
	// reports "succeeded" when a defence is missing.
	Weaken func(p *meter.Provision)
	// Progress, if set, is called as each attack starts.
	Progress func(a Attack)
}

// ErrUnknownAttack reports an ID in Options.Only that names no attack.
var ErrUnknownAttack = errors.New("attack: unknown attack id")

// Attacks returns the lab's attacks in order.
func Attacks() []Attack {
	all := []Attack{
		forgedCard(), clonedCard(), sniffing(), leakedFormat(), readout(), dkga(),
		stsTokens(), guessing(), vouchers(), firmwareAttack(), telemetryFrames(), unsoldCredit(),
		headendAttack(), wmbusDefaultKey(),
	}
	sort.SliceStable(all, func(i, j int) bool { return idLess(all[i].ID, all[j].ID) })
	return all
}

// idLess orders "2" before "11" and "11" before "11b".
func idLess(a, b string) bool {
	na, sa := splitID(a)
	nb, sb := splitID(b)
	if na != nb {
		return na < nb
	}
	return sa < sb
}

func splitID(id string) (int, string) {
	n, i := 0, 0
	for i < len(id) && id[i] >= '0' && id[i] <= '9' {
		n = n*10 + int(id[i]-'0')
		i++
	}
	return n, id[i:]
}

// Run plays the selected attacks and returns their reports.
func Run(ctx context.Context, opt Options) ([]Report, error) {
	var sel []Attack
	all := Attacks()
	if len(opt.Only) == 0 {
		sel = all
	} else {
		for _, id := range opt.Only {
			found := false
			for _, a := range all {
				if strings.EqualFold(a.ID, strings.TrimSpace(id)) {
					sel = append(sel, a)
					found = true
				}
			}
			if !found {
				return nil, fmt.Errorf("%w %q", ErrUnknownAttack, id)
			}
		}
	}
	lab, err := NewLab(ctx, opt)
	if err != nil {
		return nil, err
	}
	defer lab.Close()
	reports := make([]Report, 0, len(sel))
	for _, a := range sel {
		if opt.Progress != nil {
			opt.Progress(a)
		}
		reports = append(reports, Play(ctx, lab, a))
	}
	return reports, nil
}

// Play runs one attack on lab and judges it.
func Play(ctx context.Context, lab *Lab, a Attack) Report {
	start := time.Now()
	var r Recorder
	err := func() (err error) {
		defer func() {
			if p := recover(); p != nil {
				err = fmt.Errorf("panic: %v", p)
			}
		}()
		return a.Play(ctx, lab, &r)
	}()
	rep := Report{ID: a.ID, Name: a.Name, Weakness: a.Weakness, Defence: a.Defence,
		Cases: r.cases, Measurements: r.m, Seed: lab.Seed, Seconds: time.Since(start).Seconds()}
	rep.Outcome = judge(r.cases)
	if err != nil {
		// An attack that broke off cannot count as defeated; one that
		// had already succeeded stays succeeded.
		rep.Error = err.Error()
		if rep.Outcome != Succeeded {
			rep.Outcome = Error
		}
	}
	var ev []string
	for _, c := range r.cases {
		mark := ""
		if c.Outcome == Succeeded {
			mark = " [SUCCEEDED]"
		}
		ev = append(ev, c.Name+": "+c.Evidence+mark)
	}
	if err != nil {
		ev = append(ev, "error: "+err.Error())
	}
	rep.Evidence = strings.Join(ev, "; ")
	return rep
}

// judge: one succeeded case makes the attack succeed; a pending case keeps it
// from counting as defeated; no case at all means nothing was observed.
func judge(cs []Case) Outcome {
	if len(cs) == 0 {
		return Error
	}
	out, defeated := Defeated, 0
	for _, c := range cs {
		switch c.Outcome {
		case Succeeded:
			return Succeeded
		case Error:
			out = Error
		case Pending:
			if out == Defeated {
				out = Pending
			}
		case Defeated:
			defeated++
		}
	}
	if out == Defeated && defeated == 0 {
		return Error
	}
	return out
}

// AllDefeated reports whether the run passes: no attack succeeded or
// failed to run. Pending attacks do not count as defeated, nor do they fail
// the run: their targets are not built yet.
func AllDefeated(reports []Report) bool {
	ran := 0
	for _, r := range reports {
		switch r.Outcome {
		case Succeeded, Error:
			return false
		case Defeated:
			ran++
		}
	}
	return ran > 0
}

// stream returns the deterministic random stream of one attack.
func stream(seed uint64, name string) *rand.ChaCha8 {
	h := sha256.New()
	binary.Write(h, binary.BigEndian, seed)
	h.Write([]byte(name))
	var s [32]byte
	copy(s[:], h.Sum(nil))
	return rand.NewChaCha8(s)
}
