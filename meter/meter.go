package meter

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"math"
	"time"

	"sluice/sts"
	"sluice/voucher"
)

// TokenKind is what an accepted STS token did.
type TokenKind uint8

const (
	TokenCredit      TokenKind = 1 + iota // added Amount in Unit
	TokenKeyPart                          // one token of a key change set; nothing committed yet
	TokenKeyChange                        // the set is complete and the new decoder key is in force
	TokenClearCredit                      // cleared the credit
	TokenClearTamper                      // cleared every tamper flag
	TokenSetting                          // set a parameter (tariff rate)
	TokenTest                             // class 1 test or display token: no state change
)

// TokenOutcome is an accepted token.
type TokenOutcome struct {
	Kind   TokenKind
	Amount int64 // TokenCredit: credit in Unit; TokenSetting: the value set
	Unit   Unit
	Param  uint16 // TokenSetting: the parameter set (ParamPrice, ParamPulseWeight)
	TID    uint32 // token identifier (minutes since the base date)
}

// Source is where a voucher came from.
type Source uint8

const (
	FromCard   Source = 1 + iota // read from a customer or engineer card
	FromRemote                   // remote top-up downlink
)

// Deps are the meter's collaborators. Time is not one: every input carries
// the meter's clock reading, so a run is a pure function of its inputs.
type Deps struct {
	// STATables are the STS substitution and permutation tables an EA07
	// decoder needs: configuration the utility supplies, not state.
	STATables *sts.STATables
	Rand      io.Reader // challenges for card sessions
}

// Provision is what the factory writes into a blank meter.
type Provision struct {
	ID     uint64
	Params Params
	Keys   Keys
	STS    *sts.DecoderConfig // nil: a meter without keypad tokens
}

// ErrProvisioned is returned by Format on storage that already holds a
// meter: there is no "initialisation card" that re-keys a meter in the field.
var ErrProvisioned = errors.New("meter: storage already provisioned")

// Format writes the first journal record of a blank meter, keys included:
// the shortcut of the bench, the tests and the attack lab. Production
// meters leave the factory with FormatFactory and receive their keys in a
// signed provisioning record (Meter.Provision).
func Format(st Storage, p Provision) error {
	return format(st, p, nil)
}

func format(st Storage, p Provision, adjust func(*state)) error {
	j, err := newJournal(st)
	if err != nil {
		return err
	}
	if _, err := j.load(); !errors.Is(err, ErrBlank) {
		// Corrupt storage is refused too: a meter that lost its state
		// goes back to the factory, not to whoever holds a formatter.
		return fmt.Errorf("%w (%v)", ErrProvisioned, err)
	}
	if p.ID == 0 {
		return errors.New("meter: provision id: zero")
	}
	if len(p.Keys.Trusted) > MaxTrusted {
		return fmt.Errorf("meter: provision keys: more than %d trusted keys", MaxTrusted)
	}
	for i, k := range p.Keys.Trusted {
		if len(k.Public) != ed25519.PublicKeySize || (k.Role != voucher.RoleCredit && k.Role != voucher.RoleManagement) {
			return fmt.Errorf("meter: provision keys: trusted key %d: %d bytes, role %v", i, len(k.Public), k.Role)
		}
	}
	if err := p.Params.validate(); err != nil {
		return err
	}
	s := state{ID: p.ID, Params: p.Params, Keys: p.Keys, Ready: true}
	if p.STS != nil {
		d, err := sts.NewDecoder(*p.STS)
		if err != nil {
			return fmt.Errorf("meter: provision sts: %w", err)
		}
		s.Tokens, _ = d.MarshalBinary()
	}
	// A meter leaves the factory closed: it opens on its first credit.
	s.Core.Status = ValveClosed | ClosedCredit
	s.Core.Settle(&s.Params, time.Time{})
	if adjust != nil {
		adjust(&s)
	}
	return j.commit(s.marshal())
}

