package card

import (
	"bytes"
	"crypto/ed25519"
	"encoding/binary"
	"math/rand/v2"
	"testing"
	"time"

	"sluice/voucher"
)

// FuzzCommandHandler opens a real session with the card and then sends it
// well-protected commands with fuzzed instruction, header and data, so the
// fuzzer reaches the handlers behind the MAC check (personalize, load,
// receipt, feedback, read). The card must answer every one with a valid
// status, keep its memory valid, and answer successes in a way the reader's
// channel opens.
func FuzzCommandHandler(f *testing.F) {
	key := bytes.Repeat([]byte{0x42}, KeySize)
	img, _ := NewBlank(UID{1, 2, 3, 4, 5, 6, 7}, key)
	img.Lifecycle, img.Kind, img.MeterID, img.KeyVersion = Personalized, KindCustomer, 42, 1
	blank, _ := NewBlank(UID{1, 2, 3, 4, 5, 6, 7}, key)

	_, signer, _ := ed25519.GenerateKey(rand.NewChaCha8([32]byte{1}))
	now := time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC)
	v, err := voucher.Sign(&voucher.Voucher{Kind: voucher.KindCredit, MeterID: 42, Sequence: 7,
		Issued: now, Expires: now.Add(time.Hour), Unit: voucher.UnitLitres, Quantity: 5}, signer)
	if err != nil {
		f.Fatal(err)
	}
	receipt := Receipt{Sequence: 7, Status: Loaded, Amount: 5, Balance: 5, At: now}.marshal(nil)
	f.Add(false, byte(insLoadVoucher), []byte{}, v, byte(insWriteReceipt), []byte{0}, receipt)
	f.Add(false, byte(insReadData), []byte{FileVouchers}, []byte{}, byte(insReadData), []byte{FileReceipts}, []byte{})
	f.Add(false, byte(insWriteFeedback), []byte{}, Feedback{At: now, TotalLitres: 1}.marshal(), byte(insReadData), []byte{FileFeedback}, []byte{})
	f.Add(false, byte(insChangeKey), []byte{}, append(bytes.Repeat([]byte{7}, 16), 2), byte(insReadData), []byte{FileBinding}, []byte{})
	p, _ := Personalization{Key: key, KeyVersion: 1, Kind: KindCustomer, MeterID: 9, Issued: now}.marshal()
	f.Add(true, byte(insPersonalize), []byte{}, p, byte(insReadData), []byte{FileIdentity}, []byte{})

	f.Fuzz(func(t *testing.T, isBlank bool, ins1 byte, hdr1, data1 []byte, ins2 byte, hdr2, data2 []byte) {
		im := img
		if isBlank {
			im = blank
		}
		c, err := New(im, rand.NewChaCha8([32]byte{2}), nil)
		if err != nil {
			t.Fatal(err)
		}
		ch := authenticateForTest(t, c, key)
		for _, cmd := range []struct {
			ins       byte
			hdr, data []byte
		}{{ins1, hdr1, data1}, {ins2, hdr2, data2}} {
			if ch == nil {
				return
			}
			body, err := ch.sealCommand(cmd.ins, cmd.hdr, cmd.data)
			if err != nil {
				return
			}
			enc, err := Command{CLA: claNative, INS: cmd.ins, Data: body, Ne: MaxExtendedNe}.Marshal()
			if err != nil {
				return
			}
			r, err := ParseResponse(c.Process(enc))
			if err != nil {
				t.Fatal(err)
			}
			if im := c.Image(); im.Validate() != nil {
				t.Fatalf("memory invalid after %02X: %v", cmd.ins, im.Validate())
			}
			if r.SW != SWNativeOK {
				ch = nil
				continue
			}
			if _, err := ch.openResponse(0x00, r.Data); err != nil {
				t.Fatalf("card's answer to %02X does not open: %v", cmd.ins, err)
			}
			if cmd.ins == insPersonalize || cmd.ins == insChangeKey {
				ch = nil
			}
		}
	})
}

func authenticateForTest(t *testing.T, c *Card, key []byte) *channel {
	t.Helper()
	process := func(cmd Command) Response {
		enc, _ := cmd.Marshal()
		r, _ := ParseResponse(c.Process(enc))
		return r
	}
	if r := process(Command{CLA: claISO, INS: insSelect, P1: 4, Data: AID()}); r.SW != SWOK {
		t.Fatalf("select %04X", r.SW)
	}
	a := &readerAuth{key: key, rndA: binary.BigEndian.AppendUint64(make([]byte, 8), 99)}
	r := process(Command{CLA: claNative, INS: insAuthenticate, Data: []byte{0, 0}, Ne: 256})
	p2, err := a.part2(r.Data)
	if err != nil {
		t.Fatal(err)
	}
	r = process(Command{CLA: claNative, INS: insAdditional, Data: p2, Ne: 256})
	ch, err := a.finish(r.Data)
	if err != nil {
		t.Fatal(err)
	}
	return ch
}
