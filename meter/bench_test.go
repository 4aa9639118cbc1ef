package meter

import (
	"runtime"
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

// BenchmarkBoot: a cold boot, both banks read and the state decoded.
func BenchmarkBoot(b *testing.B) {
	v := newVend(b, "supply group 600727")
	r := stsRig(b, DefaultParams(), v)
	r.load(t0, r.creditVoucher(100))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := Boot(r.ee, Deps{}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkFullMeterMemory: the heap one full Meter takes (EEPROM image,
// state, STS decoder state), which is why the fleet emulator keeps a
// Core per meter instead.
func BenchmarkFullMeterMemory(b *testing.B) {
	const n = 1000
	v := newVend(b, "supply group 600727")
	var per float64
	for i := 0; i < b.N; i++ {
		ms := make([]*Meter, n)
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		for j := range ms {
			ee := NewEEPROM(DefaultEEPROMSize, DefaultPageSize)
			cfg := v.cfg
			if err := Format(ee, Provision{ID: uint64(j + 1), Params: DefaultParams(), Keys: testKeys(), STS: &cfg}); err != nil {
				b.Fatal(err)
			}
			m, err := Boot(ee, Deps{})
			if err != nil {
				b.Fatal(err)
			}
			ms[j] = m
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		per = float64(after.HeapAlloc-before.HeapAlloc) / n
		runtime.KeepAlive(ms)
	}
	b.ReportMetric(per, "bytes/meter")
}
