// Package vpcd puts an emulated card into a real PC/SC stack: it connects
// the card to vsmartcard's virtual reader driver (vpcd), which pcscd loads
// and exposes as an ordinary reader ("Virtual PCD 00 00" on port 35963,
// "Virtual PCD 00 01" on 35964, ...). Everything above pcscd (the meter,
// the vending office's card writer, pcsc_scan) then talks to the emulator
// exactly as to a card in a contact reader.
//
// The vpcd protocol is small: vpcd is the TCP server, the card the client;
// every message both ways is a 2-byte big-endian length and a payload. A
// 1-byte payload from vpcd is a control code (0 power off, 1 power on,
// 2 reset, 4 get ATR, answered with the ATR); any longer payload is a
// command APDU, answered with the response APDU.
package vpcd

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
)

// DefaultAddr is the first vpcd slot, as /etc/reader.conf.d/vpcd configures
// it (CHANNELID 0x8C7B = 35963).
const DefaultAddr = "127.0.0.1:35963"

// ReaderName returns the PC/SC name pcscd gives the vpcd slot n.
func ReaderName(slot int) string { return fmt.Sprintf("Virtual PCD 00 %02d", slot) }

// Card is what vpcd drives: an APDU handler with a power cycle.
type Card interface {
	Process(apdu []byte) []byte
	Reset()
}

// Control codes vpcd sends.
const (
	ctlPowerOff = 0
	ctlPowerOn  = 1
	ctlReset    = 2
	ctlGetATR   = 4
)

// Serve inserts c into the vpcd reader at addr and serves it until ctx is
// done (then the card is "pulled": the connection closes and pcscd sees the
// card removed) or vpcd closes the connection. It returns nil when ctx ends
// it. Every command reaches c in order, from this goroutine only.
func Serve(ctx context.Context, addr string, c Card, atr []byte) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("vpcd: connect to %s: %w", addr, err)
	}
	return ServeConn(ctx, conn, c, atr)
}

// ServeConn is Serve over an established connection, which it closes.
func ServeConn(ctx context.Context, conn net.Conn, c Card, atr []byte) error {
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	defer conn.Close()
	for {
		quickAck(conn)
		msg, err := readMsg(conn)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, io.EOF) {
				return fmt.Errorf("vpcd: reader closed the connection: %w", err)
			}
			return fmt.Errorf("vpcd: read: %w", err)
		}
		var out []byte
		if len(msg) == 1 {
			switch msg[0] {
			case ctlPowerOff, ctlPowerOn, ctlReset:
				c.Reset()
				continue
			case ctlGetATR:
				out = atr
			default:
				return fmt.Errorf("vpcd: unknown control code %d", msg[0])
			}
		} else {
			out = c.Process(msg)
		}
		if err := writeMsg(conn, out); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("vpcd: write: %w", err)
		}
	}
}

func readMsg(r io.Reader) ([]byte, error) {
	var h [2]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return nil, err
	}
	b := make([]byte, binary.BigEndian.Uint16(h[:]))
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, fmt.Errorf("message of %d bytes truncated: %w", len(b), err)
	}
	return b, nil
}

func writeMsg(w io.Writer, b []byte) error {
	if len(b) > 0xFFFF {
		return fmt.Errorf("message of %d bytes too long for vpcd", len(b))
	}
	_, err := w.Write(append(binary.BigEndian.AppendUint16(make([]byte, 0, 2+len(b)), uint16(len(b))), b...))
	return err
}
