package audit

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"iter"
	"slices"
	"testing"
	"time"
)

var t0 = time.Date(2026, time.July, 15, 8, 30, 0, 123456789, time.UTC)

// The worked example of docs/ledger.md. The expected bytes and hashes were
// computed independently (Python hashlib over the documented layout).
func TestWorkedExample(t *testing.T) {
	r1, err := Next(Head{}, Event{Time: t0, Actor: "op:alice", Action: "vend.purchase", Object: "purchase/P-0001",
		Details: []byte(`{"amount":20000,"meter":"01234567890"}`)})
	if err != nil {
		t.Fatal(err)
	}
	const enc1 = "736c756963652061756469742076310a0000000000000001000656a221173440" +
		"0000000000000000000000000000000000000000000000000000000000000000" +
		"000000086f703a616c6963650000000d76656e642e7075726368617365000000" +
		"0f70757263686173652f502d30303031000000267b22616d6f756e74223a3230" +
		"3030302c226d65746572223a223031323334353637383930227d"
	if got := hex.EncodeToString(r1.Encode()); got != enc1 {
		t.Errorf("encoding\n got %s\nwant %s", got, enc1)
	}
	if got := r1.Hash.String(); got != "730abc7d2c2b0ecb1b74d61e6b6a388fdbfa0e710823df7cbbf4bfc53931e519" {
		t.Errorf("hash 1 = %s", got)
	}
	if !r1.Time.Equal(t0.Truncate(time.Microsecond)) {
		t.Errorf("time kept to %v, want microseconds", r1.Time)
	}
	r2, err := Next(r1.Head(), Event{Time: t0.Add(1500 * time.Millisecond), Actor: "system", Action: "kms.sign", Object: "key/credit-2026"})
	if err != nil {
		t.Fatal(err)
	}
	if got := r2.Hash.String(); got != "5fe05081fb4bbf06ee2fa796e126eaf4dc4c154c430ad7733f25667a5354e3d0" {
		t.Errorf("hash 2 = %s", got)
	}
	if r2.Seq != 2 || r2.Prev != r1.Hash {
		t.Errorf("record 2 = seq %d prev %s", r2.Seq, r2.Prev)
	}
}

func TestNextRejects(t *testing.T) {
	ok := Event{Time: t0, Actor: "a", Action: "b", Object: "c"}
	tests := map[string]func(e *Event){
		"actor":         func(e *Event) { e.Actor = "" },
		"action":        func(e *Event) { e.Action = string([]byte{0xff}) },
		"object":        func(e *Event) { e.Object = string(make([]byte, MaxName+1)) },
		"details":       func(e *Event) { e.Details = []byte(`{"a":`) },
		"time":          func(e *Event) { e.Time = time.Time{} },
		"time (range)":  func(e *Event) { e.Time = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) },
		"details (big)": func(e *Event) { e.Details = bytes.Repeat([]byte(" "), MaxDetails+1) },
	}
	for name, mod := range tests {
		e := ok
		mod(&e)
		if _, err := Next(Head{}, e); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: err = %v, want ErrInvalid", name, err)
		}
	}
	if _, err := Next(Head{}, ok); err != nil {
		t.Errorf("valid event rejected: %v", err)
	}
}

// chain builds n records, anchoring those for which anchor(seq) is true.
func chain(t testing.TB, n int, s Signer, anchor func(uint64) bool) []*Record {
	var out []*Record
	var head Head
	for i := range n {
		r, err := Next(head, Event{
			Time: t0.Add(time.Duration(i) * time.Second), Actor: "op:bob", Action: "vend.purchase",
			Object: fmt.Sprintf("purchase/P-%04d", i), Details: fmt.Appendf(nil, `{"amount":%d}`, 1000+i),
		})
		if err != nil {
			t.Fatal(err)
		}
		if s != nil && anchor(r.Seq) {
			if err := r.Seal(s); err != nil {
				t.Fatal(err)
			}
		}
		head = r.Head()
		out = append(out, &r)
	}
	return out
}

func seq(rs []*Record) iter.Seq2[*Record, error] {
	return func(yield func(*Record, error) bool) {
		for _, r := range rs {
			if !yield(r, nil) {
				return
			}
		}
	}
}

// rehash recomputes hashes and links from index i on, as an administrator
// with write access to the table but not to the KMS would.
func rehash(rs []*Record, i int) {
	for ; i < len(rs); i++ {
		if i > 0 {
			rs[i].Prev = rs[i-1].Hash
		}
		rs[i].Seq = uint64(i + 1)
		rs[i].Hash = sha256.Sum256(rs[i].Encode())
	}
}

