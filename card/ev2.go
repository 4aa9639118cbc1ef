package card

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"

	"sluice/cmac"
)

// This file is the cryptographic core of the card protocol, the public NXP
// "EV2" scheme (NTAG 424 DNA datasheet section 9, AN12196): AES-128 3-pass
// mutual authentication, session keys derived with AES-CMAC, and
// CommMode.Full secure messaging (AES-CBC encryption under a per-command IV,
// then an 8-byte truncated CMAC over the command code, counter, transaction
// identifier, header and ciphertext). It is pure: randomness comes in as
// arguments.

// KeySize is the size of every card key and session key (AES-128).
const KeySize = 16

// Sentinel errors of the secure channel; callers branch on them.
var (
	// ErrAuth: the other side failed to prove it holds the key (its RndA' or
	// RndB' did not match), or the card refused the authentication.
	ErrAuth = errors.New("card: mutual authentication failed")
	// ErrIntegrity: a MAC or padding check failed; the session is over.
	ErrIntegrity = errors.New("card: secure messaging integrity check failed")
	// ErrCounter: the command counter would wrap; a new session is needed.
	ErrCounter = errors.New("card: command counter exhausted")
)

// Lengths of the authentication messages.
const (
	rndSize = 16
	tiSize  = 4
	capSize = 6 // PDcap2 and PCDcap2
	macSize = 8 // truncated CMAC
)

// rotl returns b rotated left by one byte (RndA' and RndB').
func rotl(b []byte) []byte {
	return append(clone(b[1:]), b[0])
}

func cbcEncrypt(block cipher.Block, iv, data []byte) []byte {
	out := make([]byte, len(data))
	cipher.NewCBCEncrypter(block, iv).CryptBlocks(out, data)
	return out
}

func cbcDecrypt(block cipher.Block, iv, data []byte) []byte {
	out := make([]byte, len(data))
	cipher.NewCBCDecrypter(block, iv).CryptBlocks(out, data)
	return out
}

var zeroIV = make([]byte, aes.BlockSize)

// sessionVector builds SV1 (prefix A5 5A) or SV2 (prefix 5A A5):
//
//	prefix(2) 00 01 00 80 RndA[15..14] (RndA[13..8] xor RndB[15..10]) RndB[9..0] RndA[7..0]
//
// with bytes numbered from 15 (first) down to 0 (last), as the datasheet does.
func sessionVector(p0, p1 byte, rndA, rndB []byte) []byte {
	sv := make([]byte, 0, 32)
	sv = append(sv, p0, p1, 0x00, 0x01, 0x00, 0x80)
	sv = append(sv, rndA[0:2]...)
	x := make([]byte, 6)
	subtle.XORBytes(x, rndA[2:8], rndB[0:6])
	sv = append(sv, x...)
	sv = append(sv, rndB[6:16]...)
	sv = append(sv, rndA[8:16]...)
	return sv
}

// channel is an authenticated EV2 session: the two session keys, the
// transaction identifier chosen by the card and the command counter. Both
// ends hold one; they stay in step because every command and every response
// is bound to the counter.
type channel struct {
	encKey, macKey [KeySize]byte
	enc            cipher.Block
	mac            *cmac.MAC
	ti             [tiSize]byte
	ctr            uint16
}

func newChannel(key, rndA, rndB []byte, ti []byte) (*channel, error) {
	encKey, err := cmac.Sum(key, sessionVector(0xA5, 0x5A, rndA, rndB))
	if err != nil {
		return nil, err
	}
	macKey, err := cmac.Sum(key, sessionVector(0x5A, 0xA5, rndA, rndB))
	if err != nil {
		return nil, err
	}
	ch := &channel{}
	copy(ch.encKey[:], encKey)
	copy(ch.macKey[:], macKey)
	copy(ch.ti[:], ti)
	if ch.enc, err = aes.NewCipher(ch.encKey[:]); err != nil {
		return nil, err
	}
	if ch.mac, err = cmac.New(ch.macKey[:]); err != nil {
		return nil, err
	}
	return ch, nil
}

