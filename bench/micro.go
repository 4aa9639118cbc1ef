package bench

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	_ "embed"
	"fmt"
	"runtime"
	"time"

	"sluice/sts"
	"sluice/voucher"
)

// The IEC 62055-41 sample STA tables (published for the standard's worked
// example; production tables are licensed and never committed). They make
// EA07 measurable; the speed does not depend on the table contents.
//
//go:embed testdata/sample-sta-tables.json
var sampleTables []byte

var (
	benchPAN = sts.PAN("600727000000000009")
	benchID  = sts.KeyID{KT: 2, SGC: 123457, TI: 1, KRN: 1}
)

// stsCase is one way of sealing a credit token.
type stsCase struct {
	name   string
	ea     sts.EA
	dkga   string
	cached bool
}

var stsCases = []stsCase{
	{"sts.encode.ea11.cached", sts.EA11, "04", true},
	{"sts.encode.ea11.uncached", sts.EA11, "04", false},
	{"sts.encode.ea07.cached", sts.EA07, "02", true},
	{"sts.encode.ea07.uncached", sts.EA07, "02", false},
}

// encoder returns an op sealing n credit tokens and printing their digits.
// Uncached, each token pays what a head-end without a per-meter Coder cache
// pays: the decoder key derivation from the vending key and the key schedule.
func (c stsCase) encoder(tables *sts.STATables) (func(n int) error, error) {
	var vk []byte
	derive := func() ([]byte, error) {
		if c.dkga == "02" {
			return sts.DKGA02(vk, benchID, benchPAN)
		}
		return sts.DKGA04(vk, benchID, benchPAN, sts.Base2014, c.ea)
	}
	if c.dkga == "02" {
		vk = []byte{0xab, 0xab, 0xab, 0xab, 0xab, 0xab, 0xab, 0xab}
	} else {
		vk = []byte("\xab\xab\xab\xab\xab\xab\xab\xab\x94\x94\x94\x94\x94\x94\x94\x94\x01\x23\x45\x67")
	}
	dk, err := derive()
	if err != nil {
		return nil, err
	}
	coder, err := sts.NewCoder(c.ea, dk, tables)
	if err != nil {
		return nil, err
	}
	buf := make([]byte, 0, sts.Digits)
	var tid uint32
	return func(n int) error {
		for range n {
			cd := coder
			if !c.cached {
				dk, err := derive()
				if err != nil {
					return err
				}
				if cd, err = sts.NewCoder(c.ea, dk, tables); err != nil {
					return err
				}
			}
			tid = (tid + 1) & sts.MaxTID
			tok, err := cd.Credit(sts.SubWater, uint8(tid&0xf), tid, 123)
			if err != nil {
				return err
			}
			buf = tok.AppendDigits(buf[:0])
		}
		return nil
	}, nil
}

func runSTS(ctx context.Context, o *Options) ([]Result, error) {
	tables, err := sts.ParseSTATables(sampleTables)
	if err != nil {
		return nil, err
	}
	var out []Result
	cores := runtime.GOMAXPROCS(0)
	for _, c := range stsCases {
		goal := ""
		if c.cached {
			goal = "≥ 1000000"
		}
		op, err := c.encoder(tables)
		if err != nil {
			return out, fmt.Errorf("%s: %w", c.name, err)
		}
		r, err := rate(o.CPUTime, op)
		if err != nil {
			return out, fmt.Errorf("%s: %w", c.name, err)
		}
		p := map[string]any{"ea": c.ea.String(), "dkga": c.dkga, "cores": 1}
		out = append(out, Result{Name: c.name, Value: r, Unit: "tokens/s/core", Params: p, Goal: goal})
		o.say("%s: %.0f tokens/s on one core", c.name, r)
		if ctx.Err() != nil {
			return out, ctx.Err()
		}
	}
	// The cached EA11 path on every core: how the head-end's token
	// throughput grows with cores (no shared state but the immutable Coder).
	c := stsCases[0]
	all, err := parallelRate(o.CPUTime, cores, func() (func(int) error, error) { return c.encoder(tables) })
	if err != nil {
		return out, err
	}
	out = append(out, Result{Name: c.name + ".allcores", Value: all, Unit: "tokens/s",
		Params: map[string]any{"ea": "11", "dkga": "04", "cores": cores}})
	o.say("%s on %d cores: %.0f tokens/s", c.name, cores, all)
	return out, nil
}

