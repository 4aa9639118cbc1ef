package auditlog

import (
	"context"
	"log/slog"
	"time"

	"sluice/audit"
	"sluice/kms"
	"sluice/store"
)

// SealerOptions configure RunSealer.
type SealerOptions struct {
	// Every is the pause between sealing rounds: the window during which a
	// committed record is not yet chained. Default one second.
	Every time.Duration
	// Batch is the records per sealing transaction; default DefaultBatch.
	Batch int
	// KMS, when Anchor is nil, is where the sealer derives its anchor key
	// (NewKMSAnchors) at its first round. Until that succeeds (a KMS
	// without a meter root, an HSM unreachable) rounds are skipped and
	// logged: records stay pending rather than be sealed unanchored.
	KMS kms.KeyManager
	// Anchor signs anchors. With neither Anchor nor KMS the sealer seals
	// without anchors (tests; not for production).
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
	anchor := opts.Anchor
	round := func(ctx context.Context) {
		if anchor == nil && opts.KMS != nil {
			a, err := NewKMSAnchors(context.WithoutCancel(ctx), opts.KMS)
			if err != nil {
				log.Error("audit sealer: no anchor key, records stay pending", "err", err)
				return
			}
			anchor = a
		}
		n, err := Seal(ctx, st, anchor, opts.Batch)
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