func clone(rs []*Record) []*Record {
	out := make([]*Record, len(rs))
	for i, r := range rs {
		c := *r
		c.Details = bytes.Clone(r.Details)
		out[i] = &c
	}
	return out
}

func TestTamperDetected(t *testing.T) {
	hk, _ := NewHMAC(bytes.Repeat([]byte{7}, 32))
	every := func(uint64) bool { return true }
	tests := []struct {
		name    string
		opts    Options
		tamper  func([]*Record) []*Record
		seq     uint64
		wantErr error
	}{
		{"edit a field", Options{}, func(rs []*Record) []*Record { rs[4].Actor = "op:mallory"; return rs }, 5, ErrEdited},
		{"edit details", Options{}, func(rs []*Record) []*Record { rs[4].Details = []byte(`{"amount":1}`); return rs }, 5, ErrEdited},
		{"edit time", Options{}, func(rs []*Record) []*Record { rs[4].Time = rs[4].Time.Add(time.Microsecond); return rs }, 5, ErrEdited},
		{"edit and rehash one", Options{}, func(rs []*Record) []*Record {
			rs[4].Actor = "op:mallory"
			rs[4].Hash = sha256.Sum256(rs[4].Encode())
			return rs
		}, 6, ErrLink},
		{"delete one", Options{}, func(rs []*Record) []*Record { return slices.Delete(rs, 4, 5) }, 5, ErrSequence},
		{"delete first", Options{}, func(rs []*Record) []*Record { return rs[1:] }, 1, ErrSequence},
		{"delete and renumber", Options{}, func(rs []*Record) []*Record {
			rs = slices.Delete(rs, 4, 5)
			for i := 4; i < len(rs); i++ {
				rs[i].Seq--
				rs[i].Hash = sha256.Sum256(rs[i].Encode())
			}
			return rs
		}, 5, ErrLink},
		{"insert", Options{}, func(rs []*Record) []*Record {
			x, _ := Next(rs[3].Head(), Event{Time: t0, Actor: "op:mallory", Action: "vend.purchase", Object: "purchase/X"})
			rs = slices.Insert(rs, 4, &x)
			for i := 5; i < len(rs); i++ {
				rs[i].Seq++
				rs[i].Hash = sha256.Sum256(rs[i].Encode())
			}
			return rs
		}, 6, ErrLink},
		{"swap two", Options{}, func(rs []*Record) []*Record { rs[4], rs[5] = rs[5], rs[4]; return rs }, 5, ErrSequence},
		{"swap two and renumber", Options{}, func(rs []*Record) []*Record {
			rs[4], rs[5] = rs[5], rs[4]
			rs[4].Seq, rs[5].Seq = 5, 6
			rs[4].Hash = sha256.Sum256(rs[4].Encode())
			rs[5].Hash = sha256.Sum256(rs[5].Encode())
			return rs
		}, 5, ErrLink},
		{"rewrite whole chain, anchors kept", Options{Anchors: hk}, func(rs []*Record) []*Record {
			rs[4].Actor = "op:mallory"
			rehash(rs, 0)
			return rs
		}, 5, ErrAnchor},
		{"rewrite whole chain, anchors stripped", Options{Anchors: hk, MaxUnanchored: 1}, func(rs []*Record) []*Record {
			rs[4].Actor = "op:mallory"
			rehash(rs, 0)
			for _, r := range rs[4:] {
				r.Anchor = nil
			}
			return rs
		}, 6, ErrUnanchored},
		{"forged anchor", Options{Anchors: hk}, func(rs []*Record) []*Record { rs[7].Anchor[0] ^= 1; return rs }, 8, ErrAnchor},
	}
	orig := chain(t, 10, hk, every)
	if _, err := Verify(seq(orig), Options{Anchors: hk, MaxUnanchored: 1}); err != nil {
		t.Fatalf("intact chain: %v", err)
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rs := tc.tamper(clone(orig))
			_, err := Verify(seq(rs), tc.opts)
			var ce *ChainError
			if !errors.As(err, &ce) || !IsTamper(err) {
				t.Fatalf("err = %v, want a ChainError", err)
			}
			if ce.Seq != tc.seq || !errors.Is(err, tc.wantErr) {
				t.Errorf("err = %v; want %v at record %d", err, tc.wantErr, tc.seq)
			}
		})
	}
}

// Without anchors, a full recomputation passes: that is the documented limit
// the anchors exist for.
func TestRecomputedChainNeedsAnchors(t *testing.T) {
	rs := chain(t, 5, nil, nil)
	rs[2].Actor = "op:mallory"
	rehash(rs, 0)
	if _, err := Verify(seq(rs), Options{}); err != nil {
		t.Fatalf("unanchored recomputed chain should verify (that is why anchors exist): %v", err)
	}
}

