package provision

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata")

func seededKey(label string) ed25519.PrivateKey {
	s := sha256.Sum256([]byte("sluice provision test " + label))
	return ed25519.NewKeyFromSeed(s[:])
}

var (
	mgmt    = seededKey("management")
	mgmt2   = seededKey("management 2")
	credit  = seededKey("credit")
	fwKey   = seededKey("firmware")
	trust   = Trust{Credit: credit.Public().(ed25519.PublicKey), Management: mgmt.Public().(ed25519.PublicKey), Firmware: fwKey.Public()}
	factory = FactoryState(mgmt.Public().(ed25519.PublicKey))
)

const testMeter = 4_1234_5678_9012

// derive stands in for the KMS: deterministic per-meter keys.
func derive(_ context.Context, id uint64) ([]Key, error) {
	k := func(kind KeyKind, n int) Key {
		h := sha256.Sum256([]byte(fmt.Sprintf("root/%d/%d", kind, id)))
		return Key{Kind: kind, RootVersion: 3, Version: 1, Secret: h[:n]}
	}
	return []Key{k(KeyCard, 16), k(KeyTelemetry, 16), k(KeyWMBus, 16), k(KeySTSDecoder, 8)}, nil
}

func service(t testing.TB, signer ed25519.PrivateKey) *Service {
	t.Helper()
	s, err := NewService(signer, derive)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func newDevice(t testing.TB, id uint64) *Device {
	t.Helper()
	d, err := NewDevice(rand.Reader, id, "SLW-15 rev B")
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// request is device d's request as the head-end parses it.
func request(t testing.TB, d *Device) *Request {
	t.Helper()
	req, err := ParseRequest(d.Request())
	if err != nil {
		t.Fatal(err)
	}
	return req
}

// provision runs the head-end side for device d.
func provision(t testing.TB, s *Service, d *Device, p Params) []byte {
	t.Helper()
	rec, err := s.Provision(context.Background(), request(t, d), p)
	if err != nil {
		t.Fatal(err)
	}
	return rec
}

func TestRoundTrip(t *testing.T) {
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	for name, fw := range map[string]any{"ed25519 firmware key": fwKey.Public(), "p256 firmware key": &ec.PublicKey} {
		t.Run(name, func(t *testing.T) {
			d := newDevice(t, testMeter)
			tr := trust
			tr.Firmware = fw
			rec := provision(t, service(t, mgmt), d, Params{Counter: 1, Trust: tr})
			p, st, err := d.Open(rec, factory)
			if err != nil {
				t.Fatal(err)
			}
			want, _ := derive(nil, testMeter)
			if len(p.Keys) != len(want) {
				t.Fatalf("%d keys", len(p.Keys))
			}
			for i := range want {
				if p.Keys[i].Kind != want[i].Kind || p.Keys[i].RootVersion != 3 || p.Keys[i].Version != 1 || !bytes.Equal(p.Keys[i].Secret, want[i].Secret) {
					t.Errorf("key %d: %+v", i, p.Keys[i])
				}
			}
			if k, ok := p.Key(KeySTSDecoder); !ok || len(k.Secret) != 8 {
				t.Errorf("sts key: %+v", k)
			}
			if p.MeterID != testMeter || p.Model != "SLW-15 rev B" || p.Counter != 1 ||
				!p.Trust.Credit.Equal(tr.Credit) || !p.Trust.Management.Equal(tr.Management) {
				t.Errorf("provisioned %+v", p)
			}
			switch f := p.Trust.Firmware.(type) {
			case ed25519.PublicKey:
				if !f.Equal(fw) {
					t.Error("firmware key differs")
				}
			case *ecdsa.PublicKey:
				if !f.Equal(fw) {
					t.Error("firmware key differs")
				}
			}
			if st.Counter != 1 || !st.Management.Equal(tr.Management) {
				t.Errorf("state %+v", st)
			}
			// Once: the same record again is a replay.
			if _, _, err := d.Open(rec, st); !errors.Is(err, ErrReplay) {
				t.Errorf("second use: %v", err)
			}
		})
	}
}

func TestReprovisioning(t *testing.T) {
	d := newDevice(t, testMeter)
	s := service(t, mgmt)
	_, st, err := d.Open(provision(t, s, d, Params{Counter: 1, Trust: trust}), factory)
	if err != nil {
		t.Fatal(err)
	}
	// A record issued earlier (counter 1) cannot roll keys back later, and
	// neither can one with an equal counter.
	old := provision(t, s, d, Params{Counter: 1, Trust: trust})
	if _, _, err := d.Open(old, st); !errors.Is(err, ErrReplay) {
		t.Fatalf("counter 1 again: %v", err)
	}
	// Rotation: record 2, signed by the current management key, installs
	// a new management key; from then on only the new key is obeyed.
	rotated := trust
	rotated.Management = mgmt2.Public().(ed25519.PublicKey)
	_, st2, err := d.Open(provision(t, s, d, Params{Counter: 2, Trust: rotated}), st)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := d.Open(provision(t, s, d, Params{Counter: 3, Trust: trust}), st2); !errors.Is(err, ErrSignature) {
		t.Fatalf("old management key after rotation: %v", err)
	}
	if _, _, err := d.Open(provision(t, service(t, mgmt2), d, Params{Counter: 3, Trust: rotated}), st2); err != nil {
		t.Fatalf("new management key: %v", err)
	}
}

func TestBinding(t *testing.T) {
	s := service(t, mgmt)
	d := newDevice(t, testMeter)
	rec := provision(t, s, d, Params{Counter: 1, Trust: trust})
	// Another board claiming the same meter ID (a clone, or a swapped
	// board) cannot use the record: it is sealed to d's keys.
	clone := newDevice(t, testMeter)
	if _, _, err := clone.Open(rec, factory); !errors.Is(err, ErrWrongDevice) {
		t.Errorf("clone: %v", err)
	}
	other := newDevice(t, testMeter+1)
	if _, _, err := other.Open(rec, factory); !errors.Is(err, ErrWrongDevice) {
		t.Errorf("other meter: %v", err)
	}
	// A record signed by anyone but the trusted management key is refused
	// (an "initialisation card" made by an attacker).
	forged := provision(t, service(t, seededKey("attacker")), d, Params{Counter: 1, Trust: trust})
	if _, _, err := d.Open(forged, factory); !errors.Is(err, ErrSignature) {
		t.Errorf("forged: %v", err)
	}
}

// TestByteFlip: no modification of any byte of a record is accepted.
func TestByteFlip(t *testing.T) {
	d := newDevice(t, testMeter)
	rec := provision(t, service(t, mgmt), d, Params{Counter: 1, Trust: trust})
	for i := range rec {
		bad := bytes.Clone(rec)
		bad[i] ^= 0x01
		if _, _, err := d.Open(bad, factory); err == nil {
			t.Errorf("flip at %d accepted", i)
		}
	}
	for n := range rec {
		if _, _, err := d.Open(rec[:n], factory); !errors.Is(err, ErrMalformed) {
			t.Errorf("prefix %d: %v", n, err)
		}
	}
}

// resign replaces the signature of a modified record with a valid one, to
// show that the checks behind the signature hold on their own.
func resign(rec []byte) []byte {
	body := rec[:len(rec)-ed25519.SignatureSize]
	return append(bytes.Clone(body), ed25519.Sign(mgmt, append(append([]byte(nil), recordContext...), body...))...)
}

func TestSealedKeysBound(t *testing.T) {
	d := newDevice(t, testMeter)
	s := service(t, mgmt)
	rec := provision(t, s, d, Params{Counter: 1, Trust: trust})
	r, _ := ParseRecord(rec)
	// Flip a ciphertext byte under a valid signature: AEAD refuses.
	bad := bytes.Clone(rec)
	bad[r.bodyEnd-1] ^= 1
	if _, _, err := d.Open(resign(bad), factory); !errors.Is(err, ErrUnwrap) {
		t.Errorf("sealed byte: %v", err)
	}
	// Change a key version (associated data) under a valid signature:
	// the keys no longer open, since they are bound to every field.
	bad = bytes.Clone(rec)
	bad[r.aadEnd-1] ^= 1
	if _, _, err := d.Open(resign(bad), factory); !errors.Is(err, ErrUnwrap) {
		t.Errorf("key version: %v", err)
	}
	// Splice the sealed keys of another record for the same device.
	rec2 := provision(t, s, d, Params{Counter: 2, Trust: trust})
	r2, _ := ParseRecord(rec2)
	spliced := append(bytes.Clone(rec[:r.aadEnd]), rec2[r2.aadEnd:r2.bodyEnd]...)
	spliced = append(spliced, make([]byte, 64)...)
	if _, _, err := d.Open(resign(spliced), factory); !errors.Is(err, ErrUnwrap) {
		t.Errorf("spliced: %v", err)
	}
}

func TestRequest(t *testing.T) {
	d := newDevice(t, testMeter)
	raw := d.Request()
	q, err := ParseRequest(raw)
	if err != nil {
		t.Fatal(err)
	}
	if q.MeterID != testMeter || q.DeviceKey != d.DeviceKey() || !q.Identity.Equal(d.Identity()) || q.Model != d.Model {
		t.Errorf("request %+v", q)
	}
	for i := range raw {
		bad := bytes.Clone(raw)
		bad[i] ^= 0x40
		if _, err := ParseRequest(bad); err == nil {
			t.Errorf("flip at %d accepted", i)
		}
	}
	if _, err := ParseRequest(append(bytes.Clone(raw), 0)); !errors.Is(err, ErrMalformed) {
		t.Errorf("trailing: %v", err)
	}
}

func TestDeviceFile(t *testing.T) {
	d := newDevice(t, testMeter)
	b, _ := d.MarshalBinary()
	e, err := ParseDevice(b)
	if err != nil {
		t.Fatal(err)
	}
	if e.DeviceKey() != d.DeviceKey() || !e.Identity().Equal(d.Identity()) || e.MeterID != d.MeterID || e.Model != d.Model {
		t.Error("device file does not round-trip")
	}
	if _, err := ParseDevice(b[:len(b)-1]); !errors.Is(err, ErrMalformed) {
		t.Errorf("short device file: %v", err)
	}
}

func TestServiceRefuses(t *testing.T) {
	d := newDevice(t, testMeter)
	req := request(t, d)
	ctx := context.Background()
	bad := func(f DeriveFunc) *Service { s, _ := NewService(mgmt, f); return s }
	cases := map[string]struct {
		s *Service
		p Params
	}{
		"zero counter":      {service(t, mgmt), Params{Trust: trust}},
		"no credit key":     {service(t, mgmt), Params{Counter: 1, Trust: Trust{Management: trust.Management, Firmware: trust.Firmware}}},
		"p384 firmware key": {service(t, mgmt), Params{Counter: 1, Trust: Trust{Credit: trust.Credit, Management: trust.Management, Firmware: &must384(t).PublicKey}}},
		"no keys":           {bad(func(context.Context, uint64) ([]Key, error) { return nil, nil }), Params{Counter: 1, Trust: trust}},
		"short key":         {bad(func(context.Context, uint64) ([]Key, error) { return []Key{{KeyCard, 1, 0, make([]byte, 7)}}, nil }), Params{Counter: 1, Trust: trust}},
		"duplicate kind": {bad(func(context.Context, uint64) ([]Key, error) {
			k := Key{KeyCard, 1, 0, make([]byte, 16)}
			return []Key{k, k}, nil
		}), Params{Counter: 1, Trust: trust}},
		"unknown kind":      {bad(func(context.Context, uint64) ([]Key, error) { return []Key{{9, 1, 0, make([]byte, 16)}}, nil }), Params{Counter: 1, Trust: trust}},
		"root version zero": {bad(func(context.Context, uint64) ([]Key, error) { return []Key{{KeyCard, 0, 1, make([]byte, 16)}}, nil }), Params{Counter: 1, Trust: trust}},
	}
	for name, c := range cases {
		if _, err := c.s.Provision(ctx, req, c.p); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := service(t, mgmt).Provision(ctx, &Request{MeterID: 1}, Params{Counter: 1, Trust: trust}); !errors.Is(err, ErrInvalid) {
		t.Errorf("unparsed request: %v", err)
	}
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if _, err := NewService(ec, derive); !errors.Is(err, ErrInvalid) {
		t.Errorf("ECDSA management signer: %v", err)
	}
}

func must384(t *testing.T) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// Test data: a test device (its secret key file), its request, good
// records, and fail_<reason>.bin records that must fail Open from the
// factory state with the named error. HPKE is randomised, so these are
// generated once (-update) and then only read.
var failWant = map[string]error{
	"bad_signature": ErrSignature, "wrong_device": ErrWrongDevice, "wrong_meter": ErrWrongDevice,
	"truncated": ErrMalformed, "trailing": ErrMalformed, "version": ErrVersion, "unknown_key_kind": ErrMalformed,
	"zero_counter": ErrMalformed, "duplicate_key_kind": ErrMalformed, "tampered_sealed": ErrUnwrap,
	"bad_magic": ErrMalformed, "bad_firmware_key_type": ErrMalformed,
}

func writeTestdata(t *testing.T) {
	d := newDevice(t, testMeter)
	db, _ := d.MarshalBinary()
	s := service(t, mgmt)
	good := provision(t, s, d, Params{Counter: 1, Trust: trust})
	r, _ := ParseRecord(good)
	modelAt := 14 + len(d.Model)
	keysAt := modelAt + 4 + 32*4 + 1 + 32 + 1 // first key entry
	mod := func(f func(b []byte)) []byte { b := bytes.Clone(good); f(b); return resign(b) }
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p256 := trust
	p256.Firmware = &ec.PublicKey
	files := map[string][]byte{
		"device_1.bin":                   db,
		"good_request.bin":               d.Request(),
		"good_record.bin":                good,
		"good_record_p256.bin":           provision(t, s, d, Params{Counter: 1, Trust: p256}),
		"fail_bad_signature.bin":         provision(t, service(t, seededKey("attacker")), d, Params{Counter: 1, Trust: trust}),
		"fail_wrong_device.bin":          provision(t, s, newDevice(t, testMeter), Params{Counter: 1, Trust: trust}),
		"fail_wrong_meter.bin":           provision(t, s, newDevice(t, testMeter+1), Params{Counter: 1, Trust: trust}),
		"fail_truncated.bin":             good[:len(good)-1],
		"fail_trailing.bin":              append(bytes.Clone(good), 0),
		"fail_version.bin":               mod(func(b []byte) { b[4] = 2 }),
		"fail_bad_magic.bin":             mod(func(b []byte) { b[3] = 'X' }),
		"fail_zero_counter.bin":          mod(func(b []byte) { binary.BigEndian.PutUint32(b[modelAt:], 0) }),
		"fail_bad_firmware_key_type.bin": mod(func(b []byte) { b[keysAt-1-32-1] = 3 }),
		"fail_unknown_key_kind.bin":      mod(func(b []byte) { b[keysAt] = 9 }),
		"fail_duplicate_key_kind.bin":    mod(func(b []byte) { b[keysAt+6] = b[keysAt] }),
		"fail_tampered_sealed.bin":       mod(func(b []byte) { b[r.bodyEnd-5] ^= 0x80 }),
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join("testdata", name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestTestdata(t *testing.T) {
	if *update {
		writeTestdata(t)
	}
	read := func(name string) []byte {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	d, err := ParseDevice(read("device_1.bin"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParseRequest(read("good_request.bin")); err != nil {
		t.Errorf("good_request.bin: %v", err)
	}
	goods, _ := filepath.Glob("testdata/good_record*.bin")
	if len(goods) != 2 {
		t.Fatalf("%d good records", len(goods))
	}
	for _, g := range goods {
		p, _, err := d.Open(read(filepath.Base(g)), factory)
		if err != nil {
			t.Errorf("%s: %v", g, err)
			continue
		}
		want, _ := derive(nil, testMeter)
		if !bytes.Equal(p.Keys[0].Secret, want[0].Secret) {
			t.Errorf("%s: meter key differs", g)
		}
	}
	fails, _ := filepath.Glob("testdata/fail_*.bin")
	if len(fails) != len(failWant) {
		t.Fatalf("%d fail files, want %d (run -update)", len(fails), len(failWant))
	}
	for _, f := range fails {
		reason := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(f), "fail_"), ".bin")
		_, st, err := d.Open(read(filepath.Base(f)), factory)
		if !errors.Is(err, failWant[reason]) {
			t.Errorf("%s: got %v, want %v", f, err, failWant[reason])
		}
		if st.Counter != 0 || !st.Management.Equal(factory.Management) {
			t.Errorf("%s: state changed on failure", f)
		}
	}
}

func BenchmarkProvision(b *testing.B) {
	d := newDevice(b, testMeter)
	req := request(b, d)
	s := service(b, mgmt)
	for b.Loop() {
		if _, err := s.Provision(context.Background(), req, Params{Counter: 1, Trust: trust}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkOpen(b *testing.B) {
	d := newDevice(b, testMeter)
	rec := provision(b, service(b, mgmt), d, Params{Counter: 1, Trust: trust})
	for b.Loop() {
		if _, _, err := d.Open(rec, factory); err != nil {
			b.Fatal(err)
		}
	}
}