func (p *Params) validate() error {
	switch {
	case p.Unit != Litres && p.Unit != Minor:
		return fmt.Errorf("meter: params unit: unknown unit %d", p.Unit)
	case p.Unit == Minor && p.Price == 0:
		return errors.New("meter: params price: a Minor meter needs a price")
	case p.NightStart >= 24*60 || p.NightEnd >= 24*60:
		return errors.New("meter: params night: minute of day out of range")
	case len(p.Holidays) > MaxHolidays:
		return fmt.Errorf("meter: params holidays: more than %d", MaxHolidays)
	case p.LowCredit < 0 || p.EmergencyCredit < 0 || p.FriendlyLimit < 0:
		return errors.New("meter: params credit limits: negative")
	case p.PulseML == 0 || p.PulseML > maxPulseML:
		return fmt.Errorf("meter: params pulse_ml: %d not in 1..%d", p.PulseML, maxPulseML)
	}
	return nil
}

// Meter is the reference meter. It is not safe for concurrent use: like
// the firmware it models, it handles one input at a time.
//
// Every input follows the same pattern: compute the next state on a copy,
// commit it to the journal, and only then adopt it and return success.
// When a commit fails (power lost) the meter halts and returns ErrHalted
// from then on; Boot on the same storage restores the last committed state.
type Meter struct {
	deps  Deps
	j     *journal
	s     state
	halt  error
	frame uint32 // last telemetry frame counter used
}

// ErrHalted is returned by a meter whose power failed mid-commit.
var ErrHalted = errors.New("meter: halted after power loss; boot again")

// Boot starts a meter from its storage.
func Boot(st Storage, deps Deps) (*Meter, error) {
	j, err := newJournal(st)
	if err != nil {
		return nil, err
	}
	payload, err := j.load()
	if err != nil {
		return nil, err
	}
	m := &Meter{deps: deps, j: j}
	if err := m.s.unmarshal(payload); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	// Counters up to the reservation may have been used before the power
	// went: continue above it.
	m.frame = m.s.FrameReserved
	return m, nil
}

// update runs f on a copy of the state and commits the result. f returns
// the error to report after a successful commit (a rejection is logged
// and committed too), or errNoChange to leave storage alone.
func (m *Meter) update(f func(s *state) error) error {
	if m.halt != nil {
		return m.halt
	}
	next := m.s.clone()
	ferr := f(&next)
	if errors.Is(ferr, errNoChange) {
		return nil
	}
	if err := m.j.commit(next.marshal()); err != nil {
		m.halt = fmt.Errorf("%w (%w)", ErrHalted, err)
		return m.halt
	}
	m.s = next
	return ferr
}

var errNoChange = errors.New("no change")

// ID returns the meter's identifier.
func (m *Meter) ID() uint64 { return m.s.ID }

// CardKey returns the meter's own card key (Keys.MeterKey), from which the
// key of each card bound to this meter is diversified. Only the meter's
// card reader (package meter/cardport) needs it.
func (m *Meter) CardKey() []byte { return append([]byte(nil), m.s.Keys.MeterKey[:]...) }

// TelemetryKey returns the meter's telemetry key, which MACs its telemetry
// frames (docs/telemetry.md) and its voucher receipts. Only the meter's
// telemetry link needs it.
func (m *Meter) TelemetryKey() [16]byte { return m.s.Keys.TelemetryKey }

// Rand returns the meter's random source (Deps.Rand), for the card
// reader's authentication challenges; nil when none was given.
func (m *Meter) Rand() io.Reader { return m.deps.Rand }

// Params returns the current settings.
func (m *Meter) Params() Params {
	p := m.s.Params
	p.Holidays = append([]Day(nil), p.Holidays...)
	return p
}

// maxPulseML bounds the pulse weight at a cubic metre per pulse.
const maxPulseML = 1_000_000

// Tick registers the flow sensor's pulses counted since the previous tick,
// fwd forward and rev in reverse, each worth Params.PulseML millilitres.
// It charges credit for whole litres (carrying the fraction to the next
// tick) and moves the valve. A tick with no flow still matters: a friendly
// period may have ended. How often to tick is the firmware's choice: every
// tick is a journal commit.
func (m *Meter) Tick(now time.Time, fwdPulses, revPulses uint32) error {
	return m.update(func(s *state) error {
		before, fml, rml := s.Core, s.FwdML, s.RevML
		fwd := litres(&s.FwdML, fwdPulses, s.Params.PulseML)
		rev := litres(&s.RevML, revPulses, s.Params.PulseML)
		eff := s.Core.Consume(&s.Params, now, fwd, rev)
		if eff == 0 && s.Core == before && s.FwdML == fml && s.RevML == rml {
			return errNoChange
		}
		s.logEffects(now, eff, fwd)
		return nil
	})
}

