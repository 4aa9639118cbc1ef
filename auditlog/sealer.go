package auditlog

import (
	"context"
	"log/slog"
	"time"

	"sluice/audit"
	"sluice/store"
)

// SealerOptions configure RunSealer.
type SealerOptions struct {
	// Every is the pause between sealing rounds: the window during which a
	// committed record is not yet chained. Default one second.
	Every time.Duration
	// Batch is the records per sealing transaction; default DefaultBatch.
	Batch int
	// Anchor signs anchors; nil seals without them (not for production).
	Anchor audit.Signer
	// Logger reports failures; nil discards.
	Logger *slog.Logger
	// FinalTimeout bounds the last round RunSealer makes after ctx ends, so
	// a clean shutdown leaves nothing pending. Default five seconds.
	FinalTimeout time.Duration
}

// RunSealer seals pending records every opts.Every until ctx ends, then
// seals once more (bounded by FinalTimeout) and returns. A failed round is
// logged and retried at the next tick: records stay pending, never lost.
// The head-end runs one per replica; replicas take turns through the
// store's sealer lock.
func RunSealer(ctx context.Context, st store.Store, opts SealerOptions) {
	if opts.Every <= 0 {
		opts.Every = time.Second
	}
	if opts.FinalTimeout <= 0 {
		opts.FinalTimeout = 5 * time.Second
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	round := func(ctx context.Context) {
		n, err := Seal(ctx, st, opts.Anchor, opts.Batch)
		if err != nil && ctx.Err() == nil {
			log.Error("audit sealer", "sealed", n, "err", err)
		} else if n > 0 {
			log.Debug("audit sealer", "sealed", n)
		}
	}
	t := time.NewTicker(opts.Every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			final, cancel := context.WithTimeout(context.WithoutCancel(ctx), opts.FinalTimeout)
			round(final)
			cancel()
			return
		case <-t.C:
			round(ctx)
		}
	}
}

// StartSealer runs RunSealer in a goroutine and returns the function that
// stops it: stop cancels the sealer, waits for its final round and returns.
// Call stop before closing the store.
func StartSealer(st store.Store, opts SealerOptions) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		RunSealer(ctx, st, opts)
	}()
	return func() {
		cancel()
		<-done
	}
}
