package wmbus

import (
	"errors"
	"testing"
)

// FuzzDecode: no input may panic, and every failure must be one of the
// sentinel errors callers branch on.
func FuzzDecode(f *testing.F) {
	for _, v := range loadVectors(f) {
		f.Add(mustHex(f, v.Telegram), mustHex(f, v.Key))
		f.Add(withFormatA(mustHex(f, v.Telegram)), mustHex(f, v.Key))
	}
	for _, v := range loadMode7(f) {
		f.Add(mustHex(f, v.Telegram), mustHex(f, v.Key))
	}
	f.Add(mustHex(f, "23442D2C998734761B168D2087D19EAD21C325443F938ED9AA782A78CF326A2A42C3141A"), mustHex(f, "28F64A24988064A079AA2C807D6102AE"))
	f.Add(mustHex(f, "15442D2C776655441B1679EDA86AB6710008190000081900007F13"), []byte(nil))
	f.Add([]byte{0x0A, 0x44, 0x2D, 0x2C, 1, 2, 3, 4, 1, 7, 0x78}, []byte(nil))
	sentinels := []error{ErrShort, ErrLength, ErrCRC, ErrNoKey, ErrBadKey, ErrMAC, ErrUnsupported, ErrRecord, ErrNotEncrypted}
	f.Fuzz(func(t *testing.T, frame, key []byte) {
		in := append([]byte(nil), frame...)
		tg, err := Decode(frame, key)
		if string(in) != string(frame) {
			t.Fatal("Decode modified its input")
		}
		if err != nil {
			for _, s := range sentinels {
				if errors.Is(err, s) {
					return
				}
			}
			t.Fatalf("error without a sentinel: %v", err)
		}
		if tg == nil || len(tg.Meter.ID) != 8 {
			t.Fatalf("success without a meter: %+v", tg)
		}
	})
}

// FuzzParseRecords: the record parser alone, on decrypted-looking data.
func FuzzParseRecords(f *testing.F) {
	f.Add(mustHex(f, "2F2F046D282A9E2704136A00000002FD17000004933C000000002F2F"))
	f.Add(mustHex(f, "0C1391721300"+"8C1013000000000D7803333231"))
	f.Fuzz(func(t *testing.T, p []byte) {
		rs, err := ParseRecords(p)
		if err != nil && !errors.Is(err, ErrRecord) {
			t.Fatalf("error without ErrRecord: %v", err)
		}
		for _, r := range rs.List {
			if len(r.DIFE) > maxExtensions || len(r.VIFE) > maxExtensions {
				t.Fatal("extension chain over the limit")
			}
		}
	})
}

// BenchmarkDecode measures telegrams decoded per second, per security layer.
func BenchmarkDecode(b *testing.B) {
	names := map[string]string{"76348799": "ELL-CTR", "19228217": "mode5", "61070071": "mode5-long"}
	for _, v := range loadVectors(b) {
		name, ok := names[v.ID]
		if !ok {
			continue
		}
		frame, key := mustHex(b, v.Telegram), mustHex(b, v.Key)
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Decode(frame, key); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "telegrams/s")
		})
	}
	v := loadMode7(b)[0]
	frame, key := mustHex(b, v.Telegram), mustHex(b, v.Key)
	b.Run("mode7", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := Decode(frame, key); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "telegrams/s")
	})
}