// decoderOp accepts n tokens on a meter's STS decoder, from their 20-digit
// form: parse, decrypt, CRC, TID memory. The state is reset to a fresh
// decoder when the prepared tokens run out (once per 4096).
func decoderOp() (func(n int) error, error) {
	key := make([]byte, 16)
	for i := range key {
		key[i] = byte(3 * i)
	}
	d0, err := sts.NewDecoder(sts.DecoderConfig{EA: sts.EA11, Key: key, ID: benchID, KEN: 255, Base: sts.Base2014,
		CreditSubclasses: 1<<sts.SubWater | 1<<sts.SubWaterCurrency})
	if err != nil {
		return nil, err
	}
	c, err := sts.NewEA11(key)
	if err != nil {
		return nil, err
	}
	toks := make([]string, 4096)
	for i := range toks {
		t, err := c.Credit(sts.SubWater, uint8(i&0xf), uint32(i+1), 10)
		if err != nil {
			return nil, err
		}
		toks[i] = t.String()
	}
	d, i := d0, 0
	return func(n int) error {
		for range n {
			if i == len(toks) {
				d, i = d0, 0
			}
			if _, err := d.AcceptDigits(toks[i]); err != nil {
				return err
			}
			i++
		}
		return nil
	}, nil
}

// voucherOp opens (parses and verifies) n signed credit vouchers as a meter
// does.
func voucherOp() (func(n int) error, error) {
	seed := sha256.Sum256([]byte("sluice bench credit key"))
	k := ed25519.NewKeyFromSeed(seed[:])
	ring := voucher.Keyring{{Role: voucher.RoleCredit, Public: k.Public().(ed25519.PublicKey)}}
	issued := time.Date(2026, 3, 2, 8, 0, 0, 0, time.UTC)
	b, err := voucher.Sign(&voucher.Voucher{Kind: voucher.KindCredit, MeterID: 1000, Sequence: 1, Issued: issued,
		Expires: issued.Add(90 * 24 * time.Hour), Unit: voucher.UnitLitres, Quantity: 6000}, k)
	if err != nil {
		return nil, err
	}
	now := issued.Add(time.Hour)
	return func(n int) error {
		for range n {
			if _, err := voucher.Open(b, ring, 1000, now); err != nil {
				return err
			}
		}
		return nil
	}, nil
}

func runMeterSide(ctx context.Context, o *Options) ([]Result, error) {
	var out []Result
	for _, m := range []struct {
		name, unit string
		mk         func() (func(int) error, error)
		what       string
	}{
		{"meter.sts.accept", "tokens/s/core", decoderOp, "sts.Decoder.AcceptDigits, EA11"},
		{"meter.voucher.open", "vouchers/s/core", voucherOp, "voucher.Open, Ed25519"},
	} {
		op, err := m.mk()
		if err != nil {
			return out, fmt.Errorf("%s: %w", m.name, err)
		}
		r, err := rate(o.CPUTime, op)
		if err != nil {
			return out, fmt.Errorf("%s: %w", m.name, err)
		}
		out = append(out, Result{Name: m.name, Value: r, Unit: m.unit, Params: map[string]any{"path": m.what, "cores": 1}})
		o.say("%s: %.0f %s", m.name, r, m.unit)
		if ctx.Err() != nil {
			return out, ctx.Err()
		}
	}
	return out, nil
}
