package card

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"

	"sluice/voucher"
)

// Image is the card's non-volatile memory: what an EEPROM dump would show.
// The key is in it because a card's memory holds its key; per-card
// diversification is what makes such a dump worthless beyond this card.
type Image struct {
	Lifecycle  Lifecycle   `json:"lifecycle"`
	UID        UID         `json:"uid"`
	Key        []byte      `json:"key"` // transport key while blank, card key after
	KeyVersion uint8       `json:"key_version"`
	Kind       Kind        `json:"kind,omitempty"`
	MeterID    uint64      `json:"meter_id,omitempty"`
	Issued     uint32      `json:"issued,omitempty"`
	Slots      [Slots]Slot `json:"slots"`
	Receipts   []Receipt   `json:"receipts,omitempty"` // newest last
	Feedback   *Feedback   `json:"feedback,omitempty"`
}

// NewBlank returns the memory of a card fresh from the factory.
func NewBlank(uid UID, transportKey []byte) (Image, error) {
	if len(transportKey) != KeySize {
		return Image{}, fmt.Errorf("card: transport key of %d bytes, want %d", len(transportKey), KeySize)
	}
	img := Image{Lifecycle: Blank, UID: uid, Key: clone(transportKey)}
	for i := range img.Slots {
		img.Slots[i].Index = i
	}
	return img, nil
}

// MarshalJSON and UnmarshalJSON keep the UID readable in a state file.
func (u UID) MarshalJSON() ([]byte, error) { return json.Marshal(u.String()) }

func (u *UID) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	v, err := ParseUID(s)
	*u = v
	return err
}

// Identity returns the public part of the image.
func (img *Image) Identity() Identity {
	return Identity{
		Lifecycle:  img.Lifecycle,
		UID:        img.UID,
		Kind:       img.Kind,
		Issued:     time32(img.Issued),
		MeterID:    img.MeterID,
		KeyVersion: img.KeyVersion,
	}
}

// clone deep-copies the image so a command can build its new state aside
// and swap it in only once it is stored.
func (img Image) clone() Image {
	img.Key = clone(img.Key)
	for i := range img.Slots {
		img.Slots[i].Voucher = clone(img.Slots[i].Voucher)
	}
	img.Receipts = slices.Clone(img.Receipts)
	if img.Feedback != nil {
		f := *img.Feedback
		img.Feedback = &f
	}
	return img
}

// Validate checks an image read from storage.
func (img *Image) Validate() error {
	if len(img.Key) != KeySize {
		return fmt.Errorf("card image: key of %d bytes", len(img.Key))
	}
	switch img.Lifecycle {
	case Blank:
	case Personalized:
		if !img.Kind.valid() || img.MeterID == 0 {
			return fmt.Errorf("card image: personalized with kind %v meter %d", img.Kind, img.MeterID)
		}
	default:
		return fmt.Errorf("card image: lifecycle %d", img.Lifecycle)
	}
	for i, s := range img.Slots {
		if s.Index != i || s.State > SlotConsumed || len(s.Voucher) > MaxVoucherSize {
			return fmt.Errorf("card image: slot %d invalid", i)
		}
	}
	if len(img.Receipts) > MaxReceipts {
		return fmt.Errorf("card image: %d receipts", len(img.Receipts))
	}
	for i, r := range img.Receipts {
		if err := r.check(); err != nil {
			return fmt.Errorf("card image: receipt %d: %w", i, err)
		}
	}
	return nil
}

// ATR returns the emulated card's answer to reset: direct convention, then
// TD1 = 80 (T=0, TD2 follows) and TD2 = 01 (T=1), the form PC/SC gives
// contactless cards' ATRs; historical bytes "SLUICE"; and the check byte
// TCK that an ATR indicating T=1 requires. Readers here connect with T=1,
// which carries extended APDUs.
func ATR() []byte { return atr([]byte("SLUICE")) }

func atr(hist []byte) []byte {
	b := []byte{0x3B, 0x80 | byte(len(hist)), 0x80, 0x01}
	b = append(b, hist...)
	var tck byte
	for _, x := range b[1:] {
		tck ^= x
	}
	return append(b, tck)
}

