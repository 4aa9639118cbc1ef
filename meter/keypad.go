package meter

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"sluice/sts"
)

// Keypad entries. A token is 20 digits; spaces and dashes, which customers
// copy from receipts, are ignored. A short code is '*' or '#', one or two
// digits, and an optional closing '#': it asks the display for something.
const (
	CodeCredit    = 1 // show credit
	CodeEmergency = 2 // request emergency credit
	CodeLastEvent = 3 // show the newest event
	CodeVolume    = 4 // show the forward register
	CodeMeterID   = 5 // show the meter number
	CodeStatus    = 6 // show valve, tamper and lockout status
)

// Entry is one parsed keypad entry: a token or a short code.
type Entry struct {
	Token string // 20 digits, or empty
	Code  int    // short code when Token is empty
}

// maxEntry bounds what the keypad buffer holds, as on a real meter.
const maxEntry = 64

// ParseEntry parses what was typed before the enter key.
func ParseEntry(s string) (Entry, error) {
	if len(s) > maxEntry {
		return Entry{}, fmt.Errorf("%w: keypad entry: longer than %d characters", ErrFormat, maxEntry)
	}
	s = strings.TrimSpace(s)
	if s != "" && (s[0] == '*' || s[0] == '#') {
		body := strings.TrimSuffix(s[1:], "#")
		if len(body) < 1 || len(body) > 2 || !allDigits(body) {
			return Entry{}, fmt.Errorf("%w: keypad entry: short code %q is not '*' and 1-2 digits", ErrFormat, s)
		}
		code := int(body[0] - '0')
		if len(body) == 2 {
			code = code*10 + int(body[1]-'0')
		}
		return Entry{Code: code}, nil
	}
	var d [20]byte
	n := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ' ' || c == '-':
			continue
		case c < '0' || c > '9':
			return Entry{}, fmt.Errorf("%w: keypad entry: character %q at %d is not a digit", ErrFormat, c, i)
		case n == len(d):
			return Entry{}, fmt.Errorf("%w: keypad entry: more than 20 digits", ErrFormat)
		}
		d[n] = c
		n++
	}
	if n != len(d) {
		return Entry{}, fmt.Errorf("%w: keypad entry: %d digits, a token has 20", ErrFormat, n)
	}
	return Entry{Token: string(d[:])}, nil
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// Display is what the meter shows after an entry.
type Display struct {
	Text string
}

// Keypad handles one entry typed on the keypad.
func (m *Meter) Keypad(now time.Time, line string) (Display, error) {
	e, err := ParseEntry(line)
	if err != nil {
		return Display{"Err format"}, err
	}
	if e.Token != "" {
		out, err := m.EnterToken(now, e.Token)
		switch {
		case errors.Is(err, ErrLocked):
			return Display{fmt.Sprintf("Locked %s", time.Unix(m.s.LockedUntil, 0).Sub(now).Round(time.Second))}, err
		case err != nil:
			return Display{"Reject " + ReasonOf(err).String()}, err
		case out.Kind == TokenCredit:
			return Display{fmt.Sprintf("Accept +%d %s, credit %d", out.Amount, out.Unit, m.s.Core.Credit)}, nil
		case out.Kind == TokenKeyPart:
			return Display{"Accept 1/2 key"}, nil
		}
		return Display{"Accept"}, nil
	}
	s := &m.s
	switch e.Code {
	case CodeCredit:
		return Display{fmt.Sprintf("Credit %d %s", s.Core.Credit, s.Params.Unit)}, nil
	case CodeEmergency:
		ok, err := m.RequestEmergency(now)
		if err != nil {
			return Display{"Error"}, err
		}
		if !ok {
			return Display{"No emergency credit"}, nil
		}
		return Display{fmt.Sprintf("Emergency %d %s", s.Params.EmergencyCredit, s.Params.Unit)}, nil
	case CodeLastEvent:
		if len(s.Events) == 0 {
			return Display{"No events"}, nil
		}
		return Display{s.Events[len(s.Events)-1].String()}, nil
	case CodeVolume:
		return Display{fmt.Sprintf("Volume %d L", s.Core.Forward)}, nil
	case CodeMeterID:
		return Display{fmt.Sprintf("Meter %d", s.ID)}, nil
	case CodeStatus:
		return Display{m.Snapshot().StatusText(now)}, nil
	}
	return Display{"Err code"}, fmt.Errorf("%w: keypad entry: unknown short code %d", ErrFormat, e.Code)
}