// litres converts pulses to whole litres, carrying the millilitres left
// over in *rem.
func litres(rem *uint32, pulses, ml uint32) uint32 {
	total := uint64(pulses)*uint64(ml) + uint64(*rem)
	*rem = uint32(total % 1000)
	return uint32(min(total/1000, 1<<32-1))
}

// Sense latches tamper conditions reported by the sensors (magnet, cover,
// low battery) and logs the new ones.
func (m *Meter) Sense(now time.Time, t Tamper) error {
	return m.update(func(s *state) error {
		if s.Core.Tamper&t == t {
			return errNoChange
		}
		fresh := t &^ s.Core.Tamper
		eff := s.Core.SetTamper(&s.Params, now, t)
		s.log(now, EvTamper, ReasonNone, int64(fresh))
		s.logEffects(now, eff, 0)
		return nil
	})
}

// cardFailLimit is how many consecutive failed card authentications make
// card-port abuse: a genuine card fails rarely, a brute force often.
const cardFailLimit = 3

// CardAuthFailed records a failed card authentication at the card port;
// the third in a row latches TamperCardPort.
func (m *Meter) CardAuthFailed(now time.Time) error {
	return m.update(func(s *state) error {
		s.cardFailed(now)
		return nil
	})
}

func (s *state) cardFailed(now time.Time) {
	if s.CardFails < math.MaxUint16 {
		s.CardFails++
	}
	if s.CardFails >= cardFailLimit && s.Core.Tamper&TamperCardPort == 0 {
		eff := s.Core.SetTamper(&s.Params, now, TamperCardPort)
		s.log(now, EvTamper, ReasonNone, int64(TamperCardPort))
		s.logEffects(now, eff, 0)
	}
}

// RequestEmergency grants emergency credit when credit is low. It returns
// false when the meter offers none now (credit not low, already in use, or
// none configured).
func (m *Meter) RequestEmergency(now time.Time) (bool, error) {
	var granted bool
	err := m.update(func(s *state) error {
		var eff Effect
		granted, eff = s.Core.RequestEmergency(&s.Params, now)
		if !granted {
			return errNoChange
		}
		s.log(now, EvEmergency, ReasonNone, s.Params.EmergencyCredit)
		s.logEffects(now, eff, 0)
		return nil
	})
	return granted && err == nil, err
}

// addCredit adds amount to the credit, refusing overflow.
func addCredit(s *state, now time.Time, amount int64) error {
	if amount > 0 && s.Core.Credit > math.MaxInt64/2-amount {
		return ErrOverflow
	}
	s.logEffects(now, s.Core.Load(&s.Params, now, amount), 0)
	return nil
}

// frameBlock is how many telemetry frame counters one journal write
// reserves: a reboot skips at most this many, and the EEPROM sees one
// write per frameBlock frames instead of one per frame.
const frameBlock = 64

// ErrCounterExhausted is returned when the telemetry frame counter has run
// out: the meter needs a new telemetry key (and counter) before it may
// send again.
var ErrCounterExhausted = errors.New("meter: telemetry frame counter exhausted")

// FrameCounter returns the counter for the next telemetry frame: strictly
// increasing for the meter's life, across power cuts, as the head-end's
// replay window requires (docs/telemetry.md). Counters are reserved in
// blocks in the journal, so most calls write nothing.
func (m *Meter) FrameCounter() (uint32, error) {
	if m.halt != nil {
		return 0, m.halt
	}
	if m.frame == math.MaxUint32 {
		return 0, ErrCounterExhausted
	}
	if m.frame >= m.s.FrameReserved {
		if err := m.update(func(s *state) error {
			s.FrameReserved = uint32(min(uint64(s.FrameReserved)+frameBlock, math.MaxUint32))
			return nil
		}); err != nil {
			return 0, err
		}
	}
	m.frame++
	return m.frame, nil
}
