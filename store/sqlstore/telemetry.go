package sqlstore

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"

	"sluice/store"
)

// Frames are stored in three steps inside one transaction:
//
//  1. their identities go into telemetry_frames with ON CONFLICT DO NOTHING,
//     which reports the ones that were new (on PostgreSQL after a COPY that
//     assumes all are: see pgOps.insertFrames); a frame that conflicted is a
//     retransmission when the stored tag equals its own, else a reused
//     counter;
//  2. the bodies of the new frames only go into readings, telemetry_events
//     and telemetry_acks, with no conflict handling needed (step 1 gated
//     them), which is what lets PostgreSQL take them by COPY;
//  3. the replay windows are upserted, moving only forward.
//
// bulkOps is the part that differs: multi-row statements through
// database/sql (both databases) or pgx's COPY protocol (PostgreSQL).
type bulkOps interface {
	insertFrames(ctx context.Context, fs []*store.TelemetryFrame) (map[frameKey]bool, error)
	storedTag(ctx context.Context, k frameKey) ([]byte, error)
	insertReadings(ctx context.Context, rs []*store.Reading) error
	insertEvents(ctx context.Context, es []*store.TelemetryEvent) error
	insertAcks(ctx context.Context, as []*store.TelemetryAck) error
	upsertWindows(ctx context.Context, ws []store.ReplayState) error
}

type frameKey struct {
	meter   int64
	counter uint32
}

// rowsPerStatement keeps multi-row statements under both databases' limit
// on bound parameters (SQLite 32766, PostgreSQL 65535) at 12 columns.
const rowsPerStatement = 512

func storeFrames(ctx context.Context, ops bulkOps, frames []store.TelemetryFrame, windows []store.ReplayState) ([]store.FrameOutcome, error) {
	out := make([]store.FrameOutcome, len(frames))
	// A batch may hold the same frame twice (a retransmission that arrived
	// before the first copy was written): only the first goes to the
	// database; the others are judged against it.
	first := make(map[frameKey]int, len(frames))
	var unique []*store.TelemetryFrame
	for i := range frames {
		f := &frames[i]
		if f.Kind < 1 || f.Kind > 3 || f.Counter == 0 {
			return nil, fmt.Errorf("frame %d of meter %d: kind %d, counter %d: %w", i, f.MeterID, f.Kind, f.Counter, store.ErrConstraint)
		}
		k := frameKey{f.MeterID, f.Counter}
		if j, ok := first[k]; ok {
			if frames[j].Tag == f.Tag {
				out[i] = store.FrameDuplicate
			} else {
				out[i] = store.FrameReused
			}
			continue
		}
		first[k] = i
		unique = append(unique, f)
	}
	inserted, err := ops.insertFrames(ctx, unique)
	if err != nil {
		return nil, err
	}
	var readings []*store.Reading
	var events []*store.TelemetryEvent
	var acks []*store.TelemetryAck
	for _, f := range unique {
		i := first[frameKey{f.MeterID, f.Counter}]
		if !inserted[frameKey{f.MeterID, f.Counter}] {
			tag, err := ops.storedTag(ctx, frameKey{f.MeterID, f.Counter})
			if err != nil {
				return nil, err
			}
			if bytes.Equal(tag, f.Tag[:]) {
				out[i] = store.FrameDuplicate
			} else {
				out[i] = store.FrameReused
			}
			continue
		}
		out[i] = store.FrameStored
		switch {
		case f.Reading != nil:
			r := f.Reading
			r.MeterID, r.Counter = f.MeterID, f.Counter
			if r.Time.IsZero() {
				r.Time = f.Time
			}
			if r.ReceivedAt.IsZero() {
				r.ReceivedAt = f.ReceivedAt
			}
			readings = append(readings, r)
		case f.Ack != nil:
			a := f.Ack
			a.MeterID, a.Counter = f.MeterID, f.Counter
			if a.Time.IsZero() {
				a.Time = f.Time
			}
			acks = append(acks, a)
		}
		for j := range f.Events {
			e := &f.Events[j]
			e.MeterID, e.Counter, e.Index = f.MeterID, f.Counter, j
			events = append(events, e)
		}
	}
	if err := ops.insertReadings(ctx, readings); err != nil {
		return nil, err
	}
	if err := ops.insertEvents(ctx, events); err != nil {
		return nil, err
	}
	if err := ops.insertAcks(ctx, acks); err != nil {
		return nil, err
	}
	if err := ops.upsertWindows(ctx, dedupeWindows(windows)); err != nil {
		return nil, err
	}
	return out, nil
}

