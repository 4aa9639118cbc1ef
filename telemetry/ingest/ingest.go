// Package ingest takes meter telemetry off the broker and into the store:
// verify, dedupe, batch, acknowledge.
//
// # Pipeline
//
// The broker calls Handle for every message (package broker). Handle, on
// the broker's goroutine, does everything that needs no shared state: it
// parses the topic, peeks at the frame header, checks that the meter and
// kind inside the frame are the ones the topic names, finds the meter's
// telemetry key (Directory, cached) and verifies the MAC (frame.Open). A
// message that fails any of this is counted and acknowledged: sending it
// again cannot make it valid. A verified frame goes into the bounded queue of
// the worker that owns its meter (meter number modulo Workers).
//
// Each worker takes up to BatchSize frames at a time, classifies them against
// the meters' replay windows (package replay, cached per meter and loaded
// from the store on first sight) and writes the batch in one transaction
// (store.FrameWriter: COPY on PostgreSQL, multi-row INSERT on SQLite),
// windows included. Only after the commit does it call each message's ack,
// which is when the broker sends the PUBACK.
//
// # Guarantees
//
//   - At least once: a message is acknowledged only once it is stored or
//     judged; a crash loses nothing the meter or broker will not resend.
//   - Stored once: storage is idempotent by (meter, counter); a resent
//     frame is counted as a duplicate and writes nothing. A different frame
//     under a stored counter is refused and counted as reused.
//   - Back-pressure, never loss: when a worker's queue is full, Handle
//     blocks, which stops the broker reading from that connection. When the
//     database fails, the worker retries the batch with back-off and
//     acknowledges nothing meanwhile.
//
// The window cache belongs to one worker per meter, so it needs no lock; with
// several head-end replicas sharing a broker the store stays the authority
// (a stale window only sends a frame on to the (meter, counter) check).
package ingest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"sluice/store"
	"sluice/telemetry/frame"
	"sluice/telemetry/replay"
	"sluice/telemetry/topic"
)

// Result classifies one message.
type Result int

// Results, the label values of sluice_telemetry_frames_total.
const (
	Stored        Result = iota // new frame, stored
	Duplicate                   // retransmission or identical replay: stored before, nothing written
	Forged                      // MAC verification failed
	Reused                      // a different frame under an accepted counter (cloned meter, rolled-back counter)
	OutOfWindow                 // counter too far below the highest to judge
	Malformed                   // not a frame, or a topic outside the scheme
	Mismatch                    // the frame's meter or kind is not its topic's
	UnknownMeter                // no such registered meter
	WMBusStored                 // wM-Bus telegram decoded and stored
	WMBusRejected               // wM-Bus telegram from an unregistered meter or failing to decode
	numResults
)

var resultNames = [numResults]string{"stored", "duplicate", "forged", "reused", "out_of_window", "malformed",
	"topic_mismatch", "unknown_meter", "wmbus_stored", "wmbus_rejected"}

func (r Result) String() string { return resultNames[r] }

// StoredFrame is a frame a batch committed, handed to OnStored.
type StoredFrame struct {
	Meter Meter
	Frame *frame.Frame
}

// Config configures an Ingest.
type Config struct {
	Store     store.Store
	Directory Directory
	// Writer is the bulk path; nil uses Store when it implements
	// store.FrameWriter, else transactions.
	Writer store.FrameWriter
	// Registerer receives the metrics (server.Server.Registry()); nil
	// registers nothing.
	Registerer prometheus.Registerer
	Logger     *slog.Logger
	Now        func() time.Time
	// Workers is how many batches are written at once (1 suits SQLite's
	// single writer; PostgreSQL takes 2-4). Default 1.
	Workers int
	// QueueSize bounds each worker's queue of verified frames. Default 8192.
	QueueSize int
	// BatchSize caps the frames in one transaction. Default 2000.
	BatchSize int
	// FlushEvery is the longest a frame waits for its batch to fill.
	// Default 10ms.
	FlushEvery time.Duration
	// OnStored, when set, is called on the worker's goroutine with the
	// frames each committed batch stored (revenue protection, voucher
	// acknowledgements). It must be quick; it delays the next batch.
	OnStored func(ctx context.Context, frames []StoredFrame)
	// OnReused, when set, is called for each authentic frame refused
	// because its counter was used by a different frame: two different
	// authentic frames under one counter mean a cloned meter or a
	// rolled-back counter, which deserves an alert, not just a count.
	OnReused func(ctx context.Context, m Meter, counter uint32)
	// WMBus, when set, handles gateway topics.
	WMBus *WMBus
}

