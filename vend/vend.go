// Package vend is the head-end's vending: it turns money into water credit
// for one meter, in one database transaction that cannot be split, doubled
// or lost.
//
// A purchase carries a client-chosen idempotency key. The key, the float
// debit, the daily limit, the tokens (or signed vouchers), the meter's next
// TID or voucher sequence, the block-ladder position, the ledger entry and
// the audit record all commit together or not at all. Uniqueness is enforced
// by the database, not by locks in this process, so several head-end
// replicas on one PostgreSQL stay correct:
//
//   - (vendor, idempotency key) is unique: a retry finds the stored receipt
//     and gets the same tokens; a concurrent duplicate waits on the index and
//     then finds it too; the same key with another request is refused.
//   - (meter, TID) and (meter, voucher sequence) are unique: no token is
//     issued twice, whatever races.
//   - the ledger entry ID "purchase:<id>" is unique: one purchase, one token set.
//   - the float is debited by a conditional UPDATE backed by a CHECK: it never
//     goes negative.
//
// Tokens for STS meters are made under the meter's decoder key, derived from
// its supply group's vending key inside the key manager. When the supply group
// has moved to a new key revision (or base date), the purchase first issues
// the key-change tokens under the meter's old key, then the free-water and
// credit tokens under the new one: the order the meter must take them in.
package vend

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"sluice/store"
	"sluice/sts"
	"sluice/tariff"
	"sluice/voucher"
)

// Sentinel errors the API maps to status codes.
var (
	ErrInvalid             = errors.New("invalid request")
	ErrNotFound            = errors.New("not found")
	ErrIdempotencyMismatch = errors.New("idempotency key reused with a different request")
	ErrInsufficientFloat   = errors.New("vendor float too low")
	ErrDailyLimit          = errors.New("vendor daily limit reached")
	ErrNoVendor            = errors.New("operator has no vending point")
	ErrVendorDisabled      = errors.New("vending point disabled")
	ErrMeterBlocked        = errors.New("meter is not active")
	ErrNothingToBuy        = errors.New("amount buys nothing")
	ErrForbidden           = errors.New("not allowed")
	ErrNotReversible       = errors.New("purchase cannot be reversed")
)

// FieldError names the request field at fault.
type FieldError struct {
	Field string
	Msg   string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Msg }
func (e *FieldError) Unwrap() error { return ErrInvalid }

func fieldErr(field, format string, args ...any) error {
	return &FieldError{Field: field, Msg: fmt.Sprintf(format, args...)}
}

// Keys is what vending needs of the key manager.
type Keys interface {
	// DecoderKey returns an STS meter's decoder key under revision krn of
	// the supply group's vending key.
	DecoderKey(ctx context.Context, g store.SupplyGroup, krn int, id sts.KeyID, pan sts.PAN, base sts.BaseDate) ([]byte, error)
	// SignVoucher signs v with the credit-signing key (credit) or the
	// management key (engineering actions).
	SignVoucher(ctx context.Context, v *voucher.Voucher) ([]byte, error)
	// MeterRootVersion is the newest meter-root version: a meter
	// registered now is provisioned with keys under it.
	MeterRootVersion(ctx context.Context) (int, error)
}

// Config carries the service's dependencies.
type Config struct {
	Store store.Store
	Keys  Keys
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Location is the utility's time zone: months and days (block ladders,
	// daily limits) are civil ones. nil means UTC.
	Location *time.Location
	// STATables are the utility's EA07 tables, needed only for EA07 meters.
	STATables *sts.STATables
	// VoucherTTL bounds how long a voucher stays spendable; 0 means 90 days.
	VoucherTTL time.Duration
	// Currency is the ISO 4217 code of floats, deposits and debt; tariffs
	// carry their own. Empty means ZAR.
	Currency string
	Logger   *slog.Logger
}

// Service sells water.
type Service struct {
	cfg     Config
	now     func() time.Time
	loc     *time.Location
	log     *slog.Logger
	mu      sync.Mutex
	coders  map[coderKey]*sts.Coder
	tariffs map[string]cachedTariff
}

type coderKey struct {
	sgc  string
	krn  int
	ti   int
	kt   int
	base sts.BaseDate
	pan  sts.PAN
}

