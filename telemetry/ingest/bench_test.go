package ingest

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mochi-mqtt/server/v2/packets"

	"sluice/store"
	"sluice/store/sqlstore"
	"sluice/store/storetest"
	"sluice/telemetry/broker"
	"sluice/telemetry/frame"
	"sluice/telemetry/mqttlink"
	"sluice/telemetry/topic"
)

// benchMeters is how many emulated meters, each with its own MQTT
// connection, publish in the MQTT benchmark; benchInflight how many QoS 1
// publications each keeps in flight (well inside the 64-frame replay
// window, so reordering never makes a frame too old).
const (
	benchMeters   = 128
	benchInflight = 16
)

func benchReading(id uint64, counter uint32, at time.Time) *frame.Frame {
	return &frame.Frame{Kind: frame.KindReading, Meter: id, Counter: counter, Time: at,
		Reading: frame.Reading{Forward: uint64(counter) * 10, Credit: 1000, Loaded: 5000, Unit: frame.UnitLitres,
			Interval: 15 * time.Minute, Intervals: []uint32{1, 2, 3, 4}}}
}

// BenchmarkIngestMQTT measures readings per second from MQTT publishers
// through the embedded broker, verification, the replay check and batched
// storage, acknowledged after commit, into each database.
func BenchmarkIngestMQTT(b *testing.B) {
	for _, be := range storetest.Backends() {
		b.Run(be.Name, func(b *testing.B) { benchMQTT(b, be.Open(b, false)) })
	}
}

func benchMQTT(b *testing.B, db *sqlstore.DB) {
	ctx := context.Background()
	ids := make([]uint64, benchMeters)
	for i := range ids {
		ids[i] = 5000001 + uint64(i)
	}
	addMeters(b, db, ids...)
	km := newKMS(b)
	workers := 1
	if db.Driver() == "postgres" {
		workers = 4
	}
	dir := NewKMSDirectory(db, km)
	in, err := New(Config{Store: db, Directory: dir, Workers: workers})
	if err != nil {
		b.Fatal(err)
	}
	in.Start(ctx)
	defer in.Close()
	e, err := broker.NewEmbedded(broker.EmbeddedConfig{Listen: "127.0.0.1:0", Auth: dir})
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	e.Subscribe(ctx, []string{topic.Uplinks}, in.Handle)
	at := time.Now().UTC().Truncate(time.Second)
	if err := db.Tx(ctx, func(tx store.Tx) error { return tx.Telemetry().EnsureReadingPartitions(ctx, at, 1) }); err != nil {
		b.Fatal(err)
	}

	conns := make([]*mqttlink.Conn, len(ids))
	keys := make([]*frame.Key, len(ids))
	for i, id := range ids {
		k := telemetryKey(b, km, id)
		keys[i], _ = frame.NewKey(k[:])
		pw, _ := MQTTPassword(k[:])
		c, err := mqttlink.Dial(ctx, mqttlink.DialConfig{URL: "mqtt://" + e.Addr(), Username: strconv.FormatUint(id, 10), Password: pw})
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		conns[i] = c
	}
	// Seal every frame before the clock starts: the benchmark measures the
	// head-end, not the meters.
	per := b.N/len(ids) + 1
	payloads := make([][][]byte, len(ids))
	for i, id := range ids {
		payloads[i] = make([][]byte, per)
		for j := range per {
			payloads[i][j], _ = frame.Seal(nil, keys[i], benchReading(id, uint32(j+1), at))
		}
	}
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	var failed atomic.Int64
	for i, id := range ids {
		next := make(chan []byte)
		go func() {
			for _, p := range payloads[i] {
				next <- p
			}
			close(next)
		}()
		t := topic.ForMeter(id, topic.Reading)
		for range benchInflight {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for p := range next {
					if err := conns[i].Publish(ctx, t, p); err != nil {
						failed.Add(1)
					}
				}
			}()
		}
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	if failed.Load() > 0 {
		b.Fatalf("%d publications failed", failed.Load())
	}
	total := per * len(ids)
	if got := in.Count(Stored); got != uint64(total) {
		b.Fatalf("stored %d of %d", got, total)
	}
	b.ReportMetric(float64(total)/elapsed.Seconds(), "readings/s")
}

