package ingest

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"math"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"sluice/kms/filekms/filekmstest"
	"sluice/store"
	"sluice/store/storetest"
	"sluice/telemetry/frame"
	"sluice/telemetry/topic"
	"sluice/wmbus"
)

type vector struct {
	Meter    string  `json:"meter"`
	ID       string  `json:"id"`
	Key      string  `json:"key"`
	Telegram string  `json:"telegram"`
	TotalM3  float64 `json:"total_m3"`
}

func vectors(t *testing.T) []vector {
	b, err := os.ReadFile("testdata/telegrams.json")
	if err != nil {
		t.Fatal(err)
	}
	var f struct{ Telegrams []vector }
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	return f.Telegrams
}

// Telegrams of registered meters, forwarded by a gateway as hex lines, are
// decoded with the meter's KMS-wrapped key and stored as readings; one on
// a published default key raises the alert hook; unregistered meters and
// a wrong key are refused and counted.
func TestWMBusIngest(t *testing.T) {
	db := storetest.OpenSQLite(t, false)
	ctx := context.Background()
	km := filekmstest.WithMeterRoot(t)
	vs := vectors(t)
	numbers := make([]uint64, len(vs))
	for i := range vs {
		numbers[i] = 8000001 + uint64(i)
	}
	ids := addMeters(t, db, numbers...)
	w := NewWMBus(db, km, func() time.Time { return time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC) })
	var mu sync.Mutex
	defaults := map[int64]string{}
	w.OnDefaultKey = func(_ context.Context, meterID int64, address, keyName string) {
		mu.Lock()
		defaults[meterID] = address + " " + keyName
		mu.Unlock()
	}
	var lines []string
	for i, v := range vs {
		raw, _ := hex.DecodeString(v.Telegram)
		addr, err := LinkAddress(raw)
		if err != nil {
			t.Fatalf("%s: %v", v.Meter, err)
		}
		key, _ := hex.DecodeString(v.Key)
		if i == len(vs)-1 {
			// The last vector's meter is left unregistered.
			lines = append(lines, v.Telegram)
			continue
		}
		dk, err := w.Register(ctx, ids[i], addr, key)
		if err != nil {
			t.Fatalf("register %s: %v", v.Meter, err)
		}
		if (dk != "") != (wmbus.DefaultKeyName(key) != "") {
			t.Fatalf("%s: default key %q", v.Meter, dk)
		}
		lines = append(lines, strings.ToLower(v.Telegram))
	}
	in, err := New(Config{Store: db, Directory: NewKMSDirectory(db, km), WMBus: w})
	if err != nil {
		t.Fatal(err)
	}
	in.Start(ctx)
	defer in.Close()
	gw, _ := topic.ForGateway("gw-north-1")
	acked := 0
	in.Handle(gw, []byte(strings.Join(lines, "\n")+"\n"), func() { acked++ })
	if acked != 1 {
		t.Fatalf("gateway message acknowledged %d times", acked)
	}
	if in.Count(WMBusStored) != uint64(len(vs)-1) || in.Count(WMBusRejected) != 1 {
		t.Fatalf("stored %d, rejected %d", in.Count(WMBusStored), in.Count(WMBusRejected))
	}
	err = db.Read(ctx, func(tx store.Tx) error {
		for i, v := range vs[:len(vs)-1] {
			rs, err := tx.Telemetry().Readings(ctx, ids[i], time.Time{}, time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC), 10)
			if err != nil {
				return err
			}
			if want := int64(math.Round(v.TotalM3 * 1000)); len(rs) != 1 || rs[0].Forward != want {
				t.Errorf("%s: readings %+v, want %d L", v.Meter, rs, want)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range vs[:len(vs)-1] {
		key, _ := hex.DecodeString(v.Key)
		_, flagged := defaults[ids[i]]
		if flagged != (wmbus.DefaultKeyName(key) != "") {
			t.Errorf("%s: default-key alert %v", v.Meter, flagged)
		}
	}
	if len(defaults) == 0 {
		t.Error("no vector used a default key; the set should contain one")
	}

	// A wrong key is refused, not stored as garbage.
	raw, _ := hex.DecodeString(vs[0].Telegram)
	addr, _ := LinkAddress(raw)
	if _, err := w.Register(ctx, ids[0], addr, make([]byte, 16)); err != nil {
		t.Fatal(err)
	}
	in.Handle(gw, []byte(vs[0].Telegram), func() {})
	if in.Count(WMBusRejected) != 2 {
		t.Fatalf("wrong key: rejected %d", in.Count(WMBusRejected))
	}
	// A gateway payload that is not hex is refused whole.
	in.Handle(gw, []byte("zz\n"), func() {})
	if in.Count(WMBusRejected) != 3 {
		t.Fatalf("bad payload: rejected %d", in.Count(WMBusRejected))
	}
	if _, err := w.Register(ctx, ids[0], "kam1234", make([]byte, 16)); err == nil {
		t.Fatal("a malformed address was registered")
	}
}

func TestLinkAddress(t *testing.T) {
	raw, _ := hex.DecodeString("2A442D2C998734761B168D2091D37CAC21E1D68CDAFFCD3DC452BD802913FF7B1706CA9E355D6C2701CC24")
	a, err := LinkAddress(raw)
	if err != nil || a != "KAM76348799" {
		t.Fatalf("%q %v", a, err)
	}
	if _, err := LinkAddress([]byte{3, 0x44, 0}); err == nil {
		t.Fatal("short telegram accepted")
	}
}

func FuzzLinkAddress(f *testing.F) {
	for _, s := range []string{"2A442D2C998734761B168D2091D37CAC21E1D68CDAFFCD3DC452BD802913FF7B1706CA9E355D6C2701CC24", "00", "0a4400000000000000000000"} {
		b, _ := hex.DecodeString(s)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		a, err := LinkAddress(b)
		if err != nil {
			return
		}
		if len(a) != 11 {
			t.Fatalf("address %q", a)
		}
		if _, err := strconv.ParseUint(a[3:], 16, 32); err != nil {
			t.Fatalf("address %q: %v", a, err)
		}
	})
}

// FuzzHandle feeds arbitrary topics and payloads to the broker callback:
// it must never panic, and every message it judges at once is
// acknowledged exactly once.
func FuzzHandle(f *testing.F) {
	db := storetest.OpenSQLite(f, false)
	addMeters(f, db, 4710001)
	km := filekmstest.WithMeterRoot(f)
	w := &blockingWriter{release: make(chan struct{})}
	close(w.release)
	in, err := New(Config{Store: db, Directory: NewKMSDirectory(db, km), Writer: w, WMBus: NewWMBus(db, km, nil)})
	if err != nil {
		f.Fatal(err)
	}
	in.Start(context.Background())
	f.Cleanup(func() { in.Close() })
	k := telemetryKey(f, km, 4710001)
	fk, _ := frame.NewKey(k[:])
	good, _ := frame.Seal(nil, fk, benchReading(4710001, 1, time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)))
	f.Add(topic.ForMeter(4710001, topic.Reading), good)
	f.Add(topic.ForMeter(4710001, topic.Event), good)
	f.Add("sluice/v1/wmbus/gw1", []byte("2A442D2C998734761B16\n"))
	f.Add("sluice/v1/m/4710001/down/voucher", []byte{1})
	f.Fuzz(func(t *testing.T, name string, payload []byte) {
		var n atomic.Int32
		in.Handle(name, payload, func() { n.Add(1) })
		if n.Load() > 1 {
			t.Fatalf("acknowledged %d times", n.Load())
		}
	})
}
