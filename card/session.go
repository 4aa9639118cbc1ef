package card

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"slices"
)

// The reader side: what a meter and the vending office's card writer run.

// ErrWrongCard reports a card bound to another meter, or not personalized
// when it should be.
var ErrWrongCard = errors.New("card: wrong card")

// Identify selects the Sluice application and reads the card's identity,
// without any key. It is how a reader learns which key to use.
func Identify(t Transport) (Identity, error) {
	r, err := Exchange(t, Command{CLA: claISO, INS: insSelect, P1: 0x04, P2: 0x00, Data: AID(), Ne: MaxShortNe})
	if err != nil {
		return Identity{}, err
	}
	if r.SW != SWOK {
		return Identity{}, &StatusError{INS: insSelect, SW: r.SW}
	}
	r, err = Exchange(t, Command{CLA: claNative, INS: insGetIdentity, Ne: MaxShortNe})
	if err != nil {
		return Identity{}, err
	}
	if r.SW != SWNativeOK {
		return Identity{}, &StatusError{INS: insGetIdentity, SW: r.SW}
	}
	return parseIdentity(r.Data)
}

// Session is an authenticated secure channel to one card. Every call is one
// CommMode.Full command: encrypted, MACed, bound to the session's counter.
// After any error the session is unusable (the card has ended it too);
// open a new one. A Session is not safe for concurrent use.
type Session struct {
	t        Transport
	id       Identity
	ch       *channel
	extended bool
}

// PreferExtended makes every later command an extended APDU (Le of 65536),
// so long answers come back in one exchange instead of a 61xx chain. Use it
// with readers known to carry extended APDUs (PC/SC over T=1 does).
func (s *Session) PreferExtended() { s.extended = true }

// Authenticate runs AuthenticateEV2First with key over t, after Identify
// returned id. It fails with ErrAuth unless both sides prove they hold the
// key: the card checks the reader's RndB', and this side checks the card's
// RndA'. rnd supplies RndA (nil: crypto/rand).
func Authenticate(t Transport, id Identity, key []byte, rnd io.Reader) (*Session, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("card: key of %d bytes, want %d", len(key), KeySize)
	}
	if rnd == nil {
		rnd = rand.Reader
	}
	a := &readerAuth{key: clone(key), rndA: make([]byte, rndSize)}
	if _, err := io.ReadFull(rnd, a.rndA); err != nil {
		return nil, fmt.Errorf("card: RndA: %w", err)
	}
	r, err := Exchange(t, Command{CLA: claNative, INS: insAuthenticate, Data: []byte{0x00, 0x00}, Ne: MaxShortNe})
	if err != nil {
		return nil, err
	}
	if r.SW != SWAdditionalFrame {
		return nil, fmt.Errorf("%w: %w", ErrAuth, &StatusError{INS: insAuthenticate, SW: r.SW})
	}
	part2, err := a.part2(r.Data)
	if err != nil {
		return nil, err
	}
	r, err = Exchange(t, Command{CLA: claNative, INS: insAdditional, Data: part2, Ne: MaxShortNe})
	if err != nil {
		return nil, err
	}
	if r.SW != SWNativeOK {
		return nil, fmt.Errorf("%w: card refused the reader: %w", ErrAuth, &StatusError{INS: insAdditional, SW: r.SW})
	}
	ch, err := a.finish(r.Data)
	if err != nil {
		return nil, err
	}
	return &Session{t: t, id: id, ch: ch}, nil
}

// Open is what a meter does when a card is inserted: identify it, refuse a
// card bound to another meter, derive the card's key from the meter's card
// key and the card's UID, and authenticate. A card for another meter fails
// with ErrWrongCard before any key is used; a card that claims this meter
// without holding the key fails with ErrAuth.
func Open(t Transport, meterID uint64, meterCardKey []byte, rnd io.Reader) (*Session, error) {
	id, err := Identify(t)
	if err != nil {
		return nil, err
	}
	if id.Lifecycle != Personalized || id.MeterID != meterID {
		return nil, fmt.Errorf("%w: %v card for meter %d, this is meter %d", ErrWrongCard, id.Lifecycle, id.MeterID, meterID)
	}
	key, err := CardKey(meterCardKey, id.UID)
	if err != nil {
		return nil, err
	}
	return Authenticate(t, id, key, rnd)
}

// Identity returns what Identify read before the session opened.
func (s *Session) Identity() Identity { return s.id }