// BenchmarkWriteFrames measures the store's bulk path alone: batches of
// 2000 readings in one transaction.
func BenchmarkWriteFrames(b *testing.B) {
	for _, be := range storetest.Backends() {
		b.Run(be.Name, func(b *testing.B) {
			db := be.Open(b, false)
			ctx := context.Background()
			mids := addMeters(b, db, 6000001)
			at := time.Now().UTC().Truncate(time.Second)
			db.Tx(ctx, func(tx store.Tx) error { return tx.Telemetry().EnsureReadingPartitions(ctx, at, 1) })
			const batch = 2000
			b.ResetTimer()
			start := time.Now()
			counter := uint32(0)
			for range b.N {
				fs := make([]store.TelemetryFrame, batch)
				for j := range fs {
					counter++
					fs[j] = store.TelemetryFrame{MeterID: mids[0], Counter: counter, Kind: 1, Tag: [8]byte{byte(counter)}, Time: at, ReceivedAt: at,
						Reading: &store.Reading{Forward: int64(counter), Unit: 1, Interval: 15 * time.Minute, Intervals: []uint32{1, 2, 3, 4}}}
				}
				if _, err := db.WriteFrames(ctx, fs, []store.ReplayState{{MeterID: mids[0], Highest: counter, Window: make([]byte, 20), LastFrameAt: at}}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*batch)/time.Since(start).Seconds(), "readings/s")
		})
	}
}

// BenchmarkHandle measures what the broker's callback does per message
// (topic, header, cached key, MAC, enqueue) with storage discarded.
func BenchmarkHandle(b *testing.B) {
	db := storetest.OpenSQLite(b, false)
	addMeters(b, db, 7000001)
	km := newKMS(b)
	w := &blockingWriter{release: make(chan struct{})}
	close(w.release)
	in, err := New(Config{Store: db, Directory: NewKMSDirectory(db, km), Writer: w})
	if err != nil {
		b.Fatal(err)
	}
	in.Start(context.Background())
	defer in.Close()
	k := telemetryKey(b, km, 7000001)
	fk, _ := frame.NewKey(k[:])
	at := time.Now().UTC().Truncate(time.Second)
	p, _ := frame.Seal(nil, fk, benchReading(7000001, 1, at))
	t := topic.ForMeter(7000001, topic.Reading)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		in.Handle(t, p, func() {})
	}
}

// rawPublisher is a minimal MQTT 3.1.1 client for the benchmark: it writes
// pre-encoded QoS 1 PUBLISH packets through a buffered writer and counts
// PUBACKs on another goroutine, so the publishers cost next to nothing and
// the benchmark measures the head-end's side (broker, ingest, database).
type rawPublisher struct {
	conn  net.Conn
	acks  chan struct{}
	slots chan struct{}
}

func dialRaw(b *testing.B, addr, user, pw string, window int) *rawPublisher {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	var buf bytes.Buffer
	pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Connect}, ProtocolVersion: 4,
		Connect: packets.ConnectParams{ProtocolName: []byte("MQTT"), Clean: true, Keepalive: 120, ClientIdentifier: "raw-" + user,
			UsernameFlag: true, Username: []byte(user), PasswordFlag: true, Password: []byte(pw)}}
	if err := pk.ConnectEncode(&buf); err != nil {
		b.Fatal(err)
	}
	c.Write(buf.Bytes())
	var connack [4]byte
	if _, err := io.ReadFull(c, connack[:]); err != nil || connack[0] != 0x20 || connack[3] != 0 {
		b.Fatalf("CONNACK %x %v", connack, err)
	}
	p := &rawPublisher{conn: c, acks: make(chan struct{}, 1<<16), slots: make(chan struct{}, window)}
	go func() {
		r := bufio.NewReader(c)
		var puback [4]byte
		for {
			if _, err := io.ReadFull(r, puback[:]); err != nil {
				close(p.acks)
				return
			}
			<-p.slots
			p.acks <- struct{}{}
		}
	}()
	return p
}