// iv is E(SesAuthENCKey, p0 p1 TI CmdCtr(LE) 00*8): A5 5A for commands,
// 5A A5 for responses.
func (ch *channel) iv(p0, p1 byte, ctr uint16) []byte {
	b := make([]byte, 0, aes.BlockSize)
	b = append(b, p0, p1)
	b = append(b, ch.ti[:]...)
	b = binary.LittleEndian.AppendUint16(b, ctr)
	b = append(b, make([]byte, 8)...)
	ch.enc.Encrypt(b, b)
	return b
}

// macT is the truncated CMAC: the bytes at odd indices of the full tag.
func (ch *channel) macT(code byte, ctr uint16, parts ...[]byte) []byte {
	ch.mac.Reset()
	ch.mac.Write([]byte{code})
	ch.mac.Write(binary.LittleEndian.AppendUint16(nil, ctr))
	ch.mac.Write(ch.ti[:])
	for _, p := range parts {
		ch.mac.Write(p)
	}
	full := ch.mac.Sum(nil)
	t := make([]byte, macSize)
	for i := range t {
		t[i] = full[2*i+1]
	}
	return t
}

// pad applies ISO/IEC 9797-1 method 2: always 80, then 00 to a block.
func pad(b []byte) []byte {
	n := aes.BlockSize - len(b)%aes.BlockSize
	p := make([]byte, len(b)+n)
	copy(p, b)
	p[len(b)] = 0x80
	return p
}

func unpad(b []byte) ([]byte, error) {
	for i := len(b) - 1; i >= 0 && i >= len(b)-aes.BlockSize; i-- {
		switch b[i] {
		case 0x00:
			continue
		case 0x80:
			return b[:i], nil
		}
		break
	}
	return nil, ErrIntegrity
}

// seal encrypts data (if any) under the IV for (p0 p1, ctr) and appends the
// truncated MAC over code, ctr, TI, header and the ciphertext. It returns
// header || ciphertext || MAC.
func (ch *channel) seal(p0, p1, code byte, ctr uint16, header, data []byte) []byte {
	var ct []byte
	if len(data) > 0 {
		ct = cbcEncrypt(ch.enc, ch.iv(p0, p1, ctr), pad(data))
	}
	out := make([]byte, 0, len(header)+len(ct)+macSize)
	out = append(out, header...)
	out = append(out, ct...)
	return append(out, ch.macT(code, ctr, header, ct)...)
}

// open checks the MAC of header || ciphertext || MAC before touching the
// ciphertext (encrypt-then-MAC: no padding oracle), then decrypts.
func (ch *channel) open(p0, p1, code byte, ctr uint16, headerLen int, body []byte) (header, data []byte, err error) {
	if len(body) < headerLen+macSize {
		return nil, nil, fmt.Errorf("%w: %d bytes, need header %d and MAC", ErrIntegrity, len(body), headerLen)
	}
	header = body[:headerLen]
	ct := body[headerLen : len(body)-macSize]
	if !cmac.Equal(body[len(body)-macSize:], ch.macT(code, ctr, header, ct)) {
		return nil, nil, fmt.Errorf("%w: MAC mismatch", ErrIntegrity)
	}
	if len(ct) == 0 {
		return clone(header), nil, nil
	}
	if len(ct)%aes.BlockSize != 0 {
		return nil, nil, fmt.Errorf("%w: ciphertext of %d bytes", ErrIntegrity, len(ct))
	}
	pt, err := unpad(cbcDecrypt(ch.enc, ch.iv(p0, p1, ctr), ct))
	if err != nil {
		return nil, nil, fmt.Errorf("%w: padding", err)
	}
	return clone(header), pt, nil
}

// sealCommand protects a command (reader side) with the current counter.
func (ch *channel) sealCommand(cmd byte, header, data []byte) ([]byte, error) {
	if ch.ctr == 0xFFFF {
		return nil, ErrCounter
	}
	return ch.seal(0xA5, 0x5A, cmd, ch.ctr, header, data), nil
}

