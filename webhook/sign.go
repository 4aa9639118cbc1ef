package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// SignatureHeader carries a delivery's timestamp and signature:
//
//	Sluice-Signature: t=1764064800,v1=5f0c...e1
//
// v1 is hex(HMAC-SHA256(secret, "<t>." + body)): the decimal Unix time in
// seconds, a full stop, and the request body byte for byte. Signing the
// timestamp with the body lets a receiver refuse a replayed delivery: it
// checks the signature, then that t is within its tolerance of its clock,
// then that it has not processed the Sluice-Event-Id before.
const SignatureHeader = "Sluice-Signature"

// DefaultTolerance is how far a delivery's timestamp may be from the
// receiver's clock.
const DefaultTolerance = 5 * time.Minute

// Verification errors.
var (
	ErrMalformedSignature = errors.New("webhook: malformed signature header")
	ErrBadSignature       = errors.New("webhook: signature does not match")
	ErrStale              = errors.New("webhook: timestamp outside the tolerance")
)

// Sign returns the signature header value for body sent at t.
func Sign(secret []byte, t time.Time, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	return "t=" + ts + ",v1=" + hex.EncodeToString(mac(secret, ts, body))
}

func mac(secret []byte, ts string, body []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(ts))
	m.Write([]byte{'.'})
	m.Write(body)
	return m.Sum(nil)
}

// ParseSignature reads a header value: its timestamp and every v1
// signature (a sender rotating its secret may send two). Unknown schemes
// are ignored so the format can grow.
func ParseSignature(h string) (ts int64, sigs [][]byte, err error) {
	tsSeen := false
	for _, part := range strings.Split(h, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return 0, nil, fmt.Errorf("%w: %q is not key=value", ErrMalformedSignature, part)
		}
		switch k {
		case "t":
			if tsSeen {
				return 0, nil, fmt.Errorf("%w: two timestamps", ErrMalformedSignature)
			}
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n <= 0 || len(v) > 12 {
				return 0, nil, fmt.Errorf("%w: bad timestamp %q", ErrMalformedSignature, v)
			}
			ts, tsSeen = n, true
		case "v1":
			b, err := hex.DecodeString(v)
			if err != nil || len(b) != sha256.Size {
				return 0, nil, fmt.Errorf("%w: v1 must be 64 hex digits", ErrMalformedSignature)
			}
			sigs = append(sigs, b)
		}
	}
	if !tsSeen || len(sigs) == 0 {
		return 0, nil, fmt.Errorf("%w: needs t= and v1=", ErrMalformedSignature)
	}
	return ts, sigs, nil
}

// Verify checks a delivery as a receiver should: the header parses, one v1
// signature matches (compared in constant time), and the timestamp is
// within tolerance of now. It does not remember event IDs; a receiver that
// must not act twice also keeps the Sluice-Event-Id values it has seen for
// at least the tolerance.
func Verify(secret []byte, header string, body []byte, now time.Time, tolerance time.Duration) error {
	ts, sigs, err := ParseSignature(header)
	if err != nil {
		return err
	}
	want := mac(secret, strconv.FormatInt(ts, 10), body)
	ok := false
	for _, s := range sigs {
		if hmac.Equal(s, want) {
			ok = true
		}
	}
	if !ok {
		return ErrBadSignature
	}
	if d := now.Sub(time.Unix(ts, 0)); d > tolerance || d < -tolerance {
		return fmt.Errorf("%w: %s off", ErrStale, d.Round(time.Second))
	}
	return nil
}
