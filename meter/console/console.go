// Package console is the bench for one reference meter: a line-oriented
// prompt where a person types what a customer, an engineer, the plumbing
// and the clock would do to a meter (keypad entries, flow, tamper, time,
// power cuts) and sees what the meter shows, logs and does with its valve.
//
// The meter under test is the real meter.Meter on an emulated EEPROM. The
// optional Demo vending point mints real STS tokens (under the meter's
// decoder key, from the supply group's vending key) and real signed
// vouchers, so the bench works without a head-end; it is labelled as demo
// because a real vending point never shares a process with a meter.
package console

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"sluice/meter"
	"sluice/sts"
	"sluice/voucher"
)

// Bench is one meter on the bench.
type Bench struct {
	Storage *meter.EEPROM
	Deps    meter.Deps
	// Clock is the meter's clock; the bench adds the time skipped with
	// "wait" to it.
	Clock func() time.Time
	// Save, when set, stores the EEPROM image after every command (the
	// meter's storage outlives the process, as it outlives a power cut).
	Save func(image []byte) error
	Demo *Demo

	m    *meter.Meter
	skew time.Duration
	seen uint32 // newest event already shown
}

// Demo is a vending point for the bench: an STS coder under the meter's
// decoder key and a credit signing key the meter trusts.
type Demo struct {
	Coder  *sts.Coder
	Base   sts.BaseDate
	Credit ed25519.PrivateKey
	Manage ed25519.PrivateKey
	// CardKey is the meter's card key, which the vending office (through
	// its KMS) knows in order to issue cards bound to the meter.
	CardKey []byte
	// LastTID and Seq continue where the meter's memory is: the TID of the
	// last token minted and the last voucher sequence number used.
	LastTID uint32
	Seq     uint32
}

// Boot starts the bench's meter from its storage.
func (b *Bench) Boot() error {
	m, err := meter.Boot(b.Storage, b.Deps)
	if err != nil {
		return err
	}
	b.m, b.seen = m, m.Snapshot().EventSeq
	return nil
}

// Meter returns the meter on the bench.
func (b *Bench) Meter() *meter.Meter { return b.m }

func (b *Bench) now() time.Time { return b.Clock().Add(b.skew) }

// Help is the list of bench commands.
const Help = `Keypad:
  <20 digits>            type a token (spaces and dashes allowed)
  *1 credit  *2 emergency credit  *3 last event  *4 volume  *5 meter ID  *6 status
Plumbing and sensors:
  flow LITRES [REVERSE]  water through the meter (forward, and reverse)
  magnet | cover | battery   a sensor fires
  wait DURATION          let time pass (e.g. 30m, 8h), then settle the valve
Upstream:
  voucher HEX            a remote top-up or engineering voucher
  card FILE              insert the emulated card kept in FILE (JSON image, as sluice card emulate keeps it)
  status | events        the meter's state and event log
  dump                   the flash image as a readout would see it (hex)
  power                  cut the power and boot again
Demo vending point (not part of a meter):
  vend LITRES            mint an STS water token for this meter
  topup LITRES           sign a credit voucher and deliver it remotely
  sellcard FILE LITRES   put a credit voucher on the card in FILE (issuing a new card if FILE is missing)
  quit`

// Run reads commands from in until "quit", end of input or ctx ends.
func (b *Bench) Run(ctx context.Context, in io.Reader, out io.Writer) error {
	if b.m == nil {
		if err := b.Boot(); err != nil {
			return err
		}
	}
	sc := bufio.NewScanner(in)
	fmt.Fprintf(out, "meter %d, %s. Type help for commands.\n", b.m.ID(), b.m.Snapshot().StatusText(b.now()))
	for {
		fmt.Fprint(out, "> ")
		if ctx.Err() != nil || !sc.Scan() {
			fmt.Fprintln(out)
			return sc.Err()
		}
		quit, err := b.Exec(sc.Text(), out)
		if err != nil {
			fmt.Fprintf(out, "error: %v\n", err)
		}
		if quit {
			return nil
		}
	}
}