// dedupeWindows keeps one window per meter (the most advanced), since one
// upsert statement may not touch a row twice.
func dedupeWindows(ws []store.ReplayState) []store.ReplayState {
	at := make(map[int64]int, len(ws))
	out := ws[:0:0]
	for _, w := range ws {
		if len(w.Window) != 20 {
			continue
		}
		if i, ok := at[w.MeterID]; ok {
			o := &out[i]
			if w.Highest >= o.Highest {
				o.Highest, o.Window = w.Highest, w.Window
			}
			if w.LastFrameAt.After(o.LastFrameAt) {
				o.LastFrameAt = w.LastFrameAt
			}
			if w.LastReadingAt.After(o.LastReadingAt) {
				o.LastReadingAt = w.LastReadingAt
			}
			continue
		}
		at[w.MeterID] = len(out)
		out = append(out, w)
	}
	return out
}

func packIntervals(iv []uint32) []byte {
	if len(iv) == 0 {
		return nil
	}
	b := make([]byte, 4*len(iv))
	for i, v := range iv {
		binary.BigEndian.PutUint32(b[4*i:], v)
	}
	return b
}

func unpackIntervals(b []byte) []uint32 {
	if len(b) == 0 {
		return nil
	}
	iv := make([]uint32, len(b)/4)
	for i := range iv {
		iv[i] = binary.BigEndian.Uint32(b[4*i:])
	}
	return iv
}

// --- the database/sql path (both databases)

type sqlOps struct{ t *tx }

// values builds "(?, ?, ?), (?, ?, ?)" for n rows of cols columns.
func values(n, cols int) string {
	row := "(" + strings.TrimSuffix(strings.Repeat("?, ", cols), ", ") + ")"
	return strings.TrimSuffix(strings.Repeat(row+", ", n), ", ")
}

// chunks cuts xs into statements of rowsPerStatement rows and a tail of
// powers of two. A multi-row statement's text depends on its row count,
// and SQLite compiles each text once (the statement cache, stmtcache.go):
// with a tail of any length, most batches compiled a new statement (6% of
// the ingest's CPU) and the tails crowded the cache's 512 places, which
// vending needs too. This way a table has at most ten statement texts.
func chunks[T any](xs []T, fn func([]T) error) error {
	for len(xs) > 0 {
		n := rowsPerStatement
		if len(xs) < n {
			n = 1 << (bits.Len(uint(len(xs))) - 1)
		}
		if err := fn(xs[:n]); err != nil {
			return err
		}
		xs = xs[n:]
	}
	return nil
}

