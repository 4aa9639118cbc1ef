package store

import (
	"context"
	"time"
)

// Channel is a vending point that a third party (shop, bank, mobile-money
// operator) sells through by API: its fee and its cap on one purchase.
type Channel struct {
	VendorID         int64
	VendorCode       string // read only
	FeeFixedCents    int64
	FeeRateBP        int64 // basis points of the amount paid
	MaxPurchaseCents int64
	Disabled         bool
	UpdatedAt        time.Time
}

// Advice kinds and outcomes.
const (
	AdviceConfirmation = "confirmation"
	AdviceReversal     = "reversal"

	AdviceConfirmed = "confirmed"
	AdviceReversed  = "reversed"
	AdviceReferred  = "referred"
)

// ChannelAdvice is the advice a channel delivered for one purchase; the
// first one decides and is stored with its answer.
type ChannelAdvice struct {
	ID               int64
	VendorID         int64
	ClientPurchaseID string
	PurchaseID       int64
	Kind             string
	Outcome          string
	Reason           string
	Response         []byte
	CreatedAt        time.Time
}

// Channels is the payment-channel aggregate.
type Channels interface {
	// Put creates or replaces a vending point's channel settings.
	Put(ctx context.Context, c Channel) error
	// Get returns the channel of a vending point, ErrNotFound when it is none.
	Get(ctx context.Context, vendorID int64) (Channel, error)
	List(ctx context.Context) ([]Channel, error)
	// CreateAdvice stores the first advice for a purchase; ErrConflict when
	// one exists (the caller reads it with Advice).
	CreateAdvice(ctx context.Context, a ChannelAdvice) (ChannelAdvice, error)
	Advice(ctx context.Context, vendorID int64, clientPurchaseID string) (ChannelAdvice, error)
	// Advices lists advices with an outcome, oldest first, after id.
	Advices(ctx context.Context, outcome string, after int64, limit int) ([]ChannelAdvice, error)
}