func TestEd25519Anchors(t *testing.T) {
	pub, priv, _ := ed25519.GenerateKey(bytes.NewReader(bytes.Repeat([]byte{1}, 64)))
	s, err := NewEd25519Signer(priv)
	if err != nil {
		t.Fatal(err)
	}
	rs := chain(t, 20, s, func(seq uint64) bool { return seq%5 == 0 })
	sum, err := Verify(seq(rs), Options{Anchors: Ed25519Verifier(pub), MaxUnanchored: 5})
	if err != nil {
		t.Fatal(err)
	}
	if sum.Records != 20 || sum.Anchored != 4 || sum.LastAnchored != 20 || sum.Head != rs[19].Head() {
		t.Errorf("summary = %+v", sum)
	}
	other, _, _ := ed25519.GenerateKey(bytes.NewReader(bytes.Repeat([]byte{2}, 64)))
	if _, err := Verify(seq(rs), Options{Anchors: Ed25519Verifier(other)}); !errors.Is(err, ErrAnchor) {
		t.Errorf("wrong key: err = %v", err)
	}
	if _, err := NewHMAC(make([]byte, 16)); err == nil {
		t.Error("short HMAC key accepted")
	}
}

func TestVerifyFromCheckpoint(t *testing.T) {
	rs := chain(t, 10, nil, nil)
	sum, err := Verify(seq(rs[6:]), Options{From: rs[5].Head()})
	if err != nil || sum.Head != rs[9].Head() || sum.Records != 4 {
		t.Fatalf("from checkpoint: %+v, %v", sum, err)
	}
	if _, err := Verify(seq(rs[6:]), Options{From: rs[4].Head()}); !errors.Is(err, ErrSequence) {
		t.Fatalf("wrong checkpoint: %v", err)
	}
}

func TestStreamError(t *testing.T) {
	boom := errors.New("connection reset")
	src := func(yield func(*Record, error) bool) { yield(nil, boom) }
	_, err := Verify(src, Options{})
	if !errors.Is(err, boom) || IsTamper(err) {
		t.Fatalf("err = %v", err)
	}
}

func TestDecodeRoundTrip(t *testing.T) {
	for _, r := range chain(t, 3, nil, nil) {
		back, err := Decode(r.Encode())
		if err != nil {
			t.Fatal(err)
		}
		back.Anchor = r.Anchor
		if back.Seq != r.Seq || back.Hash != r.Hash || !back.Time.Equal(r.Time) || back.Actor != r.Actor ||
			!bytes.Equal(back.Details, r.Details) || back.Prev != r.Prev {
			t.Errorf("round trip: %+v != %+v", back, r)
		}
	}
	enc := (chain(t, 1, nil, nil))[0].Encode()
	for _, bad := range [][]byte{nil, enc[:10], enc[:60], enc[:len(enc)-1], append(bytes.Clone(enc), 0)} {
		if _, err := Decode(bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("Decode(%d bytes) err = %v", len(bad), err)
		}
	}
}

// FuzzDecode: Decode never panics and accepts only canonical encodings.
func FuzzDecode(f *testing.F) {
	for _, r := range chain(f, 3, nil, nil) {
		f.Add(r.Encode())
	}
	f.Add([]byte(Tag))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := Decode(b)
		if err != nil {
			return
		}
		if enc := r.Encode(); !bytes.Equal(enc, b) {
			t.Fatalf("accepted a non-canonical encoding:\n%x\n%x", b, enc)
		}
		if r.Hash != sha256.Sum256(b) {
			t.Fatal("hash mismatch")
		}
	})
}

func BenchmarkNext(b *testing.B) {
	e := Event{Time: t0, Actor: "op:bob", Action: "vend.purchase", Object: "purchase/P-0001",
		Details: []byte(`{"amount":20000,"meter":"01234567890","litres":5300}`)}
	var head Head
	b.ReportAllocs()
	for b.Loop() {
		r, err := Next(head, e)
		if err != nil {
			b.Fatal(err)
		}
		head = r.Head()
	}
}

func benchVerify(b *testing.B, o Options, s Signer) {
	rs := chain(b, 1000, s, func(uint64) bool { return true })
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := Verify(seq(rs), o); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)*1000/b.Elapsed().Seconds(), "records/s")
}

func BenchmarkVerify1000(b *testing.B) { benchVerify(b, Options{}, nil) }

func BenchmarkVerify1000HMAC(b *testing.B) {
	hk, _ := NewHMAC(bytes.Repeat([]byte{7}, 32))
	benchVerify(b, Options{Anchors: hk, MaxUnanchored: 1}, hk)
}
