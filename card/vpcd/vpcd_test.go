package vpcd

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"net"
	"testing"
)

type echoCard struct{ resets int }

func (c *echoCard) Process(apdu []byte) []byte {
	return append(append([]byte(nil), apdu...), 0x90, 0x00)
}
func (c *echoCard) Reset() { c.resets++ }

// TestProtocol plays vpcd's side of the framing over a pipe.
func TestProtocol(t *testing.T) {
	reader, cardEnd := net.Pipe()
	c := &echoCard{}
	done := make(chan error, 1)
	go func() { done <- ServeConn(context.Background(), cardEnd, c, []byte{0x3B, 0x00}) }()

	send := func(b ...byte) {
		t.Helper()
		if _, err := reader.Write(append(binary.BigEndian.AppendUint16(nil, uint16(len(b))), b...)); err != nil {
			t.Fatal(err)
		}
	}
	recv := func() []byte {
		t.Helper()
		var h [2]byte
		if _, err := io.ReadFull(reader, h[:]); err != nil {
			t.Fatal(err)
		}
		b := make([]byte, binary.BigEndian.Uint16(h[:]))
		if _, err := io.ReadFull(reader, b); err != nil {
			t.Fatal(err)
		}
		return b
	}
	send(ctlPowerOn)
	send(ctlGetATR)
	if got := recv(); !bytes.Equal(got, []byte{0x3B, 0x00}) {
		t.Fatalf("ATR %X", got)
	}
	send(0x00, 0xA4, 0x04, 0x00)
	if got := recv(); !bytes.Equal(got, []byte{0x00, 0xA4, 0x04, 0x00, 0x90, 0x00}) {
		t.Fatalf("APDU answer %X", got)
	}
	send(ctlReset)
	send(ctlPowerOff)
	reader.Close()
	if err := <-done; err == nil {
		t.Fatal("Serve returned nil when vpcd went away")
	}
	if c.resets != 3 {
		t.Fatalf("%d resets, want 3", c.resets)
	}
}

// TestCancel: ending the context pulls the card and returns nil.
func TestCancel(t *testing.T) {
	_, cardEnd := net.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ServeConn(ctx, cardEnd, &echoCard{}, nil) }()
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