// Card is the card application: a command handler over an Image. It is the
// emulator the tests, `sluice card emulate` and the vpcd bridge run, and
// describes exactly what a real card would implement.
//
// Every state change is atomic: a command builds the new image aside, hands
// it to the store, and only then adopts it; if the store fails the command
// fails and the card is unchanged, like a card whose EEPROM write was cut by
// a pulled contact. Card is not safe for concurrent use (nor is a card).
type Card struct {
	img   Image
	rand  io.Reader
	store func(Image) error

	selected bool
	rndB     []byte // set between the two authentication passes
	ch       *channel

	rest   []byte // response bytes still to fetch with GET RESPONSE
	restSW uint16
}

// New returns a card over img, drawing its random numbers (RndB, TI) from
// rand, and storing every new image with store (nil: memory only).
func New(img Image, rand io.Reader, store func(Image) error) (*Card, error) {
	if err := img.Validate(); err != nil {
		return nil, err
	}
	return &Card{img: img.clone(), rand: rand, store: store}, nil
}

// Image returns a copy of the card's memory.
func (c *Card) Image() Image { return c.img.clone() }

// Reset is a power cycle or a warm reset: volatile state (selection,
// session, pending response) is lost; memory stays.
func (c *Card) Reset() {
	*c = Card{img: c.img, rand: c.rand, store: c.store}
}

// Transmit makes the card its own in-process Transport.
func (c *Card) Transmit(apdu []byte) ([]byte, error) { return c.Process(apdu), nil }

// Process handles one command APDU and returns the response APDU. It never
// fails: every problem is a status word.
func (c *Card) Process(apdu []byte) []byte {
	cmd, err := ParseCommand(apdu)
	if err != nil {
		c.rest, c.ch = nil, nil
		return Response{SW: SWWrongLength}.Marshal()
	}
	if cmd.CLA&0xFC == claISO && cmd.INS == insGetResponse {
		return c.getResponse(cmd)
	}
	c.rest = nil
	var r Response
	switch cmd.CLA {
	case claISO:
		r = c.iso(cmd)
	case claNative:
		r = c.native(cmd)
		if r.SW != SWNativeOK && r.SW != SWAdditionalFrame {
			// EV2: any error ends the session; the reader must
			// authenticate again.
			c.ch, c.rndB = nil, nil
		}
	default:
		r = Response{SW: SWCLANotSupported}
	}
	return c.deliver(r, cmd)
}

// deliver applies the ISO length rules: a response longer than the command's
// Ne is delivered in chunks with 61xx and GET RESPONSE.
func (c *Card) deliver(r Response, cmd Command) []byte {
	ne := cmd.Ne
	if ne == 0 {
		ne = MaxShortNe // absent Le: the card still answers what it has, in short chunks
	}
	if len(r.Data) <= ne {
		return r.Marshal()
	}
	c.rest, c.restSW = r.Data[ne:], r.SW
	return Response{Data: r.Data[:ne], SW: 0x6100 | uint16(min(len(c.rest), MaxShortNe)&0xFF)}.Marshal()
}

func (c *Card) getResponse(cmd Command) []byte {
	if c.rest == nil {
		return Response{SW: SWConditions}.Marshal()
	}
	if cmd.P1 != 0 || cmd.P2 != 0 {
		return Response{SW: SWWrongP1P2}.Marshal()
	}
	rest, sw := c.rest, c.restSW
	c.rest = nil
	return c.deliver(Response{Data: rest, SW: sw}, cmd)
}

func (c *Card) iso(cmd Command) Response {
	if cmd.INS != insSelect {
		return Response{SW: SWINSNotSupported}
	}
	if cmd.P1 != 0x04 || cmd.P2&^0x0C != 0 { // by DF name, first or only occurrence
		return Response{SW: SWWrongP1P2}
	}
	c.ch, c.rndB, c.selected = nil, nil, false
	if string(cmd.Data) != aid {
		return Response{SW: SWFileNotFound}
	}
	c.selected = true
	return Response{SW: SWOK}
}

