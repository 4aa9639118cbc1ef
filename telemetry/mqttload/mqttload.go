// Package mqttload is a lean MQTT publisher for load generation: it logs in
// like a meter, writes pre-encoded QoS 1 PUBLISH packets with several in
// flight, and reads the PUBACKs, checking each against the packet it
// answers.
//
// It exists for benchmarks. Emulated meters are not the head-end, yet they
// share its cores; a full client (paho: a goroutine hand-off, a
// write system call and a few allocations per message) spent about a third
// of the CPU of the ingest benchmark. This publisher speaks real MQTT over
// TCP to a real broker and still waits for every acknowledgement, which the
// head-end sends only after the frame is stored; it only does less work per
// message: packets are encoded before the clock starts, written through a
// buffer flushed whenever the window is full, and acknowledgements are read
// through a buffer.
//
// It speaks MQTT 3.1.1 and 5 (no properties sent; a PUBACK's reason code is
// honoured), clean sessions, no keep-alive, QoS 1 only. It does not
// reconnect or resend: a load generator that loses its connection has failed
// its run.
package mqttload

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// Protocol versions (the CONNECT packet's protocol level).
const (
	V311 = 4 // MQTT 3.1.1
	V5   = 5 // MQTT 5
)

// Errors callers branch on.
var (
	// ErrRefused: the broker refused the login, or a publication (MQTT 5
	// PUBACK reason code 0x80 or above).
	ErrRefused = errors.New("mqttload: refused by the broker")
	// ErrProtocol: the broker sent something a QoS 1 publisher does not
	// expect, such as a PUBACK for a packet not in flight or out of order.
	ErrProtocol = errors.New("mqttload: protocol violation")
)

// Config says how to log in.
type Config struct {
	// Addr is the broker's TCP address, host:port.
	Addr     string
	ClientID string
	Username string
	Password []byte
	// Version is V311 (default) or V5.
	Version byte
	// Window is how many publications may wait for their PUBACK at once.
	// Default 16. On MQTT 5 it must not exceed the broker's Receive
	// Maximum.
	Window int
}

// Publisher is one MQTT connection publishing at QoS 1. Its methods are not
// safe for concurrent use: one goroutine drives a publisher.
type Publisher struct {
	conn    net.Conn
	r       *bufio.Reader
	version byte
	window  int
	nextID  uint16
}

// Dial connects and logs in.
func Dial(ctx context.Context, cfg Config) (*Publisher, error) {
	if cfg.Version == 0 {
		cfg.Version = V311
	}
	if cfg.Version != V311 && cfg.Version != V5 {
		return nil, fmt.Errorf("mqttload: protocol version %d: want %d or %d", cfg.Version, V311, V5)
	}
	if cfg.Window <= 0 {
		cfg.Window = 16
	}
	if cfg.Window > 65535 {
		return nil, fmt.Errorf("mqttload: window %d: more than the 65535 packet identifiers", cfg.Window)
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("mqttload: %w", err)
	}
	p := &Publisher{conn: conn, r: bufio.NewReaderSize(conn, 16<<10), version: cfg.Version, window: cfg.Window, nextID: 1}
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if err := p.login(cfg); err != nil {
		conn.Close()
		if ctx.Err() != nil {
			return nil, fmt.Errorf("mqttload: login as %q: %w", cfg.Username, ctx.Err())
		}
		return nil, fmt.Errorf("mqttload: login as %q: %w", cfg.Username, err)
	}
	return p, nil
}

func (p *Publisher) login(cfg Config) error {
	var body []byte
	body = appendString(body, "MQTT")
	flags := byte(0x02) // clean session / clean start
	if cfg.Username != "" {
		flags |= 0x80
	}
	if cfg.Password != nil {
		flags |= 0x40
	}
	body = append(body, cfg.Version, flags, 0, 0) // keep-alive 0: off
	if cfg.Version == V5 {
		body = append(body, 0) // no properties
	}
	body = appendString(body, cfg.ClientID)
	if cfg.Username != "" {
		body = appendString(body, cfg.Username)
	}
	if cfg.Password != nil {
		body = appendString(body, string(cfg.Password))
	}
	pk := appendHeader(nil, 0x10, len(body))
	if _, err := p.conn.Write(append(pk, body...)); err != nil {
		return err
	}
	typ, rest, err := p.readPacket()
	if err != nil {
		return err
	}
	if typ != 0x20 || len(rest) < 2 {
		return fmt.Errorf("packet type %#x instead of CONNACK: %w", typ, ErrProtocol)
	}
	if rest[1] != 0 {
		return fmt.Errorf("CONNACK return code %#x: %w", rest[1], ErrRefused)
	}
	return nil
}

// Packets are PUBLISH packets encoded for one publisher, ready to send.
type Packets struct {
	buf  []byte
	ends []int    // end offset of each packet in buf
	ids  []uint16 // packet identifier of each
}

// Len is the number of packets.
func (ps *Packets) Len() int { return len(ps.ids) }