// lockoutUntil is when the keypad unlocks after f consecutive rejected
// tokens: free tries first, then Base seconds doubling with each further
// rejection up to Max. Eleven doublings of a minute pass a day, so a
// guesser soon gets one try a day.
func (p *Params) lockoutUntil(now time.Time, f uint16) int64 {
	if f <= uint16(p.LockoutFree) || p.LockoutBase == 0 {
		return 0
	}
	d := uint64(p.LockoutBase)
	for i := uint16(p.LockoutFree) + 1; i < f && d < uint64(p.LockoutMax); i++ {
		d *= 2
	}
	d = min(d, uint64(p.LockoutMax))
	return now.Unix() + int64(d)
}

// EnterToken offers one 20-digit STS token to the meter's STS decoder
// (package sts), whose state (decoder key, TID memory, key change set in
// progress) the meter journals together with the credit: the token's TID
// enters the memory in the same commit as its credit.
//
// The rejection counter is charged before the token is decoded and the
// charge committed: a guesser who cuts the power after each attempt, to
// beat the lockout, pays for the attempt anyway. Acceptance of a
// meter-specific token refunds it and clears the lockout; so do rejections
// that prove knowledge of a once-valid token (used, old, wrong unit), which
// a customer makes by mistake and a guesser cannot. Test tokens (class 1),
// which anyone can make, are recognised by their clear class bits before
// any of this: they change nothing and write nothing, so they cannot lift a
// lockout, wear the EEPROM or push events out of the log.
func (m *Meter) EnterToken(now time.Time, token string) (TokenOutcome, error) {
	if m.halt != nil {
		return TokenOutcome{}, m.halt
	}
	if len(m.s.Tokens) == 0 {
		return TokenOutcome{}, fmt.Errorf("%w: keypad tokens", ErrUnsupported)
	}
	if !m.s.Ready {
		return TokenOutcome{}, ErrNotProvisioned
	}
	if now.Unix() < m.s.LockedUntil {
		return TokenOutcome{}, fmt.Errorf("%w until %s", ErrLocked, time.Unix(m.s.LockedUntil, 0).UTC().Format(time.RFC3339))
	}
	if tok, err := sts.ParseToken(token); err == nil && tok.Class() == sts.ClassTest {
		// Class 1 tokens travel in clear and anyone can make them: they
		// run the display tests and touch nothing, not even the storage,
		// so they can neither wear the EEPROM nor flood the event log.
		var d sts.Decoder
		d.SetTables(m.deps.STATables)
		if err := d.UnmarshalBinary(m.s.Tokens); err != nil {
			return TokenOutcome{}, fmt.Errorf("%w: stored decoder state: %w", ErrUnsupported, err)
		}
		if _, err := d.Accept(tok); err != nil {
			return TokenOutcome{}, stsErr(err)
		}
		return TokenOutcome{Kind: TokenTest}, nil
	}
	prevF, prevL := m.s.Failures, m.s.LockedUntil
	if err := m.update(func(s *state) error {
		if s.Failures < math.MaxUint16 {
			s.Failures++
		}
		s.LockedUntil = s.Params.lockoutUntil(now, s.Failures)
		return nil
	}); err != nil {
		return TokenOutcome{}, err
	}

	var out TokenOutcome
	var rej error
	keyChanged := false
	err := m.update(func(s *state) error {
		var err error
		var next []byte
		out, next, err = m.decode(s, token)
		if err == nil {
			// Log the acceptance before its consequences (valve opened,
			// key changed...); a refusal by the meter itself undoes it.
			before := s.clone()
			s.log(now, EvTokenAccepted, ReasonNone, out.Amount)
			if err = s.applyToken(now, &out, &keyChanged); err != nil {
				*s = before
			}
		}
		if err != nil {
			r := ReasonOf(err)
			if r == ReasonUsed || r == ReasonOld || r == ReasonUnit {
				s.Failures, s.LockedUntil = prevF, prevL
			}
			s.log(now, EvTokenRejected, r, int64(out.TID))
			if s.LockedUntil > now.Unix() {
				s.log(now, EvLockout, ReasonNone, s.LockedUntil-now.Unix())
			}
			rej = err
			return nil
		}
		s.Tokens = next
		s.Failures, s.LockedUntil = 0, 0
		return nil
	})
	if err != nil {
		return TokenOutcome{}, err
	}
	if rej != nil {
		return TokenOutcome{}, rej
	}
	if keyChanged {
		// Commit the same state once more so that the other bank, which
		// still holds the old decoder key, is overwritten: a later dump
		// must not yield a key the meter no longer uses. The change is
		// already committed and acknowledged whatever happens here.
		_ = m.update(func(*state) error { return nil })
	}
	return out, nil
}