// Exec runs one command line. Meter rejections are printed, not returned;
// the error is for what stops the bench (storage failures).
func (b *Bench) Exec(line string, out io.Writer) (quit bool, err error) {
	f := strings.Fields(line)
	if len(f) == 0 {
		return false, nil
	}
	now := b.now()
	m := b.m
	switch cmd := strings.ToLower(f[0]); {
	case cmd == "quit" || cmd == "exit":
		return true, nil
	case cmd == "help" || cmd == "?":
		fmt.Fprintln(out, Help)
		return false, nil
	case cmd[0] == '*' || cmd[0] == '#' || (cmd[0] >= '0' && cmd[0] <= '9'):
		d, kerr := m.Keypad(now, line)
		fmt.Fprintln(out, d.Text)
		if kerr != nil {
			fmt.Fprintf(out, "  (%v)\n", kerr)
		}
	case cmd == "flow":
		fwd, rev, perr := flowArgs(f[1:])
		if perr != nil {
			return false, perr
		}
		// The sensor counts pulses; the bench speaks litres.
		ml := uint64(m.Params().PulseML)
		pulses := func(l uint32) uint32 { return uint32(min(uint64(l)*1000/ml, 1<<32-1)) }
		if err := m.Tick(now, pulses(fwd), pulses(rev)); err != nil {
			return false, err
		}
		b.status(out, now)
	case cmd == "magnet" || cmd == "cover" || cmd == "battery":
		t := map[string]meter.Tamper{"magnet": meter.TamperMagnet, "cover": meter.TamperCover, "battery": meter.TamperBattery}[cmd]
		if err := m.Sense(now, t); err != nil {
			return false, err
		}
		b.status(out, now)
	case cmd == "wait":
		if len(f) != 2 {
			return false, errors.New("wait: want one duration, e.g. wait 8h")
		}
		d, perr := time.ParseDuration(f[1])
		if perr != nil || d < 0 {
			return false, fmt.Errorf("wait: %q is not a positive duration", f[1])
		}
		b.skew += d
		now = b.now()
		if err := m.Tick(now, 0, 0); err != nil {
			return false, err
		}
		fmt.Fprintf(out, "%s\n", now.UTC().Format(time.RFC1123))
		b.status(out, now)
	case cmd == "voucher":
		if len(f) != 2 {
			return false, errors.New("voucher: want the voucher in hex")
		}
		v, herr := hex.DecodeString(f[1])
		if herr != nil {
			return false, fmt.Errorf("voucher: not hex: %v", herr)
		}
		b.deliver(out, now, v)
	case cmd == "card":
		if len(f) != 2 {
			return false, errors.New("card: want the card image file")
		}
		if err := b.insert(out, now, f[1]); err != nil {
			return false, err
		}
	case cmd == "sellcard":
		if b.Demo == nil {
			return false, errors.New("no demo vending point on this bench")
		}
		if len(f) != 3 {
			return false, errors.New("sellcard: want FILE LITRES")
		}
		l, perr := strconv.ParseUint(f[2], 10, 32)
		if perr != nil || l == 0 {
			return false, fmt.Errorf("sellcard: %q is not a positive number of litres", f[2])
		}
		if err := b.sellCard(out, now, f[1], uint32(l)); err != nil {
			return false, err
		}
	case cmd == "status":
		sn := m.Snapshot()
		fmt.Fprintf(out, "meter %d at %s\ncredit %d %s, forward %d L, reverse %d L, loaded %d %s\n%s\n",
			sn.ID, now.UTC().Format(time.RFC3339), sn.Credit, sn.Unit, sn.Forward, sn.Reverse, sn.Loaded, sn.Unit, sn.StatusText(now))
	case cmd == "events":
		for _, e := range m.Events(0) {
			fmt.Fprintln(out, e)
		}
	case cmd == "dump":
		img, derr := meter.Dump(b.Storage)
		if derr != nil {
			return false, derr
		}
		fmt.Fprint(out, hex.Dump(img))
	case cmd == "power":
		if err := b.Boot(); err != nil {
			return false, err
		}
		fmt.Fprintln(out, "power cycled")
		b.status(out, now)
	case cmd == "vend" || cmd == "topup":
		if b.Demo == nil {
			return false, errors.New("no demo vending point on this bench")
		}
		if len(f) != 2 {
			return false, fmt.Errorf("%s: want litres", cmd)
		}
		l, perr := strconv.ParseUint(f[1], 10, 32)
		if perr != nil || l == 0 {
			return false, fmt.Errorf("%s: %q is not a positive number of litres", cmd, f[1])
		}
		if cmd == "vend" {
			tok, verr := b.Demo.Token(now, l)
			if verr != nil {
				return false, verr
			}
			fmt.Fprintf(out, "token %s (%d L)\n", tok, (l+99)/100*100)
			break
		}
		v, verr := b.Demo.Voucher(m.ID(), now, uint32(l))
		if verr != nil {
			return false, verr
		}
		fmt.Fprintf(out, "voucher %x\n", v)
		b.deliver(out, now, v)
	default:
		return false, fmt.Errorf("unknown command %q (help lists them)", f[0])
	}
	// What the meter logged because of this command, as the head-end
	// would see it; the events command lists the whole log.
	if cmd := strings.ToLower(f[0]); cmd != "events" && cmd != "dump" {
		for _, e := range m.Events(b.seen) {
			fmt.Fprintf(out, "  event %s\n", e)
		}
	}
	if sn := b.m.Snapshot(); sn.EventSeq > b.seen {
		b.seen = sn.EventSeq
	}
	if b.Save != nil {
		img, derr := meter.Dump(b.Storage)
		if derr != nil {
			return false, derr
		}
		if err := b.Save(img); err != nil {
			return false, fmt.Errorf("saving the flash image: %w", err)
		}
	}
	return false, nil
}

