package campaign

import (
	"context"
	"fmt"
	"testing"
	"time"

	"sluice/store/storetest"
)

// BenchmarkRolloverCampaign measures a TID rollover campaign end to end:
// per meter two decoder-key derivations in the key manager, a four-token
// key-change set, the meter row, the campaign row and an audit record, in
// batches of DefaultBatch per durable transaction. Run with -benchtime=Nx:
// each iteration starts a campaign over a fresh fleet.
func BenchmarkRolloverCampaign(b *testing.B) {
	const meters = 500
	for _, be := range storetest.Backends() {
		b.Run(be.Name, func(b *testing.B) {
			ctx := context.Background()
			var total time.Duration
			for i := range b.N {
				b.StopTimer()
				e := newEnv(b, be.Open(b, false), meters, 0)
				b.StartTimer()
				start := time.Now()
				c, _, err := e.svc.Start(ctx, "bench", Spec{Name: fmt.Sprint("bench-", i), Kind: KindSTS, SupplyGroup: sgc, KRN: 2, TI: -1, BaseDate: 2014})
				if err != nil {
					b.Fatal(err)
				}
				if _, err := e.svc.Approve(ctx, "bench-2", c.ID); err != nil {
					b.Fatal(err)
				}
				p, err := e.svc.Run(ctx, c.ID, "bench", nil)
				if err != nil || p.Issued != meters {
					b.Fatalf("%+v %v", p, err)
				}
				total += time.Since(start)
			}
			b.ReportMetric(float64(meters*b.N)/total.Seconds(), "meters/s")
		})
	}
}