// decode runs the STS decoder on a copy of its state and returns the
// outcome and the state to adopt with it.
func (m *Meter) decode(s *state, token string) (TokenOutcome, []byte, error) {
	var d sts.Decoder
	d.SetTables(m.deps.STATables)
	if err := d.UnmarshalBinary(s.Tokens); err != nil {
		return TokenOutcome{}, nil, fmt.Errorf("%w: stored decoder state: %w", ErrUnsupported, err)
	}
	res, err := d.AcceptDigits(token)
	if err != nil {
		return TokenOutcome{}, nil, stsErr(err)
	}
	next, _ := d.MarshalBinary()
	out := TokenOutcome{TID: res.TID}
	switch res.Kind {
	case sts.KindCredit:
		out.Kind = TokenCredit
		switch res.Subclass {
		case sts.SubWater: // 0.1 m3
			out.Unit, out.Amount = Litres, int64(res.Amount)*100
		case sts.SubWaterCurrency: // minor units
			out.Unit, out.Amount = Minor, int64(res.Amount)
		default:
			return out, nil, fmt.Errorf("%w: credit subclass %d on a water meter", ErrUnit, res.Subclass)
		}
	case sts.KindKeyChangePartial:
		out.Kind = TokenKeyPart
	case sts.KindKeyChange:
		out.Kind = TokenKeyChange
	case sts.KindTest:
		out.Kind = TokenTest
	case sts.KindManagement:
		switch res.Subclass {
		case sts.SubClearCredit:
			out.Kind = TokenClearCredit
		case sts.SubClearTamper:
			out.Kind = TokenClearTamper
		case sts.SubSetTariffRate:
			out.Kind, out.Param, out.Amount = TokenSetting, ParamPrice, int64(res.Field)
		case sts.SubSetWaterMeterFactor:
			// Sluice reads the factor as the pulse weight in mL.
			out.Kind, out.Param, out.Amount = TokenSetting, ParamPulseWeight, int64(res.Field)
		default:
			return out, nil, fmt.Errorf("%w: management subclass %d", ErrUnsupported, res.Subclass)
		}
	default:
		return out, nil, fmt.Errorf("%w: token kind %v", ErrUnsupported, res.Kind)
	}
	return out, next, nil
}

// applyToken carries out an accepted token on s.
func (s *state) applyToken(now time.Time, out *TokenOutcome, keyChanged *bool) error {
	switch out.Kind {
	case TokenCredit:
		if out.Unit != s.Params.Unit {
			return fmt.Errorf("%w: token credits %s, meter counts %s", ErrUnit, out.Unit, s.Params.Unit)
		}
		return addCredit(s, now, out.Amount)
	case TokenKeyChange:
		*keyChanged = true
		s.log(now, EvKeyChanged, ReasonNone, 0)
	case TokenClearCredit:
		s.log(now, EvCreditCleared, ReasonNone, s.Core.Credit)
		s.Core.Status &^= Emergency
		s.logEffects(now, s.Core.Load(&s.Params, now, -s.Core.Credit), 0)
	case TokenClearTamper:
		s.log(now, EvTamperCleared, ReasonNone, int64(s.Core.Tamper))
		s.CardFails = 0
		s.logEffects(now, s.Core.ClearTamper(&s.Params, now, 0xFF), 0)
	case TokenSetting:
		if out.Param == ParamPrice && s.Params.Unit != Minor {
			return fmt.Errorf("%w: tariff rate on a meter that counts litres", ErrUnsupported)
		}
		return s.setParam(now, out.Param, uint32(out.Amount))
	}
	return nil
}

// stsErr adds the meter's sentinel to an error of package sts.
func stsErr(err error) error {
	var s error
	switch {
	case errors.Is(err, sts.ErrCRC):
		s = ErrCRC
	case errors.Is(err, sts.ErrUsed):
		s = ErrUsed
	case errors.Is(err, sts.ErrOld):
		s = ErrOld
	case errors.Is(err, sts.ErrKeyExpired), errors.Is(err, sts.ErrTIDRange):
		s = ErrKey
	case errors.Is(err, sts.ErrUnsupported):
		s = ErrUnsupported
	default:
		s = ErrFormat
	}
	return fmt.Errorf("%w: %w", s, err)
}