// Encode builds QoS 1 PUBLISH packets of payloads to topic, taking the
// publisher's next packet identifiers. Encoding is kept apart from Send so
// a benchmark can do it before its clock starts.
func (p *Publisher) Encode(topic string, payloads [][]byte) *Packets {
	size := 0
	for _, pl := range payloads {
		size += 5 + 2 + len(topic) + 2 + 1 + len(pl)
	}
	ps := &Packets{buf: make([]byte, 0, size), ends: make([]int, len(payloads)), ids: make([]uint16, len(payloads))}
	for i, pl := range payloads {
		n := 2 + len(topic) + 2 + len(pl)
		if p.version == V5 {
			n++ // property length
		}
		id := p.nextID
		p.nextID++
		if p.nextID == 0 {
			p.nextID = 1
		}
		b := appendHeader(ps.buf, 0x32, n) // PUBLISH, QoS 1
		b = appendString(b, topic)
		b = append(b, byte(id>>8), byte(id))
		if p.version == V5 {
			b = append(b, 0)
		}
		ps.buf = append(b, pl...)
		ps.ends[i], ps.ids[i] = len(ps.buf), id
	}
	return ps
}

// Send publishes the packets in order, at most the window unacknowledged at
// once, and returns when the broker has acknowledged every one. A PUBACK
// must answer the oldest publication in flight (MQTT requires them in
// order); anything else is ErrProtocol. The connection is of no further use
// after an error.
func (p *Publisher) Send(ctx context.Context, ps *Packets) error {
	if ps.Len() == 0 {
		return nil
	}
	stop := context.AfterFunc(ctx, func() { p.conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	slots := make(chan struct{}, p.window)
	done := make(chan error, 1)
	go func() { done <- p.readAcks(ps.ids, slots) }()

	w := bufio.NewWriterSize(p.conn, 32<<10)
	start := 0
	var werr error
	for i, end := range ps.ends {
		select {
		case slots <- struct{}{}:
		default:
			// The window is full: what is buffered must reach the broker
			// before an acknowledgement can free a slot.
			if werr = w.Flush(); werr != nil {
				break
			}
			select {
			case slots <- struct{}{}:
			case err := <-done:
				return p.fail(ctx, fmt.Errorf("mqttload: after %d of %d publications: %w", i, ps.Len(), err))
			}
		}
		if werr != nil {
			break
		}
		if _, werr = w.Write(ps.buf[start:end]); werr != nil {
			break
		}
		start = end
	}
	if werr == nil {
		werr = w.Flush()
	}
	if werr != nil {
		p.conn.Close() // stops the reader
		<-done
		return p.fail(ctx, fmt.Errorf("mqttload: publish: %w", werr))
	}
	if err := <-done; err != nil {
		return p.fail(ctx, fmt.Errorf("mqttload: %w", err))
	}
	return nil
}

func (p *Publisher) fail(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("%w (%w)", ctx.Err(), err)
	}
	return err
}

// readAcks reads one PUBACK per packet, in order, freeing a slot for each.
func (p *Publisher) readAcks(ids []uint16, slots chan struct{}) error {
	for i, want := range ids {
		typ, rest, err := p.readPacket()
		if err != nil {
			return fmt.Errorf("waiting for PUBACK %d of %d: %w", i+1, len(ids), err)
		}
		if typ == 0xe0 {
			// MQTT 5 brokers say why they disconnect; some 3.1.1 ones
			// (mochi) send DISCONNECT too, e.g. for a topic the ACL denies.
			return fmt.Errorf("broker disconnected (% x) at PUBACK %d of %d: %w", rest, i+1, len(ids), ErrRefused)
		}
		if typ != 0x40 || len(rest) < 2 {
			return fmt.Errorf("packet type %#x while waiting for PUBACK: %w", typ, ErrProtocol)
		}
		if id := uint16(rest[0])<<8 | uint16(rest[1]); id != want {
			return fmt.Errorf("PUBACK for packet %d, expected %d: %w", id, want, ErrProtocol)
		}
		if len(rest) > 2 && rest[2] >= 0x80 {
			return fmt.Errorf("PUBACK %d reason code %#x: %w", want, rest[2], ErrRefused)
		}
		<-slots
	}
	return nil
}

// readPacket reads one packet: its type and flags byte, and its body. The
// body is only valid until the next read.
func (p *Publisher) readPacket() (byte, []byte, error) {
	typ, err := p.r.ReadByte()
	if err != nil {
		return 0, nil, err
	}
	n, mul := 0, 1
	for i := 0; ; i++ {
		c, err := p.r.ReadByte()
		if err != nil {
			return 0, nil, err
		}
		if i == 3 && c&0x80 != 0 {
			return 0, nil, fmt.Errorf("remaining length longer than 4 bytes: %w", ErrProtocol)
		}
		n += int(c&0x7f) * mul
		mul *= 128
		if c&0x80 == 0 {
			break
		}
	}
	if n <= p.r.Size() {
		body, err := p.r.Peek(n)
		if err != nil {
			return 0, nil, err
		}
		p.r.Discard(n)
		return typ, body, nil
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(p.r, body); err != nil {
		return 0, nil, err
	}
	return typ, body, nil
}

// Close sends DISCONNECT and closes the connection.
func (p *Publisher) Close() error {
	p.conn.SetWriteDeadline(time.Now().Add(time.Second))
	p.conn.Write([]byte{0xe0, 0})
	return p.conn.Close()
}

func appendHeader(b []byte, typ byte, n int) []byte {
	b = append(b, typ)
	for {
		c := byte(n % 128)
		n /= 128
		if n > 0 {
			c |= 0x80
		}
		b = append(b, c)
		if n == 0 {
			return b
		}
	}
}

func appendString(b []byte, s string) []byte {
	return append(append(b, byte(len(s)>>8), byte(len(s))), s...)
}