// openCommand verifies and decrypts a command (card side).
func (ch *channel) openCommand(cmd byte, headerLen int, body []byte) (header, data []byte, err error) {
	if ch.ctr == 0xFFFF {
		return nil, nil, ErrCounter
	}
	return ch.open(0xA5, 0x5A, cmd, ch.ctr, headerLen, body)
}

// sealResponse protects a response (card side) under counter+1 and steps
// the counter: the command-response pair is complete.
func (ch *channel) sealResponse(rc byte, data []byte) []byte {
	ch.ctr++
	return ch.seal(0x5A, 0xA5, rc, ch.ctr, nil, data)
}

// openResponse verifies and decrypts a response (reader side) and steps the
// counter.
func (ch *channel) openResponse(rc byte, body []byte) ([]byte, error) {
	_, data, err := ch.open(0x5A, 0xA5, rc, ch.ctr+1, 0, body)
	if err != nil {
		return nil, err
	}
	ch.ctr++
	return data, nil
}

// AuthenticateEV2First, reader side.

// readerAuth holds what the reader knows between the two passes.
type readerAuth struct {
	key  []byte
	rndA []byte
	rndB []byte
}

// part2 answers the card's E(K, RndB) with E(K, RndA || RndB'), both under a
// zero IV.
func (a *readerAuth) part2(eRndB []byte) ([]byte, error) {
	if len(eRndB) != rndSize {
		return nil, fmt.Errorf("%w: E(RndB) of %d bytes", ErrAuth, len(eRndB))
	}
	block, err := aes.NewCipher(a.key)
	if err != nil {
		return nil, err
	}
	a.rndB = cbcDecrypt(block, zeroIV, eRndB)
	msg := append(clone(a.rndA), rotl(a.rndB)...)
	return cbcEncrypt(block, zeroIV, msg), nil
}

// finish decrypts the card's E(K, TI || RndA' || PDcap2 || PCDcap2), checks
// RndA' (the card's proof that it holds the key: without it a fake card
// could pose as any card) and derives the session.
func (a *readerAuth) finish(resp []byte) (*channel, error) {
	if len(resp) != tiSize+rndSize+2*capSize { // exactly two AES blocks
		return nil, fmt.Errorf("%w: card answer of %d bytes", ErrAuth, len(resp))
	}
	block, err := aes.NewCipher(a.key)
	if err != nil {
		return nil, err
	}
	pt := cbcDecrypt(block, zeroIV, resp)
	if subtle.ConstantTimeCompare(pt[tiSize:tiSize+rndSize], rotl(a.rndA)) != 1 {
		return nil, fmt.Errorf("%w: card's RndA' does not match", ErrAuth)
	}
	return newChannel(a.key, a.rndA, a.rndB, pt[:tiSize])
}

// AuthenticateEV2First, card side.

// cardAuthPart1 is the card's first answer, E(K, RndB).
func cardAuthPart1(key, rndB []byte) ([]byte, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cbcEncrypt(block, zeroIV, rndB), nil
}

// cardAuthPart2 checks the reader's RndB' and answers
// E(K, TI || RndA' || PDcap2 || PCDcap2), capabilities all zero.
func cardAuthPart2(key, rndB, msg, ti []byte) ([]byte, *channel, error) {
	if len(msg) != 2*rndSize {
		return nil, nil, fmt.Errorf("%w: E(RndA||RndB') of %d bytes", ErrAuth, len(msg))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, nil, err
	}
	pt := cbcDecrypt(block, zeroIV, msg)
	rndA := pt[:rndSize]
	if subtle.ConstantTimeCompare(pt[rndSize:], rotl(rndB)) != 1 {
		return nil, nil, fmt.Errorf("%w: reader's RndB' does not match", ErrAuth)
	}
	ans := make([]byte, 0, 2*aes.BlockSize)
	ans = append(ans, ti...)
	ans = append(ans, rotl(rndA)...)
	ans = append(ans, make([]byte, 2*capSize)...)
	ch, err := newChannel(key, rndA, rndB, ti)
	if err != nil {
		return nil, nil, err
	}
	return cbcEncrypt(block, zeroIV, ans), ch, nil
}