// call runs one CommMode.Full command. Commands whose protected body exceeds
// a short APDU go out extended; long answers come back through 61xx chaining
// (short) or in one piece (extended).
func (s *Session) call(ins byte, header, data []byte) ([]byte, error) {
	if s.ch == nil {
		return nil, fmt.Errorf("card: session closed")
	}
	body, err := s.ch.sealCommand(ins, header, data)
	if err != nil {
		s.ch = nil
		return nil, err
	}
	c := Command{CLA: claNative, INS: ins, Data: body, Ne: MaxShortNe}
	if s.extended || c.Extended() {
		c.Ne = MaxExtendedNe
	}
	r, err := Exchange(s.t, c)
	if err != nil {
		s.ch = nil
		return nil, err
	}
	if r.SW != SWNativeOK {
		s.ch = nil
		se := &StatusError{INS: ins, SW: r.SW}
		if r.SW == SWAuthError {
			return nil, fmt.Errorf("%w: %w", ErrAuth, se)
		}
		return nil, se
	}
	out, err := s.ch.openResponse(0x00, r.Data)
	if err != nil {
		s.ch = nil
		return nil, fmt.Errorf("card: response to %02X: %w", ins, err)
	}
	return out, nil
}

// ReadFile returns the plaintext of one of the card's files.
func (s *Session) ReadFile(no byte) ([]byte, error) {
	return s.call(insReadData, []byte{no}, nil)
}

// Personalize binds a blank card, authenticated under its transport key, to
// one meter for life. The session ends with it (its key no longer exists).
func (s *Session) Personalize(p Personalization) error {
	data, err := p.marshal()
	if err != nil {
		return err
	}
	if _, err := s.call(insPersonalize, nil, data); err != nil {
		return err
	}
	s.ch = nil
	return nil
}

// ReadVouchers returns the non-empty voucher slots, pending ones first in
// ascending sequence order (the order a meter must load them in, since it
// refuses a sequence at or below one it has accepted), then consumed ones.
func (s *Session) ReadVouchers() ([]Slot, error) {
	b, err := s.ReadFile(FileVouchers)
	if err != nil {
		return nil, err
	}
	slots, err := parseSlots(b)
	if err != nil {
		return nil, err
	}
	slices.SortStableFunc(slots, func(a, b Slot) int {
		if a.State != b.State {
			return int(a.State) - int(b.State)
		}
		return int(int64(a.Sequence) - int64(b.Sequence))
	})
	return slots, nil
}

// LoadVoucher stores a signed voucher on the card (vending office) and
// returns its slot. The card refuses a voucher for another meter, of the
// wrong kind for the card, already present, or when no slot is free.
func (s *Session) LoadVoucher(v []byte) (int, error) {
	out, err := s.call(insLoadVoucher, nil, v)
	if err != nil {
		return 0, err
	}
	if len(out) != 1 || int(out[0]) >= Slots {
		return 0, fmt.Errorf("%w: load answer %X", ErrFormat, out)
	}
	return int(out[0]), nil
}

// WriteReceipt is the meter's last step for one voucher, after it has
// committed the voucher's effect (or its refusal) to its own journal: the
// card stores r and marks the voucher in slot consumed, atomically.
// Repeating it for an already consumed voucher with the same sequence
// succeeds and changes nothing, so a meter that lost the answer retries.
func (s *Session) WriteReceipt(slot int, r Receipt) error {
	if slot < 0 || slot >= Slots {
		return fmt.Errorf("card: slot %d out of range", slot)
	}
	if err := r.check(); err != nil {
		return fmt.Errorf("card: %w", err)
	}
	_, err := s.call(insWriteReceipt, []byte{byte(slot)}, r.marshal(nil))
	return err
}

// ReadReceipts returns the receipts the meter wrote, oldest first.
func (s *Session) ReadReceipts() ([]Receipt, error) {
	b, err := s.ReadFile(FileReceipts)
	if err != nil {
		return nil, err
	}
	return parseReceipts(b)
}

// WriteFeedback leaves the meter's consumption and tamper state on the card
// for the vending office.
func (s *Session) WriteFeedback(f Feedback) error {
	_, err := s.call(insWriteFeedback, nil, f.marshal())
	return err
}

// ReadFeedback returns the meter's last feedback; ok is false if no meter
// has written any yet.
func (s *Session) ReadFeedback() (f Feedback, ok bool, err error) {
	b, err := s.ReadFile(FileFeedback)
	if err != nil || len(b) == 0 {
		return Feedback{}, false, err
	}
	f, err = parseFeedback(b)
	return f, err == nil, err
}

// ChangeKey replaces the card key with key, of version v (vending office,
// when the meter's card key changes). The card stores the new key
// atomically; the session ends with the old key.
func (s *Session) ChangeKey(key []byte, v uint8) error {
	if len(key) != KeySize {
		return fmt.Errorf("card: new key of %d bytes, want %d", len(key), KeySize)
	}
	if _, err := s.call(insChangeKey, nil, append(clone(key), v)); err != nil {
		return err
	}
	s.ch = nil
	return nil
}