func (c *Card) native(cmd Command) Response {
	if !c.selected {
		return Response{SW: SWConditions}
	}
	if cmd.P1 != 0 || cmd.P2 != 0 {
		return Response{SW: SWWrongP1P2}
	}
	switch cmd.INS {
	case insGetIdentity:
		if len(cmd.Data) != 0 {
			return Response{SW: SWLengthError}
		}
		id := c.img.Identity()
		data := append(id.identityFile(), id.bindingFile()...)
		if cmd.Ne != 0 && cmd.Ne < len(data) {
			// Case 2, idempotent: ISO's "wrong Le, here is the right one".
			return Response{SW: 0x6C00 | uint16(len(data))}
		}
		return Response{Data: data, SW: SWNativeOK}
	case insAuthenticate:
		return c.authenticate(cmd.Data)
	case insAdditional:
		return c.authenticate2(cmd.Data)
	}
	if c.ch == nil {
		return Response{SW: SWAuthError}
	}
	hdrLen, ok := map[byte]int{
		insReadData:      1,
		insPersonalize:   0,
		insLoadVoucher:   0,
		insWriteReceipt:  1,
		insWriteFeedback: 0,
		insChangeKey:     0,
	}[cmd.INS]
	if !ok {
		return Response{SW: SWINSNotSupported}
	}
	hdr, data, err := c.ch.openCommand(cmd.INS, hdrLen, cmd.Data)
	if err != nil {
		if errors.Is(err, ErrCounter) {
			return Response{SW: SWAuthError}
		}
		return Response{SW: SWIntegrityError}
	}
	out, sw := c.execute(cmd.INS, hdr, data)
	if sw != SWNativeOK {
		return Response{SW: sw}
	}
	ch := c.ch
	if cmd.INS == insPersonalize || cmd.INS == insChangeKey {
		c.ch = nil // the key that opened this session is gone
	}
	return Response{Data: ch.sealResponse(0x00, out), SW: SWNativeOK}
}

func (c *Card) authenticate(data []byte) Response {
	c.ch, c.rndB = nil, nil
	if len(data) != 2 || data[1] != 0 {
		return Response{SW: SWLengthError}
	}
	if data[0] != 0 { // one key, number 0
		return Response{SW: SWNoSuchFile}
	}
	rndB := make([]byte, rndSize)
	if _, err := io.ReadFull(c.rand, rndB); err != nil {
		return Response{SW: SWUnknown}
	}
	e, err := cardAuthPart1(c.img.Key, rndB)
	if err != nil {
		return Response{SW: SWUnknown}
	}
	c.rndB = rndB
	return Response{Data: e, SW: SWAdditionalFrame}
}

func (c *Card) authenticate2(data []byte) Response {
	rndB := c.rndB
	c.rndB = nil
	if rndB == nil {
		return Response{SW: SWAuthError}
	}
	ti := make([]byte, tiSize)
	if _, err := io.ReadFull(c.rand, ti); err != nil {
		return Response{SW: SWUnknown}
	}
	ans, ch, err := cardAuthPart2(c.img.Key, rndB, data, ti)
	if err != nil {
		return Response{SW: SWAuthError}
	}
	c.ch = ch
	return Response{Data: ans, SW: SWNativeOK}
}

// execute runs an authenticated command on a copy of the image and commits
// the copy through the store.
func (c *Card) execute(ins byte, hdr, data []byte) ([]byte, uint16) {
	if ins == insReadData {
		if len(data) != 0 {
			return nil, SWLengthError
		}
		return c.readFile(hdr[0])
	}
	next := c.img.clone()
	var out []byte
	sw := SWNativeOK
	switch ins {
	case insPersonalize:
		sw = personalize(&next, data)
	case insLoadVoucher:
		out, sw = loadVoucher(&next, data)
	case insWriteReceipt:
		sw = writeReceipt(&next, int(hdr[0]), data)
	case insWriteFeedback:
		sw = writeFeedback(&next, data)
	case insChangeKey:
		sw = changeKey(&next, data)
	}
	if sw != SWNativeOK {
		return nil, sw
	}
	if c.store != nil {
		if err := c.store(next); err != nil {
			return nil, SWMemoryError
		}
	}
	c.img = next
	return out, SWNativeOK
}

func (c *Card) readFile(no byte) ([]byte, uint16) {
	id := c.img.Identity()
	switch no {
	case FileIdentity:
		return id.identityFile(), SWNativeOK
	case FileBinding:
		return id.bindingFile(), SWNativeOK
	case FileVouchers:
		b := []byte{0}
		for _, s := range c.img.Slots {
			if s.State != SlotEmpty {
				b[0]++
				b = s.marshal(b)
			}
		}
		return b, SWNativeOK
	case FileReceipts:
		b := []byte{byte(len(c.img.Receipts))}
		for _, r := range c.img.Receipts {
			b = r.marshal(b)
		}
		return b, SWNativeOK
	case FileFeedback:
		if c.img.Feedback == nil {
			return nil, SWNativeOK
		}
		return c.img.Feedback.marshal(), SWNativeOK
	}
	return nil, SWNoSuchFile
}

