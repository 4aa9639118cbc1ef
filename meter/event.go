package meter

import (
	"errors"
	"fmt"
	"time"
)

// EventKind says what happened.
type EventKind uint8

const (
	EvTokenAccepted   EventKind = 1 + iota // Value: credit added (0 for management tokens)
	EvTokenRejected                        // Reason says why
	EvVoucherAccepted                      // Value: voucher sequence number
	EvVoucherRejected                      // Reason says why; Value: sequence number if known
	EvValveOpened
	EvValveClosed     // Value: the Status bits that closed it
	EvLowCredit       // Value: credit left
	EvEmergency       // emergency credit granted; Value: amount
	EvTamper          // Value: the Tamper bits newly set
	EvTamperCleared   // Value: the Tamper bits cleared
	EvFlowWhileClosed // Value: litres registered with the valve closed
	EvKeyChanged      // STS decoder key changed
	EvLockout         // keypad locked; Value: seconds
	EvCreditCleared   // Value: credit removed
	EvSettingChanged  // Value: the parameter set
	EvProvisioned     // keys installed from a provisioning record; Value: its counter
	EvProvisionRefused
)

var eventNames = [...]string{"", "token-accepted", "token-rejected", "voucher-accepted", "voucher-rejected",
	"valve-opened", "valve-closed", "low-credit", "emergency-credit", "tamper", "tamper-cleared",
	"flow-while-closed", "key-changed", "keypad-lockout", "credit-cleared", "setting-changed", "provisioned",
	"provisioning-refused"}

func (k EventKind) String() string {
	if int(k) < len(eventNames) && k != 0 {
		return eventNames[k]
	}
	return fmt.Sprintf("event(%d)", uint8(k))
}

// Reason is why an input was rejected, as recorded in the event log and
// reported upstream (repeated CRC failures mean someone is guessing).
type Reason uint8

const (
	ReasonNone        Reason = iota
	ReasonFormat             // not a well-formed token or voucher
	ReasonCRC                // STS CRC (wrong meter, wrong key or mistyped)
	ReasonUsed               // already accepted (replay)
	ReasonOld                // older than every remembered token or voucher
	ReasonKey                // key change refused (wrong order, wrong revision)
	ReasonSignature          // voucher signature does not verify
	ReasonWrongMeter         // voucher for another meter
	ReasonExpired            // voucher past its expiry
	ReasonUnit               // credit in another unit than the meter counts
	ReasonLocked             // keypad locked out
	ReasonUnsupported        // understood but not supported by this meter
	ReasonOverflow           // credit would overflow the register
)

var reasonNames = [...]string{"none", "format", "crc", "used", "old", "key", "signature", "wrong-meter",
	"expired", "unit", "locked", "unsupported", "overflow"}

func (r Reason) String() string {
	if int(r) < len(reasonNames) {
		return reasonNames[r]
	}
	return fmt.Sprintf("reason(%d)", uint8(r))
}

// Sentinel errors for rejected inputs. Each rejection error wraps exactly
// one, so callers branch with errors.Is; adapters wrap their own errors
// (for example sts.ErrCRC) together with the matching one.
var (
	ErrFormat      = errors.New("meter: malformed input")
	ErrCRC         = errors.New("meter: token CRC check failed")
	ErrUsed        = errors.New("meter: already accepted")
	ErrOld         = errors.New("meter: older than the remembered window")
	ErrKey         = errors.New("meter: key change refused")
	ErrSignature   = errors.New("meter: voucher signature invalid")
	ErrWrongMeter  = errors.New("meter: voucher is for another meter")
	ErrExpired     = errors.New("meter: voucher expired")
	ErrUnit        = errors.New("meter: credit unit does not match the meter")
	ErrLocked      = errors.New("meter: keypad locked out")
	ErrUnsupported = errors.New("meter: not supported by this meter")
	ErrOverflow    = errors.New("meter: credit register would overflow")
)

var reasonErrs = [...]error{nil, ErrFormat, ErrCRC, ErrUsed, ErrOld, ErrKey, ErrSignature, ErrWrongMeter,
	ErrExpired, ErrUnit, ErrLocked, ErrUnsupported, ErrOverflow}

// ReasonOf maps a rejection error to its Reason; unknown errors are
// ReasonFormat, the conservative reading of "did not parse".
func ReasonOf(err error) Reason {
	for r, e := range reasonErrs {
		if e != nil && errors.Is(err, e) {
			return Reason(r)
		}
	}
	return ReasonFormat
}

// Err returns the sentinel error of r (nil for ReasonNone).
func (r Reason) Err() error {
	if int(r) < len(reasonErrs) {
		return reasonErrs[r]
	}
	return ErrFormat
}

// Event is one entry of the meter's bounded event log.
type Event struct {
	Seq    uint32 // 1 for the first event since manufacture; never reused
	Time   time.Time
	Kind   EventKind
	Reason Reason
	Value  int64
}

func (e Event) String() string {
	s := fmt.Sprintf("#%d %s %s", e.Seq, e.Time.UTC().Format(time.RFC3339), e.Kind)
	if e.Reason != ReasonNone {
		s += " (" + e.Reason.String() + ")"
	}
	if e.Value != 0 {
		s += fmt.Sprintf(" %d", e.Value)
	}
	return s
}

// MaxEvents is the capacity of the event log; the oldest event goes first.
// Telemetry reads events by sequence number, so it sees when it missed some.
const MaxEvents = 32