type cachedTariff struct {
	updated time.Time
	t       *tariff.Tariff
}

// maxCachedCoders bounds the decoder-key cache: a Coder is a few hundred
// bytes, so this is a few megabytes for the busiest meters.
const maxCachedCoders = 20000

// New returns a Service.
func New(cfg Config) *Service {
	s := &Service{cfg: cfg, now: cfg.Now, loc: cfg.Location, log: cfg.Logger,
		coders: map[coderKey]*sts.Coder{}, tariffs: map[string]cachedTariff{}}
	if s.now == nil {
		s.now = time.Now
	}
	if s.loc == nil {
		s.loc = time.UTC
	}
	if s.cfg.VoucherTTL == 0 {
		s.cfg.VoucherTTL = 90 * 24 * time.Hour
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	return s
}

// Actor is who is acting, as authenticated by the API.
type Actor struct {
	OperatorID int64
	Username   string
	Role       string
	VendorID   int64
}

func (a Actor) String() string { return "operator:" + a.Username }

// coder returns a cached Coder for a meter's decoder key.
func (s *Service) coder(ctx context.Context, g store.SupplyGroup, id sts.KeyID, pan sts.PAN, base sts.BaseDate) (*sts.Coder, error) {
	k := coderKey{sgc: g.Code, krn: id.KRN, ti: id.TI, kt: id.KT, base: base, pan: pan}
	s.mu.Lock()
	c := s.coders[k]
	s.mu.Unlock()
	if c != nil {
		return c, nil
	}
	ea, err := sts.ParseEA(g.EA)
	if err != nil {
		return nil, err
	}
	key, err := s.cfg.Keys.DecoderKey(ctx, g, id.KRN, id, pan, base)
	if err != nil {
		return nil, fmt.Errorf("decoder key of meter %s: %w", pan, err)
	}
	c, err = sts.NewCoder(ea, key, s.cfg.STATables)
	clear(key)
	if err != nil {
		return nil, fmt.Errorf("decoder key of meter %s: %w", pan, err)
	}
	s.mu.Lock()
	if len(s.coders) >= maxCachedCoders {
		clear(s.coders)
	}
	s.coders[k] = c
	s.mu.Unlock()
	return c, nil
}

// tariff returns the parsed tariff, re-parsing only when it changed.
func (s *Service) tariff(ctx context.Context, tx store.Tx, code string) (*tariff.Tariff, error) {
	row, err := tx.Tariffs().Get(ctx, code)
	if err != nil {
		return nil, err
	}
	return s.parsedTariff(row)
}

// tariffAt is tariff when the tariff's stamp has been read already: its
// definition is read only when the cached one is older.
func (s *Service) tariffAt(ctx context.Context, tx store.Tx, code string, updated time.Time) (*tariff.Tariff, error) {
	s.mu.Lock()
	c, ok := s.tariffs[code]
	s.mu.Unlock()
	if ok && c.updated.Equal(updated) {
		return c.t, nil
	}
	return s.tariff(ctx, tx, code)
}

func (s *Service) parsedTariff(row store.Tariff) (*tariff.Tariff, error) {
	code := row.Code
	s.mu.Lock()
	c, ok := s.tariffs[code]
	s.mu.Unlock()
	if ok && c.updated.Equal(row.UpdatedAt) {
		return c.t, nil
	}
	t, err := tariff.Parse(row.Definition)
	if err != nil {
		return nil, fmt.Errorf("stored tariff %s: %w", code, err)
	}
	s.mu.Lock()
	s.tariffs[code] = cachedTariff{updated: row.UpdatedAt, t: t}
	s.mu.Unlock()
	return t, nil
}

// requestHash is what binds an idempotency key to one request.
func requestHash(meter string, amount int64) []byte {
	h := sha256.New()
	h.Write([]byte("sluice purchase v1\x00"))
	h.Write([]byte(meter))
	h.Write([]byte{0})
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(amount))
	h.Write(b[:])
	return h.Sum(nil)
}

// Today is the utility's civil date, YYYY-MM-DD: the day daily limits count.
func (s *Service) Today() string { return s.now().In(s.loc).Format("2006-01-02") }
