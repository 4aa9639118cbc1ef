package meter

import (
	"testing"

	"sluice/sts"
	"sluice/voucher"
)

// BenchmarkTokenAccept: STS credit tokens (EA11) accepted per second,
// journal commits to the emulated EEPROM included (two per token).
func BenchmarkTokenAccept(b *testing.B) {
	v := newVend(b, "supply group 600727")
	r := stsRig(b, DefaultParams(), v)
	toks := make([]string, b.N)
	for i := range toks {
		tok, err := v.coder.Credit(sts.SubWater, 0, v.next(), 1)
		if err != nil {
			b.Fatal(err)
		}
		toks[i] = tok.String()
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := r.m.EnterToken(t0, toks[i]); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "tokens/s")
}

// BenchmarkVoucherAccept: signed credit vouchers accepted per second
// (Ed25519 verification and one journal commit each).
func BenchmarkVoucherAccept(b *testing.B) {
	r := newRig(b, DefaultParams(), Deps{}, nil)
	vs := make([][]byte, b.N)
	for i := range vs {
		vs[i] = r.sign(voucher.Voucher{Kind: voucher.KindCredit, Unit: voucher.UnitLitres, Quantity: 1})
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := r.m.LoadVoucher(t0, vs[i], FromRemote); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "vouchers/s")
}

// BenchmarkTick: consumption ticks journaled per second.
func BenchmarkTick(b *testing.B) {
	r := newRig(b, DefaultParams(), Deps{}, nil)
	r.load(t0, r.creditVoucher(1<<30))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := r.m.Tick(t0, 1, 0); err != nil {
			b.Fatal(err)
		}
	}
}