func (o sqlOps) insertFrames(ctx context.Context, fs []*store.TelemetryFrame) (map[frameKey]bool, error) {
	inserted := make(map[frameKey]bool, len(fs))
	err := chunks(fs, func(fs []*store.TelemetryFrame) error {
		args := make([]any, 0, 5*len(fs))
		for _, f := range fs {
			args = append(args, f.MeterID, int64(f.Counter), int64(f.Kind), f.Tag[:], micros(f.ReceivedAt))
		}
		rows, err := o.t.query(ctx, `INSERT INTO telemetry_frames (meter_id, counter, kind, tag, received_at) VALUES `+
			values(len(fs), 5)+` ON CONFLICT DO NOTHING RETURNING meter_id, counter`, args...)
		if err != nil {
			return fmt.Errorf("store frames: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			var m, c int64
			if err := rows.Scan(&m, &c); err != nil {
				return fmt.Errorf("store frames: %w", err)
			}
			inserted[frameKey{m, uint32(c)}] = true
		}
		return rows.Err()
	})
	return inserted, err
}

func (o sqlOps) storedTag(ctx context.Context, k frameKey) ([]byte, error) {
	var tag []byte
	if err := o.t.row(ctx, `SELECT tag FROM telemetry_frames WHERE meter_id = ? AND counter = ?`, []any{k.meter, int64(k.counter)}, &tag); err != nil {
		return nil, fmt.Errorf("frame %d of meter %d: %w", k.counter, k.meter, err)
	}
	return tag, nil
}

const readingCols = `meter_id, counter, time, received_at, forward, reverse, credit, loaded, unit, status, interval_s, intervals`

func readingArgs(r *store.Reading) []any {
	return []any{r.MeterID, int64(r.Counter), micros(r.Time), micros(r.ReceivedAt), r.Forward, r.Reverse, r.Credit, r.Loaded,
		int64(r.Unit), int64(r.Status), int64(r.Interval / time.Second), packIntervals(r.Intervals)}
}

func (o sqlOps) insertReadings(ctx context.Context, rs []*store.Reading) error {
	return chunks(rs, func(rs []*store.Reading) error {
		args := make([]any, 0, 12*len(rs))
		for _, r := range rs {
			args = append(args, readingArgs(r)...)
		}
		if _, err := o.t.exec(ctx, `INSERT INTO readings (`+readingCols+`) VALUES `+values(len(rs), 12), args...); err != nil {
			return fmt.Errorf("store readings: %w", err)
		}
		return nil
	})
}

func (o sqlOps) insertEvents(ctx context.Context, es []*store.TelemetryEvent) error {
	return chunks(es, func(es []*store.TelemetryEvent) error {
		args := make([]any, 0, 7*len(es))
		for _, e := range es {
			args = append(args, e.MeterID, int64(e.Counter), int64(e.Index), int64(e.Kind), int64(e.Reason), micros(e.Time), e.Value)
		}
		if _, err := o.t.exec(ctx, `INSERT INTO telemetry_events (meter_id, counter, idx, kind, reason, time, value) VALUES `+values(len(es), 7), args...); err != nil {
			return fmt.Errorf("store events: %w", err)
		}
		return nil
	})
}

func (o sqlOps) insertAcks(ctx context.Context, as []*store.TelemetryAck) error {
	return chunks(as, func(as []*store.TelemetryAck) error {
		args := make([]any, 0, 10*len(as))
		for _, a := range as {
			args = append(args, a.MeterID, int64(a.Counter), micros(a.Time), int64(a.Subject), int64(a.Result), int64(a.Reason), a.Ref, a.Amount, a.Credit, a.Loaded)
		}
		if _, err := o.t.exec(ctx, `INSERT INTO telemetry_acks (meter_id, counter, time, subject, result, reason, ref, amount, credit, loaded) VALUES `+values(len(as), 10), args...); err != nil {
			return fmt.Errorf("store acks: %w", err)
		}
		return nil
	})
}

// upsertWindow moves a stored window only forward, and the last-heard
// times only later, whatever order concurrent writers commit in.
const upsertWindow = ` ON CONFLICT (meter_id) DO UPDATE SET
	replay = CASE WHEN excluded.highest >= telemetry_meters.highest THEN excluded.replay ELSE telemetry_meters.replay END,
	highest = CASE WHEN excluded.highest >= telemetry_meters.highest THEN excluded.highest ELSE telemetry_meters.highest END,
	last_frame_at = CASE WHEN excluded.last_frame_at > telemetry_meters.last_frame_at THEN excluded.last_frame_at ELSE telemetry_meters.last_frame_at END,
	last_reading_at = CASE WHEN excluded.last_reading_at > telemetry_meters.last_reading_at THEN excluded.last_reading_at ELSE telemetry_meters.last_reading_at END`

func (o sqlOps) upsertWindows(ctx context.Context, ws []store.ReplayState) error {
	return chunks(ws, func(ws []store.ReplayState) error {
		args := make([]any, 0, 5*len(ws))
		for _, w := range ws {
			args = append(args, w.MeterID, int64(w.Highest), w.Window, micros(w.LastFrameAt), micros(w.LastReadingAt))
		}
		if _, err := o.t.exec(ctx, `INSERT INTO telemetry_meters (meter_id, highest, replay, last_frame_at, last_reading_at) VALUES `+
			values(len(ws), 5)+upsertWindow, args...); err != nil {
			return fmt.Errorf("store replay windows: %w", err)
		}
		return nil
	})
}

// --- the PostgreSQL COPY path

type pgOps struct {
	tx pgx.Tx
	// classify is the dialect's: it maps a unique violation to
	// store.ErrConflict.
	classify func(error) error
}

// insertFrames first tries the common case, a batch none of whose frames is
// stored yet (retransmissions are mostly caught by the replay windows before
// a batch is written), as a COPY inside a savepoint: a plain bulk insert,
// without the speculative insertion of ON CONFLICT, the arrays to unnest or
// the rows RETURNING sends back (measured side by side: about 1.06x readings
// per second over MQTT, within this machine's noise). When any
// frame is already stored the COPY fails as a whole on the primary key; the
// batch rolls back to the savepoint and takes the statement that sorts the
// new frames from the stored ones.
func (o pgOps) insertFrames(ctx context.Context, fs []*store.TelemetryFrame) (map[frameKey]bool, error) {
	inserted := make(map[frameKey]bool, len(fs))
	if len(fs) == 0 {
		return inserted, nil
	}
	sp, err := o.tx.Begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("store frames: %w", err)
	}
	_, err = sp.CopyFrom(ctx, pgx.Identifier{"telemetry_frames"}, []string{"meter_id", "counter", "kind", "tag", "received_at"},
		pgx.CopyFromSlice(len(fs), func(i int) ([]any, error) {
			f := fs[i]
			return []any{f.MeterID, int64(f.Counter), int16(f.Kind), f.Tag[:], micros(f.ReceivedAt)}, nil
		}))
	if err == nil {
		if err := sp.Commit(ctx); err != nil {
			return nil, fmt.Errorf("store frames: %w", err)
		}
		for _, f := range fs {
			inserted[frameKey{f.MeterID, f.Counter}] = true
		}
		return inserted, nil
	}
	if !errors.Is(o.classify(err), store.ErrConflict) {
		return nil, fmt.Errorf("store frames: %w", err)
	}
	if err := sp.Rollback(ctx); err != nil {
		return nil, fmt.Errorf("store frames: %w", err)
	}
	ms, cs, ks, rs := make([]int64, len(fs)), make([]int64, len(fs)), make([]int16, len(fs)), make([]int64, len(fs))
	tags := make([][]byte, len(fs))
	for i, f := range fs {
		ms[i], cs[i], ks[i], tags[i], rs[i] = f.MeterID, int64(f.Counter), int16(f.Kind), f.Tag[:], micros(f.ReceivedAt)
	}
	rows, err := o.tx.Query(ctx, `INSERT INTO telemetry_frames (meter_id, counter, kind, tag, received_at)
		SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::smallint[], $4::bytea[], $5::bigint[])
		ON CONFLICT DO NOTHING RETURNING meter_id, counter`, ms, cs, ks, tags, rs)
	if err != nil {
		return nil, fmt.Errorf("store frames: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var m, c int64
		if err := rows.Scan(&m, &c); err != nil {
			return nil, fmt.Errorf("store frames: %w", err)
		}
		inserted[frameKey{m, uint32(c)}] = true
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store frames: %w", err)
	}
	return inserted, nil
}

func (o pgOps) storedTag(ctx context.Context, k frameKey) ([]byte, error) {
	var tag []byte
	if err := o.tx.QueryRow(ctx, `SELECT tag FROM telemetry_frames WHERE meter_id = $1 AND counter = $2`, k.meter, int64(k.counter)).Scan(&tag); err != nil {
		return nil, fmt.Errorf("frame %d of meter %d: %w", k.counter, k.meter, err)
	}
	return tag, nil
}

func (o pgOps) copy(ctx context.Context, table string, cols []string, n int, row func(i int) []any) error {
	if n == 0 {
		return nil
	}
	src := pgx.CopyFromSlice(n, func(i int) ([]any, error) { return row(i), nil })
	if _, err := o.tx.CopyFrom(ctx, pgx.Identifier{table}, cols, src); err != nil {
		return fmt.Errorf("copy %s: %w", table, err)
	}
	return nil
}

func (o pgOps) insertReadings(ctx context.Context, rs []*store.Reading) error {
	return o.copy(ctx, "readings", strings.Split(strings.ReplaceAll(readingCols, " ", ""), ","), len(rs), func(i int) []any {
		r := rs[i]
		return []any{r.MeterID, int64(r.Counter), micros(r.Time), micros(r.ReceivedAt), r.Forward, r.Reverse, r.Credit, r.Loaded,
			int16(r.Unit), int32(r.Status), int32(r.Interval / time.Second), packIntervals(r.Intervals)}
	})
}

func (o pgOps) insertEvents(ctx context.Context, es []*store.TelemetryEvent) error {
	return o.copy(ctx, "telemetry_events", []string{"meter_id", "counter", "idx", "kind", "reason", "time", "value"}, len(es), func(i int) []any {
		e := es[i]
		return []any{e.MeterID, int64(e.Counter), int16(e.Index), int16(e.Kind), int16(e.Reason), micros(e.Time), e.Value}
	})
}

func (o pgOps) insertAcks(ctx context.Context, as []*store.TelemetryAck) error {
	return o.copy(ctx, "telemetry_acks", []string{"meter_id", "counter", "time", "subject", "result", "reason", "ref", "amount", "credit", "loaded"}, len(as), func(i int) []any {
		a := as[i]
		return []any{a.MeterID, int64(a.Counter), micros(a.Time), int16(a.Subject), int16(a.Result), int16(a.Reason), a.Ref, a.Amount, a.Credit, a.Loaded}
	})
}

func (o pgOps) upsertWindows(ctx context.Context, ws []store.ReplayState) error {
	if len(ws) == 0 {
		return nil
	}
	ms, hs, fs, rs := make([]int64, len(ws)), make([]int64, len(ws)), make([]int64, len(ws)), make([]int64, len(ws))
	wins := make([][]byte, len(ws))
	for i, w := range ws {
		ms[i], hs[i], wins[i], fs[i], rs[i] = w.MeterID, int64(w.Highest), w.Window, micros(w.LastFrameAt), micros(w.LastReadingAt)
	}
	_, err := o.tx.Exec(ctx, `INSERT INTO telemetry_meters (meter_id, highest, replay, last_frame_at, last_reading_at)
		SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bytea[], $4::bigint[], $5::bigint[])`+upsertWindow, ms, hs, wins, fs, rs)
	if err != nil {
		return fmt.Errorf("store replay windows: %w", err)
	}
	return nil
}

// WriteFrames implements store.FrameWriter: COPY on PostgreSQL, multi-row
// statements on SQLite, in one transaction either way.
func (db *DB) WriteFrames(ctx context.Context, frames []store.TelemetryFrame, windows []store.ReplayState) ([]store.FrameOutcome, error) {
	if db.d.Name != "postgres" {
		var out []store.FrameOutcome
		err := db.Tx(ctx, func(t store.Tx) error {
			var err error
			out, err = t.Telemetry().StoreFrames(ctx, frames, windows)
			return err
		})
		return out, err
	}
	backoff := 2 * time.Millisecond
	for attempt := 1; ; attempt++ {
		out, err := db.copyFrames(ctx, frames, windows)
		if err == nil || attempt == maxAttempts || !db.d.Retryable(err) || ctx.Err() != nil {
			return out, db.wrap(err)
		}
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		backoff = min(2*backoff, 200*time.Millisecond)
	}
}

func (db *DB) copyFrames(ctx context.Context, frames []store.TelemetryFrame, windows []store.ReplayState) ([]store.FrameOutcome, error) {
	conn, err := db.write.Conn(ctx)
	if err != nil {
		return nil, fmt.Errorf("store frames: %w", err)
	}
	defer conn.Close()
	var out []store.FrameOutcome
	err = conn.Raw(func(dc any) error {
		sc, ok := dc.(*stdlib.Conn)
		if !ok {
			return fmt.Errorf("store frames: driver connection is %T, not pgx", dc)
		}
		return pgx.BeginFunc(ctx, sc.Conn(), func(tx pgx.Tx) error {
			// The batch's frames are copies: storeFrames fills in their
			// bodies' keys, and a retried attempt starts from scratch.
			fs := append([]store.TelemetryFrame(nil), frames...)
			var err error
			out, err = storeFrames(ctx, pgOps{tx, db.d.Classify}, fs, windows)
			return err
		})
	})
	return out, err
}

var _ store.FrameWriter = (*DB)(nil)

// --- the repository

type telemetry struct{ *tx }

func (r telemetry) StoreFrames(ctx context.Context, frames []store.TelemetryFrame, windows []store.ReplayState) ([]store.FrameOutcome, error) {
	return storeFrames(ctx, sqlOps{r.tx}, frames, windows)
}

func int64s(ids []int64) ([]any, string) {
	args := make([]any, len(ids))
	for i, id := range ids {
		args[i] = id
	}
	return args, strings.TrimSuffix(strings.Repeat("?, ", len(ids)), ", ")
}

func (r telemetry) ReplayStates(ctx context.Context, meterIDs []int64) ([]store.ReplayState, error) {
	var out []store.ReplayState
	err := chunks(meterIDs, func(ids []int64) error {
		args, in := int64s(ids)
		ws, err := collect(r.tx, ctx, "replay windows", func(scan func(...any) error) (store.ReplayState, error) {
			var w store.ReplayState
			var h, f, rd int64
			err := scan(&w.MeterID, &h, &w.Window, &f, &rd)
			w.Highest, w.LastFrameAt, w.LastReadingAt = uint32(h), fromMicros(f), fromMicros(rd)
			return w, err
		}, `SELECT meter_id, highest, replay, last_frame_at, last_reading_at FROM telemetry_meters WHERE meter_id IN (`+in+`)`, args...)
		out = append(out, ws...)
		return err
	})
	return out, err
}

func (r telemetry) StoreReadings(ctx context.Context, rs []store.Reading) error {
	ptrs := make([]*store.Reading, len(rs))
	for i := range rs {
		ptrs[i] = &rs[i]
	}
	if err := (sqlOps{r.tx}).insertReadings(ctx, ptrs); err != nil {
		return err
	}
	// A telegram is a sign of life too.
	for _, rd := range rs {
		if _, err := r.exec(ctx, `UPDATE telemetry_meters SET last_frame_at = ?, last_reading_at = ? WHERE meter_id = ? AND last_reading_at < ?`,
			micros(rd.ReceivedAt), micros(rd.ReceivedAt), rd.MeterID, micros(rd.ReceivedAt)); err != nil {
			return fmt.Errorf("store readings: %w", err)
		}
		if _, err := r.exec(ctx, `INSERT INTO telemetry_meters (meter_id, highest, replay, last_frame_at, last_reading_at) VALUES (?, 0, ?, ?, ?) ON CONFLICT (meter_id) DO NOTHING`,
			rd.MeterID, make([]byte, 20), micros(rd.ReceivedAt), micros(rd.ReceivedAt)); err != nil {
			return fmt.Errorf("store readings: %w", err)
		}
	}
	return nil
}

func scanReading(scan func(...any) error) (store.Reading, error) {
	var rd store.Reading
	var c, t, rcv, unit, status, iv int64
	var intervals []byte
	err := scan(&rd.MeterID, &c, &t, &rcv, &rd.Forward, &rd.Reverse, &rd.Credit, &rd.Loaded, &unit, &status, &iv, &intervals)
	rd.Counter, rd.Time, rd.ReceivedAt = uint32(c), fromMicros(t), fromMicros(rcv)
	rd.Unit, rd.Status, rd.Interval, rd.Intervals = uint8(unit), uint16(status), time.Duration(iv)*time.Second, unpackIntervals(intervals)
	return rd, err
}

func (r telemetry) Readings(ctx context.Context, meterID int64, from, to time.Time, limit int) ([]store.Reading, error) {
	return collect(r.tx, ctx, fmt.Sprintf("readings of meter %d", meterID), scanReading,
		`SELECT `+readingCols+` FROM readings WHERE meter_id = ? AND time >= ? AND time < ? ORDER BY time DESC, counter DESC LIMIT ?`,
		meterID, micros(from), micros(to), limit)
}

func (r telemetry) Events(ctx context.Context, meterID int64, since time.Time, limit int) ([]store.TelemetryEvent, error) {
	return collect(r.tx, ctx, fmt.Sprintf("events of meter %d", meterID), func(scan func(...any) error) (store.TelemetryEvent, error) {
		var e store.TelemetryEvent
		var c, idx, k, rs, t int64
		err := scan(&e.MeterID, &c, &idx, &k, &rs, &t, &e.Value)
		e.Counter, e.Index, e.Kind, e.Reason, e.Time = uint32(c), int(idx), uint8(k), uint8(rs), fromMicros(t)
		return e, err
	}, `SELECT meter_id, counter, idx, kind, reason, time, value FROM telemetry_events WHERE meter_id = ? AND time >= ? ORDER BY time DESC, counter DESC, idx DESC LIMIT ?`,
		meterID, micros(since), limit)
}

func (r telemetry) Acks(ctx context.Context, meterID int64, limit int) ([]store.TelemetryAck, error) {
	return collect(r.tx, ctx, fmt.Sprintf("acks of meter %d", meterID), func(scan func(...any) error) (store.TelemetryAck, error) {
		var a store.TelemetryAck
		var c, t, s, res, rs int64
		err := scan(&a.MeterID, &c, &t, &s, &res, &rs, &a.Ref, &a.Amount, &a.Credit, &a.Loaded)
		a.Counter, a.Time, a.Subject, a.Result, a.Reason = uint32(c), fromMicros(t), uint8(s), uint8(res), uint8(rs)
		return a, err
	}, `SELECT meter_id, counter, time, subject, result, reason, ref, amount, credit, loaded FROM telemetry_acks WHERE meter_id = ? ORDER BY counter DESC LIMIT ?`,
		meterID, limit)
}

func (r telemetry) CountFrames(ctx context.Context, meterID int64, kind uint8) (int64, error) {
	var n int64
	err := r.row(ctx, `SELECT COUNT(*) FROM telemetry_frames WHERE meter_id = ? AND (CAST(? AS BIGINT) = 0 OR kind = ?)`, []any{meterID, int64(kind), int64(kind)}, &n)
	if err != nil {
		return 0, fmt.Errorf("count frames of meter %d: %w", meterID, err)
	}
	return n, nil
}

func (r telemetry) EnsureReadingPartitions(ctx context.Context, from time.Time, months int) error {
	if r.db.d.Name != "postgres" {
		return nil
	}
	m := time.Date(from.UTC().Year(), from.UTC().Month(), 1, 0, 0, 0, 0, time.UTC)
	for range months {
		next := m.AddDate(0, 1, 0)
		// Identifiers cannot be bound; the name is built from two integers.
		q := fmt.Sprintf(`CREATE TABLE IF NOT EXISTS readings_%04d%02d PARTITION OF readings FOR VALUES FROM (%d) TO (%d)`,
			m.Year(), int(m.Month()), m.UnixMicro(), next.UnixMicro())
		if _, err := r.exec(ctx, q); err != nil {
			return fmt.Errorf("readings partition %04d-%02d: %w", m.Year(), int(m.Month()), err)
		}
		m = next
	}
	return nil
}

const wmbusCols = `meter_id, address, wrapped_key, key_name, key_version, default_key, created_at`

func (r telemetry) PutWMBusMeter(ctx context.Context, m store.WMBusMeter) error {
	if m.CreatedAt.IsZero() {
		m.CreatedAt = now()
	}
	_, err := r.exec(ctx, `INSERT INTO wmbus_meters (`+wmbusCols+`) VALUES (?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (meter_id) DO UPDATE SET address = excluded.address, wrapped_key = excluded.wrapped_key,
		key_name = excluded.key_name, key_version = excluded.key_version, default_key = excluded.default_key`,
		m.MeterID, m.Address, m.WrappedKey, m.KeyName, int64(m.KeyVersion), m.DefaultKey, micros(m.CreatedAt))
	if err != nil {
		return fmt.Errorf("register wM-Bus meter %s: %w", m.Address, err)
	}
	return nil
}

func (r telemetry) WMBusMeter(ctx context.Context, address string) (store.WMBusMeter, error) {
	return one(r.tx, ctx, fmt.Sprintf("wM-Bus meter %s", address), func(scan func(...any) error) (store.WMBusMeter, error) {
		var m store.WMBusMeter
		var v, c int64
		err := scan(&m.MeterID, &m.Address, &m.WrappedKey, &m.KeyName, &v, &m.DefaultKey, &c)
		m.KeyVersion, m.CreatedAt = int(v), fromMicros(c)
		return m, err
	}, `SELECT `+wmbusCols+` FROM wmbus_meters WHERE address = ?`, address)
}

func (r telemetry) Activity(ctx context.Context, kinds []string) ([]store.MeterActivity, error) {
	args := make([]any, len(kinds))
	for i, k := range kinds {
		args[i] = k
	}
	in := strings.TrimSuffix(strings.Repeat("?, ", len(kinds)), ", ")
	return collect(r.tx, ctx, "meter activity", func(scan func(...any) error) (store.MeterActivity, error) {
		var a store.MeterActivity
		var last int64
		err := scan(&a.MeterID, &a.Number, &a.Area, &last)
		a.LastFrameAt = fromMicros(last)
		return a, err
	}, `SELECT m.id, m.number, m.area, COALESCE(t.last_frame_at, 0) FROM meters m LEFT JOIN telemetry_meters t ON t.meter_id = m.id
		WHERE m.status = 'active' AND m.kind IN (`+in+`) ORDER BY m.id`, args...)
}

func (r telemetry) Consumption(ctx context.Context, from, to time.Time) ([]store.Consumption, error) {
	return collect(r.tx, ctx, "consumption", func(scan func(...any) error) (store.Consumption, error) {
		var c store.Consumption
		var n int64
		err := scan(&c.MeterID, &c.Area, &c.Litres, &n)
		c.Readings = int(n)
		return c, err
	}, `SELECT r.meter_id, m.area, MAX(r.forward) - MIN(r.forward), COUNT(*) FROM readings r JOIN meters m ON m.id = r.meter_id
		WHERE r.time >= ? AND r.time < ? GROUP BY r.meter_id, m.area ORDER BY r.meter_id`, micros(from), micros(to))
}

func (r telemetry) PendingVouchers(ctx context.Context, at time.Time, limit int) ([]store.PendingVoucher, error) {
	t := micros(at)
	return collect(r.tx, ctx, "pending vouchers", func(scan func(...any) error) (store.PendingVoucher, error) {
		var p store.PendingVoucher
		var created, attempts, last, next, rejected int64
		err := scan(&p.TokenID, &p.MeterID, &p.Number, &p.PurchaseID, &p.VoucherSeq, &p.Voucher, &p.Litres, &created, &attempts, &last, &next, &p.LastError, &rejected)
		p.CreatedAt, p.Attempts, p.LastAt, p.NextAt, p.Rejected = fromMicros(created), int(attempts), fromMicros(last), fromMicros(next), rejected != 0
		return p, err
	}, `SELECT t.id, t.meter_id, m.number, COALESCE(t.purchase_id, 0), t.voucher_seq, t.voucher, t.litres, t.created_at,
			COALESCE(d.attempts, 0), COALESCE(d.last_at, 0), COALESCE(d.next_at, 0), COALESCE(d.last_error, ''), COALESCE(d.rejected, 0)
		FROM tokens t JOIN meters m ON m.id = t.meter_id
		LEFT JOIN downlinks d ON d.token_id = t.id
		LEFT JOIN purchases p ON p.id = t.purchase_id
		WHERE m.kind = 'ami' AND t.voucher IS NOT NULL AND t.voucher_seq IS NOT NULL AND t.delivered_at IS NULL
			AND (p.id IS NULL OR p.state = 'completed')
			AND (CAST(? AS BIGINT) = 0 OR (COALESCE(d.next_at, 0) <= ? AND COALESCE(d.rejected, 0) = 0))
		ORDER BY COALESCE(d.next_at, 0), t.id LIMIT ?`, t, t, limit)
}

func (r telemetry) VoucherAttempt(ctx context.Context, tokenID int64, at, next time.Time, errText string) error {
	_, err := r.exec(ctx, `INSERT INTO downlinks (token_id, attempts, last_at, next_at, last_error) VALUES (?, 1, ?, ?, ?)
		ON CONFLICT (token_id) DO UPDATE SET attempts = downlinks.attempts + 1, last_at = excluded.last_at,
		next_at = excluded.next_at, last_error = excluded.last_error`, tokenID, micros(at), micros(next), errText)
	if err != nil {
		return fmt.Errorf("voucher delivery attempt of token %d: %w", tokenID, err)
	}
	return nil
}

func (r telemetry) VoucherRejected(ctx context.Context, meterID, voucherSeq int64, reason string, at time.Time) error {
	var id int64
	if err := r.row(ctx, `SELECT id FROM tokens WHERE meter_id = ? AND voucher_seq = ?`, []any{meterID, voucherSeq}, &id); err != nil {
		return fmt.Errorf("voucher %d of meter %d: %w", voucherSeq, meterID, err)
	}
	_, err := r.exec(ctx, `INSERT INTO downlinks (token_id, attempts, last_at, next_at, last_error, rejected) VALUES (?, 0, ?, 0, ?, ?)
		ON CONFLICT (token_id) DO UPDATE SET last_error = excluded.last_error, rejected = excluded.rejected`,
		id, micros(at), reason, micros(at))
	if err != nil {
		return fmt.Errorf("voucher %d of meter %d: %w", voucherSeq, meterID, err)
	}
	return nil
}

// --- alerts

type alerts struct{ *tx }

const alertCols = `id, subject, meter_id, rule, severity, state, summary, details, first_at, last_at, count, acked_by, acked_at, resolved_by, resolved_at, note`

func scanAlert(scan func(...any) error) (store.Alert, error) {
	var a store.Alert
	var meter sql.NullInt64
	var details string
	var first, last, acked, resolved int64
	err := scan(&a.ID, &a.Subject, &meter, &a.Rule, &a.Severity, &a.State, &a.Summary, &details, &first, &last, &a.Count,
		&a.AckedBy, &acked, &a.ResolvedBy, &resolved, &a.Note)
	a.MeterID, a.Details = meter.Int64, []byte(details)
	a.FirstAt, a.LastAt, a.AckedAt, a.ResolvedAt = fromMicros(first), fromMicros(last), fromMicros(acked), fromMicros(resolved)
	return a, err
}

func (r alerts) Raise(ctx context.Context, a store.Alert) (store.Alert, bool, error) {
	if len(a.Details) == 0 {
		a.Details = []byte("{}")
	}
	if a.LastAt.IsZero() {
		a.LastAt = now()
	}
	var id, count int64
	err := r.row(ctx, `INSERT INTO alerts (subject, meter_id, rule, severity, state, summary, details, first_at, last_at, count)
		VALUES (?, ?, ?, ?, 'open', ?, ?, ?, ?, 1)
		ON CONFLICT (subject, rule) WHERE state <> 'resolved' DO UPDATE SET
			last_at = excluded.last_at, count = alerts.count + 1, summary = excluded.summary, details = excluded.details,
			severity = CASE WHEN alerts.severity = 'critical' OR excluded.severity = 'critical' THEN 'critical'
				WHEN alerts.severity = 'warning' OR excluded.severity = 'warning' THEN 'warning' ELSE 'info' END
		RETURNING id, count`,
		[]any{a.Subject, nullID(a.MeterID), a.Rule, a.Severity, a.Summary, string(a.Details), micros(a.LastAt), micros(a.LastAt)}, &id, &count)
	if err != nil {
		return store.Alert{}, false, fmt.Errorf("raise alert %s for %s: %w", a.Rule, a.Subject, err)
	}
	got, err := r.ByID(ctx, id)
	return got, count == 1, err
}

func (r alerts) ByID(ctx context.Context, id int64) (store.Alert, error) {
	return one(r.tx, ctx, fmt.Sprintf("alert %d", id), scanAlert, `SELECT `+alertCols+` FROM alerts WHERE id = ?`, id)
}

func (r alerts) List(ctx context.Context, f store.AlertFilter) ([]store.Alert, error) {
	q := `SELECT ` + alertCols + ` FROM alerts WHERE last_at >= ?`
	args := []any{micros(f.Since)}
	if f.State != "" {
		q += ` AND state = ?`
		args = append(args, f.State)
	}
	if f.Rule != "" {
		q += ` AND rule = ?`
		args = append(args, f.Rule)
	}
	if f.MeterID != 0 {
		q += ` AND meter_id = ?`
		args = append(args, f.MeterID)
	}
	limit := f.Limit
	if limit <= 0 || limit > 1000 {
		limit = 1000
	}
	q += ` ORDER BY last_at DESC, id DESC LIMIT ?`
	args = append(args, limit)
	return collect(r.tx, ctx, "list alerts", scanAlert, q, args...)
}

func (r alerts) Acknowledge(ctx context.Context, id int64, by string, at time.Time) (store.Alert, error) {
	res, err := r.exec(ctx, `UPDATE alerts SET state = 'acknowledged', acked_by = ?, acked_at = ? WHERE id = ? AND state = 'open'`, by, micros(at), id)
	if err != nil {
		return store.Alert{}, fmt.Errorf("acknowledge alert %d: %w", id, err)
	}
	return r.after(ctx, res, id, "acknowledge")
}

func (r alerts) Resolve(ctx context.Context, id int64, by, note string, at time.Time) (store.Alert, error) {
	res, err := r.exec(ctx, `UPDATE alerts SET state = 'resolved', resolved_by = ?, resolved_at = ?, note = ? WHERE id = ? AND state <> 'resolved'`,
		by, micros(at), note, id)
	if err != nil {
		return store.Alert{}, fmt.Errorf("resolve alert %d: %w", id, err)
	}
	return r.after(ctx, res, id, "resolve")
}

// after returns the alert a state change touched, or tells a missing alert
// (ErrNotFound) from one in the wrong state (ErrConflict).
func (r alerts) after(ctx context.Context, res sql.Result, id int64, what string) (store.Alert, error) {
	a, err := r.ByID(ctx, id)
	if err != nil {
		return store.Alert{}, err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return store.Alert{}, fmt.Errorf("%s alert %d: it is %s: %w", what, id, a.State, store.ErrConflict)
	}
	return a, nil
}
