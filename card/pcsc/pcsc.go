// Package pcsc is the reader side of the card over PC/SC: a card.Transport
// on a card in a reader managed by pcscd. It speaks pcscd's own client
// protocol over its UNIX socket through github.com/gballet/go-libpcsclite,
// which is pure Go, so the binary needs neither cgo nor libpcsclite.
//
// A Reader holds one PC/SC context and one card connection, in shared mode
// with the T=1 protocol, which carries extended APDUs. (The library's
// Transmit always sends a T=1 protocol control block, so T=1 is the one
// protocol it can drive.)
package pcsc

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	lib "github.com/gballet/go-libpcsclite"
)

// ErrNoReader reports that pcscd knows no reader of the requested name.
var ErrNoReader = errors.New("pcsc: no such reader")

// Readers lists the readers pcscd knows.
func Readers() ([]string, error) {
	ctx, err := lib.EstablishContext("", lib.ScopeSystem)
	if err != nil {
		return nil, fmt.Errorf("pcsc: establish context (is pcscd running?): %w", err)
	}
	defer ctx.ReleaseContext()
	return listReaders(ctx)
}

func listReaders(ctx *lib.Client) ([]string, error) {
	names, err := ctx.ListReaders()
	if err != nil {
		return nil, fmt.Errorf("pcsc: list readers: %w", err)
	}
	for i, n := range names {
		names[i] = strings.TrimRight(n, "\x00")
	}
	return names, nil
}

// Reader is a connection to the card in one reader. It implements
// card.Transport. It is not safe for concurrent use.
type Reader struct {
	name string
	ctx  *lib.Client
	card *lib.Card
}

// pollInterval is how often Connect retries while it waits for a card;
// pcscd itself polls the vpcd driver every few hundred milliseconds.
const pollInterval = 50 * time.Millisecond

// Connect waits until a card is present in the named reader and connects
// to it, or gives up when ctx ends.
func Connect(ctx context.Context, reader string) (*Reader, error) {
	c, err := lib.EstablishContext("", lib.ScopeSystem)
	if err != nil {
		return nil, fmt.Errorf("pcsc: establish context (is pcscd running?): %w", err)
	}
	names, err := listReaders(c)
	if err != nil {
		c.ReleaseContext()
		return nil, err
	}
	found := false
	for _, n := range names {
		found = found || n == reader
	}
	if !found {
		c.ReleaseContext()
		return nil, fmt.Errorf("%w: %q (readers: %q)", ErrNoReader, reader, names)
	}
	for {
		card, err := c.Connect(reader, lib.ShareShared, lib.ProtocolT1)
		if err == nil {
			return &Reader{name: reader, ctx: c, card: card}, nil
		}
		select {
		case <-ctx.Done():
			c.ReleaseContext()
			return nil, fmt.Errorf("pcsc: no card in %q: %w (last: %v)", reader, ctx.Err(), err)
		case <-time.After(pollInterval):
		}
	}
}

// Name returns the reader's name.
func (r *Reader) Name() string { return r.name }

// Transmit sends one command APDU and returns the response APDU.
func (r *Reader) Transmit(apdu []byte) ([]byte, error) {
	out, _, err := r.card.Transmit(apdu)
	if err != nil {
		return nil, fmt.Errorf("pcsc: transmit on %q: %w", r.name, err)
	}
	return out, nil
}

// Close disconnects, leaving the card powered for the next reader, and
// releases the PC/SC context.
func (r *Reader) Close() error {
	err := r.card.Disconnect(lib.LeaveCard)
	if rerr := r.ctx.ReleaseContext(); err == nil {
		err = rerr
	}
	if err != nil {
		return fmt.Errorf("pcsc: close %q: %w", r.name, err)
	}
	return nil
}