// Ingest is the telemetry pipeline.
type Ingest struct {
	cfg     Config
	writer  store.FrameWriter
	log     *slog.Logger
	queues  []chan item
	counts  [numResults]atomic.Uint64
	metrics *collector

	// ackers send the acknowledgements of committed batches: sending one
	// is a write to a connection, slow enough that a worker sending them
	// itself caps the whole pipeline. A meter's acks always go through the
	// same acker, so they leave in the order its messages arrived, as
	// MQTT requires.
	ackers []chan []func()
	ackWG  sync.WaitGroup

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	closed atomic.Bool
}

// numAckers is how many acknowledgement senders run.
const numAckers = 8

type item struct {
	meter Meter
	f     *frame.Frame
	tag   [frame.TagSize]byte
	ack   func()
	at    time.Time
}

// New builds an Ingest; Start runs it.
func New(cfg Config) (*Ingest, error) {
	if cfg.Store == nil || cfg.Directory == nil {
		return nil, errors.New("ingest: Store and Directory are required")
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 1
	}
	if cfg.QueueSize <= 0 {
		cfg.QueueSize = 8192
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = 2000
	}
	if cfg.FlushEvery <= 0 {
		cfg.FlushEvery = 10 * time.Millisecond
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	in := &Ingest{cfg: cfg, writer: cfg.Writer, log: cfg.Logger}
	if in.log == nil {
		in.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if in.writer == nil {
		if w, ok := cfg.Store.(store.FrameWriter); ok {
			in.writer = w
		} else {
			in.writer = txWriter{cfg.Store}
		}
	}
	in.queues = make([]chan item, cfg.Workers)
	for i := range in.queues {
		in.queues[i] = make(chan item, cfg.QueueSize)
	}
	in.metrics = &collector{in: in,
		frames: prometheus.NewDesc("sluice_telemetry_frames_total", "Telemetry messages by outcome.", []string{"result"}, nil),
		queued: prometheus.NewDesc("sluice_telemetry_queue_frames", "Verified frames waiting to be stored.", nil, nil),
	}
	in.metrics.batches = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "sluice_telemetry_batch_seconds",
		Help: "Time to store one batch of frames.", Buckets: prometheus.ExponentialBuckets(0.001, 2, 12)})
	if cfg.Registerer != nil {
		if err := in.Register(cfg.Registerer); err != nil {
			return nil, err
		}
	}
	return in, nil
}

// Register adds the ingest's metrics to r (when Config.Registerer was not
// available at New).
func (in *Ingest) Register(r prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{in.metrics, in.metrics.batches} {
		if err := r.Register(c); err != nil {
			return fmt.Errorf("ingest: metrics: %w", err)
		}
	}
	return nil
}

// Start runs the workers until Close.
func (in *Ingest) Start(ctx context.Context) {
	in.ctx, in.cancel = context.WithCancel(context.WithoutCancel(ctx))
	in.ackers = make([]chan []func(), numAckers)
	for i := range in.ackers {
		in.ackers[i] = make(chan []func(), 64)
		in.ackWG.Add(1)
		go func() {
			defer in.ackWG.Done()
			for acks := range in.ackers[i] {
				for _, ack := range acks {
					ack()
				}
			}
		}()
	}
	for i := range in.queues {
		in.wg.Add(1)
		go func() {
			defer in.wg.Done()
			in.work(in.ctx, in.queues[i])
		}()
	}
}

// Close stops the workers. Frames still queued are not acknowledged, so
// the broker delivers them again after a restart.
func (in *Ingest) Close() error {
	if in.closed.Swap(true) {
		return nil
	}
	if in.cancel != nil {
		in.cancel()
	}
	in.wg.Wait()
	// Acks of committed batches still go out.
	for _, a := range in.ackers {
		close(a)
	}
	in.ackWG.Wait()
	return nil
}

// Count returns how many messages had a result so far.
func (in *Ingest) Count(r Result) uint64 { return in.counts[r].Load() }

func (in *Ingest) count(r Result, n int) { in.counts[r].Add(uint64(n)) }