func personalize(img *Image, data []byte) uint16 {
	if img.Lifecycle != Blank {
		return SWPermissionDenied
	}
	p, err := parsePersonalization(data)
	if err != nil {
		return SWParameterError
	}
	img.Lifecycle = Personalized
	img.Key = p.Key
	img.KeyVersion = p.KeyVersion
	img.Kind = p.Kind
	img.MeterID = p.MeterID
	img.Issued = unix32(p.Issued)
	return SWNativeOK
}

// loadVoucher stores a voucher in a free slot. The card reads the voucher's
// meter and sequence (it cannot check the signature: it holds no public key
// and needs none) to refuse a voucher for another meter, of the wrong kind
// for this card, or already on the card.
func loadVoucher(img *Image, data []byte) ([]byte, uint16) {
	if img.Lifecycle != Personalized {
		return nil, SWPermissionDenied
	}
	if len(data) > MaxVoucherSize {
		return nil, SWLengthError
	}
	v, err := voucher.Parse(data)
	if err != nil {
		return nil, SWParameterError
	}
	if v.MeterID != img.MeterID || v.Kind.Engineering() != (img.Kind == KindEngineering) {
		return nil, SWPermissionDenied
	}
	for _, s := range img.Slots {
		if s.State != SlotEmpty && s.Sequence == v.Sequence {
			return nil, SWDuplicate
		}
	}
	// The first empty slot, else the consumed slot with the oldest voucher.
	free := slices.IndexFunc(img.Slots[:], func(s Slot) bool { return s.State == SlotEmpty })
	if free < 0 {
		for i, s := range img.Slots {
			if s.State == SlotConsumed && (free < 0 || s.Sequence < img.Slots[free].Sequence) {
				free = i
			}
		}
	}
	if free < 0 {
		return nil, SWBoundaryError
	}
	img.Slots[free] = Slot{Index: free, State: SlotPending, MeterID: v.MeterID, Sequence: v.Sequence, Voucher: clone(data)}
	return []byte{byte(free)}, SWNativeOK
}

// writeReceipt is the card's half of the transfer's commit: store the
// meter's receipt and mark the voucher consumed, in one image update. A
// repeat for a voucher already consumed with the same sequence succeeds
// without a second receipt, so a meter that lost the card's answer can
// simply try again.
func writeReceipt(img *Image, slot int, data []byte) uint16 {
	if img.Lifecycle != Personalized {
		return SWPermissionDenied
	}
	if slot >= Slots {
		return SWBoundaryError
	}
	r, rest, err := parseReceipt(data)
	if err != nil || len(rest) != 0 {
		return SWParameterError
	}
	s := &img.Slots[slot]
	switch {
	case s.State == SlotConsumed && s.Sequence == r.Sequence:
		return SWNativeOK
	case s.State != SlotPending || s.Sequence != r.Sequence:
		return SWParameterError
	}
	s.State = SlotConsumed
	img.Receipts = append(img.Receipts, r)
	if n := len(img.Receipts); n > MaxReceipts {
		img.Receipts = slices.Clone(img.Receipts[n-MaxReceipts:])
	}
	return SWNativeOK
}

// changeKey replaces the card key of a personalized card, under a session
// opened with the current one: how cards follow their meter through a key
// change. The binding (meter, kind) cannot change.
func changeKey(img *Image, data []byte) uint16 {
	if img.Lifecycle != Personalized {
		return SWPermissionDenied
	}
	if len(data) != KeySize+1 {
		return SWLengthError
	}
	img.Key = clone(data[:KeySize])
	img.KeyVersion = data[KeySize]
	return SWNativeOK
}

func writeFeedback(img *Image, data []byte) uint16 {
	if img.Lifecycle != Personalized {
		return SWPermissionDenied
	}
	f, err := parseFeedback(data)
	if err != nil {
		return SWParameterError
	}
	img.Feedback = &f
	return SWNativeOK
}
