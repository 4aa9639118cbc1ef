package topic

import (
	"errors"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	cases := map[string]Topic{
		"sluice/v1/m/4710001/up/reading":                {Kind: Reading, Meter: 4710001},
		"sluice/v1/m/4710001/up/event":                  {Kind: Event, Meter: 4710001},
		"sluice/v1/m/0/up/ack":                          {Kind: Ack, Meter: 0},
		"sluice/v1/m/18446744073709551615/down/voucher": {Kind: Voucher, Meter: 1<<64 - 1},
		"sluice/v1/wmbus/gw-01_A":                       {Kind: Gateway, Gateway: "gw-01_A"},
	}
	for s, want := range cases {
		got, err := Parse(s)
		if err != nil || got != want {
			t.Errorf("Parse(%q) = %+v, %v; want %+v", s, got, err, want)
		}
		if got.String() != s {
			t.Errorf("String() = %q, want %q", got.String(), s)
		}
	}
	if ForMeter(7, Voucher) != "sluice/v1/m/7/down/voucher" {
		t.Error(ForMeter(7, Voucher))
	}
}

func TestParseRejects(t *testing.T) {
	for _, s := range []string{
		"", "sluice/v2/m/1/up/reading", "sluice/v1/m/01/up/reading", "sluice/v1/m/+1/up/reading",
		"sluice/v1/m/-1/up/reading", "sluice/v1/m/18446744073709551616/up/reading",
		"sluice/v1/m/1/up/reading/x", "sluice/v1/m/1/up/+", "sluice/v1/m/1/up/#", "sluice/v1/m/1",
		"sluice/v1/m//up/reading", "sluice/v1/m/1/down/reading", "sluice/v1/wmbus/", "sluice/v1/wmbus/a/b",
		"sluice/v1/wmbus/+", "sluice/v1/x/1", "/sluice/v1/m/1/up/reading",
	} {
		if _, err := Parse(s); !errors.Is(err, ErrTopic) {
			t.Errorf("Parse(%q) accepted", s)
		}
	}
	if _, err := ForGateway("a/b"); !errors.Is(err, ErrTopic) {
		t.Error("gateway with a slash accepted")
	}
}

func TestACL(t *testing.T) {
	pub, sub := MeterACL(42)
	if len(pub) != 1 || pub[0] != "sluice/v1/m/42/up/+" || len(sub) != 1 || sub[0] != "sluice/v1/m/42/down/+" {
		t.Errorf("MeterACL = %v %v", pub, sub)
	}
	if !Reading.Uplink() || Voucher.Uplink() {
		t.Error("Uplink")
	}
}

func FuzzParse(f *testing.F) {
	f.Add("sluice/v1/m/4710001/up/reading")
	f.Add("sluice/v1/wmbus/gw1")
	f.Fuzz(func(t *testing.T, s string) {
		tp, err := Parse(s)
		if err != nil {
			return
		}
		if tp.String() != s {
			t.Fatalf("Parse(%q) = %+v, which prints as %q", s, tp, tp.String())
		}
	})
}
