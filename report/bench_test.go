package report

import (
	"context"
	"fmt"
	"io"
	"testing"
	"time"

	"sluice/store/storetest"
	"sluice/vend"
)

// BenchmarkReports streams each report over 1000 purchases to a CSV sink
// that discards it. B/op counts what is allocated along the way (every
// receipt is decoded, about 3.5 kB per purchase for the journal), none of
// it kept past its row: what stays in memory is the summary lines.
func BenchmarkReports(b *testing.B) {
	db := storetest.OpenSQLite(b, false)
	e := newEnv(b, db, day1)
	ctx := context.Background()
	if _, err := e.svc.Deposit(ctx, e.supervisor, vend.DepositRequest{Vendor: "SHOP2", AmountCents: 100_000_000, Reference: "BIG"}); err != nil {
		b.Fatal(err)
	}
	const n = 1000
	for i := range n {
		e.now = day1.Add(time.Duration(i) * time.Minute)
		if _, err := e.svc.Purchase(ctx, e.cashier2, fmt.Sprintf("b-%d", i), vend.PurchaseRequest{Meter: cardMeter, AmountCents: 2000 + int64(i%7)*100}); err != nil {
			b.Fatal(err)
		}
	}
	s := New(db, time.UTC, nil)
	p := Params{From: day1.AddDate(0, 0, -1), To: day1.AddDate(0, 0, 2)}
	for _, name := range []string{"vends", "sales", "settlement", "tokens"} {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				sink, _ := NewSink(CSV, io.Discard)
				if _, err := s.Run(ctx, name, p, sink); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "purchases/s")
		})
	}
}
