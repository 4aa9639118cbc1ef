package webhook

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestSignAndVerify(t *testing.T) {
	secret := []byte("whsec_0123456789abcdef0123456789abcdef0123456789abcdef0123456789ab")
	at := time.Unix(1764064800, 0)
	body := []byte(`{"id":"audit-7","type":"purchase.completed"}`)
	h := Sign(secret, at, body)
	if !strings.HasPrefix(h, "t=1764064800,v1=") || len(h) != len("t=1764064800,v1=")+64 {
		t.Fatalf("header %q", h)
	}
	if err := Verify(secret, h, body, at.Add(time.Minute), DefaultTolerance); err != nil {
		t.Fatal(err)
	}
	// A rotated secret: the receiver accepts either of two signatures.
	if err := Verify(secret, "t=1764064800,v1="+strings.Repeat("00", 32)+","+h[len("t=1764064800,"):], body, at, DefaultTolerance); err != nil {
		t.Fatalf("second signature: %v", err)
	}
	for _, c := range []struct {
		name   string
		secret []byte
		header string
		body   []byte
		now    time.Time
		want   error
	}{
		{"fail_body_changed", secret, h, []byte(`{"id":"audit-8","type":"purchase.completed"}`), at, ErrBadSignature},
		{"fail_other_secret", []byte("whsec_other"), h, body, at, ErrBadSignature},
		{"fail_timestamp_changed", secret, strings.Replace(h, "t=1764064800", "t=1764064900", 1), body, at, ErrBadSignature},
		{"fail_replayed_later", secret, h, body, at.Add(6 * time.Minute), ErrStale},
		{"fail_from_the_future", secret, h, body, at.Add(-6 * time.Minute), ErrStale},
		{"fail_no_signature", secret, "t=1764064800", body, at, ErrMalformedSignature},
		{"fail_no_timestamp", secret, h[len("t=1764064800,"):], body, at, ErrMalformedSignature},
		{"fail_short_signature", secret, "t=1764064800,v1=abcd", body, at, ErrMalformedSignature},
		{"fail_garbage", secret, "nonsense", body, at, ErrMalformedSignature},
	} {
		if err := Verify(c.secret, c.header, c.body, c.now, DefaultTolerance); !errors.Is(err, c.want) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
	}
}

func FuzzParseSignature(f *testing.F) {
	f.Add("t=1764064800,v1=" + strings.Repeat("ab", 32))
	f.Add("t=1,v1=" + strings.Repeat("00", 32) + ",v0=zz")
	f.Add("t=,v1=")
	f.Add(",,,")
	f.Fuzz(func(t *testing.T, h string) {
		ts, sigs, err := ParseSignature(h)
		if err != nil {
			return
		}
		if ts <= 0 || len(sigs) == 0 {
			t.Fatalf("accepted %q with ts %d and %d signatures", h, ts, len(sigs))
		}
		for _, s := range sigs {
			if len(s) != 32 {
				t.Fatalf("accepted a %d-byte signature", len(s))
			}
		}
	})
}

// TestWorkedExample is docs/webhooks.md's example; the signature was
// computed independently with Python's hmac module.
func TestWorkedExample(t *testing.T) {
	secret := []byte("whsec_00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff")
	body := []byte(`{"id":"audit-42","type":"purchase.completed","time":"2026-11-25T09:00:00Z","object":"purchase/17","actor":"operator:cashier1","action":"vend.purchase","data":{"meter":"600727000000000009","paid_cents":19642}}`)
	at := time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)
	const want = "t=1795597200,v1=296f9e1426c1c8b41740ec2327cef6185d10e8abeb7a4c9ea48929cca500e3df"
	if got := Sign(secret, at, body); got != want {
		t.Fatalf("Sign = %s\nwant   %s", got, want)
	}
	var ev Event
	if err := json.Unmarshal(body, &ev); err != nil {
		t.Fatal(err)
	}
	again, _ := json.Marshal(ev)
	if string(again) != string(body) {
		t.Fatalf("the example body is not what Event marshals to:\n%s", again)
	}
}