// BenchmarkIngestRawMQTT is BenchmarkIngestMQTT with rawPublisher clients.
func BenchmarkIngestRawMQTT(b *testing.B) {
	for _, be := range storetest.Backends() {
		b.Run(be.Name, func(b *testing.B) { benchRaw(b, be.Open(b, false)) })
	}
}

func benchRaw(b *testing.B, db *sqlstore.DB) {
	ctx := context.Background()
	const meters, window = 32, 60 // 60 in flight per meter, inside the 64-frame replay window
	ids := make([]uint64, meters)
	for i := range ids {
		ids[i] = 5100001 + uint64(i)
	}
	addMeters(b, db, ids...)
	km := newKMS(b)
	workers := 1
	if db.Driver() == "postgres" {
		workers = 4
	}
	dir := NewKMSDirectory(db, km)
	in, err := New(Config{Store: db, Directory: dir, Workers: workers})
	if err != nil {
		b.Fatal(err)
	}
	in.Start(ctx)
	defer in.Close()
	e, err := broker.NewEmbedded(broker.EmbeddedConfig{Listen: "127.0.0.1:0", Auth: dir})
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	e.Subscribe(ctx, []string{topic.Uplinks}, in.Handle)
	at := time.Now().UTC().Truncate(time.Second)
	db.Tx(ctx, func(tx store.Tx) error { return tx.Telemetry().EnsureReadingPartitions(ctx, at, 1) })
	per := b.N/meters + 1
	pubs := make([]*rawPublisher, meters)
	wire := make([][]byte, meters)
	for i, id := range ids {
		k := telemetryKey(b, km, id)
		fk, _ := frame.NewKey(k[:])
		pw, _ := MQTTPassword(k[:])
		pubs[i] = dialRaw(b, e.Addr(), strconv.FormatUint(id, 10), pw, window)
		defer pubs[i].conn.Close()
		var buf bytes.Buffer
		for j := range per {
			p, _ := frame.Seal(nil, fk, benchReading(id, uint32(j+1), at))
			pk := packets.Packet{FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1}, ProtocolVersion: 4,
				TopicName: topic.ForMeter(id, topic.Reading), Payload: p, PacketID: uint16(j%60000 + 1)}
			if err := pk.PublishEncode(&buf); err != nil {
				b.Fatal(err)
			}
		}
		wire[i] = buf.Bytes()
	}
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for i := range pubs {
		wg.Add(2)
		go func() { // writer: one packet per free slot, flushed when the window is full or idle
			defer wg.Done()
			w := bufio.NewWriterSize(pubs[i].conn, 64<<10)
			rest := wire[i]
			for len(rest) > 0 {
				select {
				case pubs[i].slots <- struct{}{}:
				default:
					w.Flush()
					pubs[i].slots <- struct{}{}
				}
				n := packetLen(rest)
				w.Write(rest[:n])
				rest = rest[n:]
			}
			w.Flush()
		}()
		go func() {
			defer wg.Done()
			for range per {
				if _, ok := <-pubs[i].acks; !ok {
					return
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	total := per * meters
	if got := in.Count(Stored); got != uint64(total) {
		b.Fatalf("stored %d of %d (%v)", got, total, in.Count(Duplicate))
	}
	b.ReportMetric(float64(total)/elapsed.Seconds(), "readings/s")
}

// packetLen is the length of the MQTT packet at the start of b.
func packetLen(b []byte) int {
	n, mul, i := 0, 1, 1
	for ; ; i++ {
		n += int(b[i]&0x7f) * mul
		if b[i]&0x80 == 0 {
			break
		}
		mul *= 128
	}
	return i + 1 + n
}