// Handle is the broker.Handler of the uplink and gateway topics.
func (in *Ingest) Handle(name string, payload []byte, ack func()) {
	if in.closed.Load() || in.ctx == nil {
		return // not acknowledged: redelivered to the next run
	}
	t, err := topic.Parse(name)
	if err != nil || (!t.Kind.Uplink()) {
		in.count(Malformed, 1)
		ack()
		return
	}
	if t.Kind == topic.Gateway {
		if in.cfg.WMBus == nil {
			in.count(WMBusRejected, 1)
			ack()
			return
		}
		if err := in.cfg.WMBus.handle(in.ctx, t.Gateway, payload, in); err != nil {
			// A database failure: leave it unacknowledged for redelivery.
			in.log.Warn("wM-Bus ingest", "gateway", t.Gateway, "err", err)
			return
		}
		ack()
		return
	}
	h, err := frame.Peek(payload)
	if err != nil {
		in.count(Malformed, 1)
		ack()
		return
	}
	if h.Meter != t.Meter || uint8(h.Kind) != uint8(t.Kind) {
		in.count(Mismatch, 1)
		ack()
		return
	}
	m, err := in.cfg.Directory.Meter(in.ctx, h.Meter)
	if errors.Is(err, ErrUnknownMeter) {
		in.count(UnknownMeter, 1)
		ack()
		return
	}
	if err != nil {
		in.log.Warn("telemetry key", "meter", h.Meter, "err", err)
		return // a KMS or database failure: redelivery may succeed
	}
	f := new(frame.Frame)
	if err := frame.Open(m.Key, payload, f); err != nil {
		if errors.Is(err, frame.ErrMAC) {
			in.count(Forged, 1)
		} else {
			in.count(Malformed, 1)
		}
		ack()
		return
	}
	it := item{meter: m, f: f, tag: frame.Tag(payload), ack: ack, at: in.cfg.Now()}
	select {
	case in.queues[h.Meter%uint64(len(in.queues))] <- it:
	case <-in.ctx.Done():
	}
}

// work is one worker's loop.
func (in *Ingest) work(ctx context.Context, q chan item) {
	windows := make(map[int64]replay.Window)
	batch := make([]item, 0, in.cfg.BatchSize)
	timer := time.NewTimer(time.Hour)
	for {
		batch = batch[:0]
		select {
		case it := <-q:
			batch = append(batch, it)
		case <-ctx.Done():
			return
		}
		timer.Reset(in.cfg.FlushEvery)
	fill:
		for len(batch) < cap(batch) {
			select {
			case it := <-q:
				batch = append(batch, it)
			case <-timer.C:
				break fill
			case <-ctx.Done():
				return
			}
		}
		timer.Stop()
		backoff := 50 * time.Millisecond
		for {
			err := in.store(ctx, windows, batch)
			if err == nil {
				break
			}
			if ctx.Err() != nil {
				return
			}
			// Nothing is acknowledged: keep the batch and try again; the
			// queue fills meanwhile and pushes back on the broker.
			in.log.Error("telemetry batch not stored; retrying", "frames", len(batch), "err", err, "retry_in", backoff)
			select {
			case <-time.After(backoff):
			case <-ctx.Done():
				return
			}
			backoff = min(2*backoff, 5*time.Second)
		}
	}
}

