package webhook_test

import (
	"context"
	"log/slog"
	"net/http"
	"slices"
	"time"

	"sluice/auth"
	"sluice/channel"
	"sluice/kms"
	"sluice/report"
	"sluice/server"
	"sluice/store"
	"sluice/vend"
	"sluice/webhook"
)

// The head-end's wiring of reports, payment channels and webhooks: their
// routes join the server's table, the streaming report export is mounted
// beside the server's handler, and the dispatcher runs with the head-end's
// other background work (it needs the audit sealer running too).
func Example_wiring() {
	wire := func(ctx context.Context, db store.Store, km kms.KeyManager, as *auth.Service, vs *vend.Service, log *slog.Logger, loc *time.Location) (http.Handler, func(), error) {
		box, err := webhook.NewBox(ctx, km) // subscriber secrets sealed under a KMS-derived key
		if err != nil {
			return nil, nil, err
		}
		rep := report.New(db, loc, nil)
		ch := channel.New(db, vs, nil, "ZAR")
		extra := slices.Concat(report.Routes(rep), channel.Routes(ch), webhook.Routes(webhook.NewAdmin(db, box, nil)))
		srv := server.New(server.Config{Store: db, Auth: as, Vend: vs, Logger: log, Extra: extra})
		mux := http.NewServeMux()
		mux.Handle("GET /api/v1/reports/{name}/export", rep.ExportHandler(as))
		mux.Handle("/", srv.Handler())

		bg, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() {
			defer close(done)
			webhook.New(webhook.Config{Store: db, Logger: log, Box: box}).Run(bg)
		}()
		return mux, func() { cancel(); <-done }, nil
	}
	_ = wire
}
