package wmbus

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"
)

type vector struct {
	Meter    string  `json:"meter"`
	ID       string  `json:"id"`
	Security string  `json:"security"`
	Key      string  `json:"key"`
	Telegram string  `json:"telegram"`
	TotalM3  float64 `json:"total_m3"`
}

func loadVectors(t testing.TB) []vector {
	t.Helper()
	b, err := os.ReadFile("testdata/telegrams.json")
	if err != nil {
		t.Fatal(err)
	}
	var f struct{ Telegrams []vector }
	if err := json.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	if len(f.Telegrams) == 0 {
		t.Fatal("no vectors")
	}
	return f.Telegrams
}

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestVectors decodes every published telegram: meter id, manufacturer and
// total volume must be those the meter displayed.
func TestVectors(t *testing.T) {
	wantMfct := map[string]string{
		"76348799": "KAM", "88888888": "APA", "19228217": "KDN",
		"20096221": "DWZ", "61070071": "AAA", "64745666": "DME",
	}
	for _, v := range loadVectors(t) {
		t.Run(v.Meter, func(t *testing.T) {
			tg, err := DecodeHex(v.Telegram, mustHex(t, v.Key))
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if tg.ID() != v.ID {
				t.Errorf("id = %s, want %s", tg.ID(), v.ID)
			}
			if got := tg.Meter.Manufacturer; got != wantMfct[v.ID] {
				t.Errorf("manufacturer = %s, want %s", got, wantMfct[v.ID])
			}
			m3, ok := tg.TotalVolume()
			// Exact: the value must print as the meter displays it.
			if !ok || m3 != v.TotalM3 {
				t.Errorf("total = %v (%v), want %v", m3, ok, v.TotalM3)
			}
		})
	}
}

func TestSplitGatewayPayload(t *testing.T) {
	vs := loadVectors(t)
	p := []byte(vs[0].Telegram + "\r\n\n  " + strings.ToLower(vs[1].Telegram) + "\n")
	got, err := SplitGatewayPayload(p)
	if err != nil || len(got) != 2 {
		t.Fatalf("got %d telegrams, %v", len(got), err)
	}
	if _, err := Decode(got[1], mustHex(t, vs[1].Key)); err != nil {
		t.Error(err)
	}
	if _, err := SplitGatewayPayload([]byte(vs[0].Telegram + "\nzz\n")); err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Errorf("bad line: %v", err)
	}
	if _, err := SplitGatewayPayload([]byte(strings.Repeat("00", MaxTelegram+1))); !errors.Is(err, ErrLength) {
		t.Errorf("long line: %v", err)
	}
}