// store classifies and writes one batch, then acknowledges it.
func (in *Ingest) store(ctx context.Context, cache map[int64]replay.Window, batch []item) error {
	start := time.Now()
	var missing []int64
	for _, it := range batch {
		if _, ok := cache[it.meter.ID]; !ok {
			missing = append(missing, it.meter.ID)
			cache[it.meter.ID] = replay.Window{}
		}
	}
	if len(missing) > 0 {
		err := in.cfg.Store.Read(ctx, func(tx store.Tx) error {
			ws, err := tx.Telemetry().ReplayStates(ctx, missing)
			if err != nil {
				return err
			}
			for _, w := range ws {
				var rw replay.Window
				if err := rw.UnmarshalBinary(w.Window); err != nil {
					return fmt.Errorf("meter %d: %w", w.MeterID, err)
				}
				cache[w.MeterID] = rw
			}
			return nil
		})
		if err != nil {
			for _, id := range missing {
				delete(cache, id)
			}
			return fmt.Errorf("load replay windows: %w", err)
		}
	}

	// Classify on working copies: the cache moves only after the commit.
	work := make(map[int64]replay.Window)
	last := make(map[int64]store.ReplayState)
	var frames []store.TelemetryFrame
	var keep []int // batch index of each entry of frames
	var reused, old int
	var reusedBy []item
	for i, it := range batch {
		w, ok := work[it.meter.ID]
		if !ok {
			w = cache[it.meter.ID]
		}
		v, nw := w.Observe(it.f.Counter, it.tag)
		switch v {
		case replay.Reused:
			reused++
			reusedBy = append(reusedBy, it)
			continue
		case replay.TooOld:
			old++
			continue
		}
		// New, or Duplicate: the store decides between a retransmission
		// and a reused counter below the window's top.
		work[it.meter.ID] = nw
		st := last[it.meter.ID]
		st.MeterID, st.Highest = it.meter.ID, nw.Highest
		st.LastFrameAt = it.at
		if it.f.Kind == frame.KindReading {
			st.LastReadingAt = it.at
		}
		last[it.meter.ID] = st
		frames = append(frames, toStore(it))
		keep = append(keep, i)
	}
	windows := make([]store.ReplayState, 0, len(last))
	for id, st := range last {
		b, _ := work[id].MarshalBinary()
		st.Window = b
		windows = append(windows, st)
	}
	var outcomes []store.FrameOutcome
	if len(frames) > 0 {
		var err error
		if outcomes, err = in.writer.WriteFrames(ctx, frames, windows); err != nil {
			return err
		}
	}
	for id, w := range work {
		cache[id] = w
	}
	in.metrics.batches.Observe(time.Since(start).Seconds())
	in.count(Reused, reused)
	in.count(OutOfWindow, old)
	var stored []StoredFrame
	for j, o := range outcomes {
		switch o {
		case store.FrameStored:
			in.count(Stored, 1)
			it := batch[keep[j]]
			stored = append(stored, StoredFrame{Meter: it.meter, Frame: it.f})
		case store.FrameDuplicate:
			in.count(Duplicate, 1)
		case store.FrameReused:
			in.count(Reused, 1)
			reusedBy = append(reusedBy, batch[keep[j]])
		}
	}
	// Every message of the batch is judged now: acknowledge them all, in
	// arrival order per meter.
	var shards [numAckers][]func()
	for _, it := range batch {
		shards[it.meter.Number%numAckers] = append(shards[it.meter.Number%numAckers], it.ack)
	}
	for i, acks := range shards {
		if len(acks) > 0 {
			in.ackers[i] <- acks
		}
	}
	if in.cfg.OnStored != nil && len(stored) > 0 {
		in.cfg.OnStored(ctx, stored)
	}
	if in.cfg.OnReused != nil {
		for _, it := range reusedBy {
			in.cfg.OnReused(ctx, it.meter, it.f.Counter)
		}
	}
	return nil
}

func toStore(it item) store.TelemetryFrame {
	f := it.f
	sf := store.TelemetryFrame{MeterID: it.meter.ID, Counter: f.Counter, Kind: uint8(f.Kind), Tag: it.tag, Time: f.Time, ReceivedAt: it.at}
	switch f.Kind {
	case frame.KindReading:
		r := f.Reading
		sf.Reading = &store.Reading{Forward: int64(r.Forward), Reverse: int64(r.Reverse), Credit: r.Credit, Loaded: int64(r.Loaded),
			Unit: uint8(r.Unit), Status: uint16(r.Status), Interval: r.Interval, Intervals: r.Intervals}
	case frame.KindEvent:
		sf.Events = make([]store.TelemetryEvent, len(f.Events))
		for i, e := range f.Events {
			sf.Events[i] = store.TelemetryEvent{Kind: e.Kind, Reason: e.Reason, Time: e.Time, Value: e.Value}
		}
	case frame.KindAck:
		a := f.Ack
		sf.Ack = &store.TelemetryAck{Subject: uint8(a.Subject), Result: uint8(a.Result), Reason: a.Reason, Ref: int64(a.Ref),
			Amount: a.Amount, Credit: a.Credit, Loaded: int64(a.Loaded)}
	}
	return sf
}

// txWriter is the FrameWriter of a store without a bulk path.
type txWriter struct{ st store.Store }

func (w txWriter) WriteFrames(ctx context.Context, frames []store.TelemetryFrame, windows []store.ReplayState) ([]store.FrameOutcome, error) {
	var out []store.FrameOutcome
	err := w.st.Tx(ctx, func(tx store.Tx) error {
		var err error
		out, err = tx.Telemetry().StoreFrames(ctx, frames, windows)
		return err
	})
	return out, err
}

// collector exposes the counters to Prometheus.
type collector struct {
	in             *Ingest
	frames, queued *prometheus.Desc
	batches        prometheus.Histogram
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) { ch <- c.frames; ch <- c.queued }

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	for r := range numResults {
		ch <- prometheus.MustNewConstMetric(c.frames, prometheus.CounterValue, float64(c.in.Count(r)), r.String())
	}
	n := 0
	for _, q := range c.in.queues {
		n += len(q)
	}
	ch <- prometheus.MustNewConstMetric(c.queued, prometheus.GaugeValue, float64(n))
}