func (b *Bench) deliver(out io.Writer, now time.Time, v []byte) {
	rc, err := b.m.LoadVoucher(now, v, meter.FromRemote)
	switch {
	case errors.Is(err, meter.ErrHalted):
		fmt.Fprintf(out, "meter halted: %v\n", err)
	case err != nil:
		fmt.Fprintf(out, "voucher %d rejected: %v\n", rc.Seq, err)
	default:
		fmt.Fprintf(out, "voucher %d loaded: +%d, credit %d\n", rc.Seq, rc.Amount, rc.Credit)
	}
}

func (b *Bench) status(out io.Writer, now time.Time) {
	sn := b.m.Snapshot()
	fmt.Fprintf(out, "credit %d %s, %s\n", sn.Credit, sn.Unit, sn.StatusText(now))
}

func flowArgs(a []string) (fwd, rev uint32, err error) {
	if len(a) < 1 || len(a) > 2 {
		return 0, 0, errors.New("flow: want LITRES [REVERSE]")
	}
	v := [2]uint32{}
	for i, s := range a {
		n, perr := strconv.ParseUint(s, 10, 32)
		if perr != nil {
			return 0, 0, fmt.Errorf("flow: %q is not a number of litres", s)
		}
		v[i] = uint32(n)
	}
	return v[0], v[1], nil
}

// Token mints an STS water token for litres (rounded up to 0.1 m3).
func (d *Demo) Token(now time.Time, litres uint64) (string, error) {
	tid, err := sts.NextTID(d.Base, int64(d.LastTID), now)
	if err != nil {
		return "", err
	}
	d.LastTID = tid
	tok, err := d.Coder.Credit(sts.SubWater, 0, tid, (litres+99)/100)
	if err != nil {
		return "", err
	}
	return tok.String(), nil
}

// Voucher signs a credit voucher for litres, valid for a week.
func (d *Demo) Voucher(meterID uint64, now time.Time, litres uint32) ([]byte, error) {
	d.Seq++
	v := voucher.Voucher{Kind: voucher.KindCredit, MeterID: meterID, Sequence: d.Seq, Issued: now,
		Expires: now.Add(7 * 24 * time.Hour), Unit: voucher.UnitLitres, Quantity: litres}
	return voucher.Sign(&v, d.Credit)
}
