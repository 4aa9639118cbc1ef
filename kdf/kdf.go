// Package kdf derives keys with the NIST SP 800-108 key-based KDF in counter
// mode, with AES-CMAC as its pseudo-random function, and diversifies card keys
// the way NXP AN10922 describes.
//
// Every symmetric key a Sluice field device holds comes out of this package:
// per-meter keys from the meter root, per-card keys from a meter's card key.
// Derivation is one-way, so a key dumped from a meter or a card reveals
// neither its root nor its siblings.
//
// The PRF is a parameter rather than a key because the root keys it runs
// under normally live in a hardware security module that never lets them out:
// the PKCS#11 backend of package kms passes a PRF that runs each CMAC inside
// the token (CKM_AES_CMAC), and this package only arranges the inputs. With a
// key in memory, CMAC(key) gives the same PRF in software.
//
// The Sluice profile of SP 800-108 (section 4.1, counter mode) is:
//
//	K(i)   = PRF(KI, [i]_8 || Label || 0x00 || Context || [L]_16)
//	result = leftmost L bits of K(1) || K(2) || ...
//
// with an 8-bit counter starting at 1 and L, the output length in bits, as a
// 16-bit big-endian integer. An 8-bit counter bounds the output to 255 PRF
// blocks (4080 bytes for CMAC), far more than any key needs; the 16-bit
// length field holds every length that bound allows. Fixing both widths makes
// the byte string the PRF sees unambiguous for any label and context, which
// is what keeps keys derived for different purposes independent.
package kdf

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	"sluice/cmac"
)

// PRF is a pseudo-random function under a key the caller does not hold
// (a key in a token, or one bound by CMAC). It returns a fixed-length output,
// 16 bytes for AES-CMAC, for any message.
type PRF func(ctx context.Context, msg []byte) ([]byte, error)

// CMAC returns the AES-CMAC PRF under an AES key of 16, 24 or 32 bytes held
// in memory. The key schedule is computed once.
func CMAC(key []byte) (PRF, error) {
	m, err := cmac.New(key)
	if err != nil {
		return nil, fmt.Errorf("kdf: %w", err)
	}
	return func(_ context.Context, msg []byte) ([]byte, error) {
		// A CMAC is stateful; reusing it would race if the PRF were shared
		// between goroutines, so each call works on its own copy.
		mc := *m
		mc.Reset()
		mc.Write(msg)
		return mc.Sum(nil), nil
	}, nil
}

// ErrLength reports an output length this profile cannot produce.
var ErrLength = errors.New("kdf: output length out of range")

// MaxBits is the longest output Derive produces: 255 AES-CMAC blocks.
const MaxBits = 255 * cmac.Size * 8

// CounterMode runs SP 800-108 counter mode with the counter, r bits wide
// (8, 16, 24 or 32, big-endian), placed before the fixed input data, and
// returns the leftmost bits of output. bits must be a multiple of 8.
//
// It is the general construction the published CAVP vectors exercise;
// Derive is the profile Sluice uses on top of it.
func CounterMode(ctx context.Context, prf PRF, r int, fixed []byte, bits int) ([]byte, error) {
	switch r {
	case 8, 16, 24, 32:
	default:
		return nil, fmt.Errorf("kdf: counter width %d bits not one of 8, 16, 24, 32", r)
	}
	if bits <= 0 || bits%8 != 0 {
		return nil, fmt.Errorf("%w: %d bits is not a positive whole number of bytes", ErrLength, bits)
	}
	n := bits / 8
	in := make([]byte, r/8+len(fixed))
	copy(in[r/8:], fixed)
	out := make([]byte, 0, n+cmac.Size)
	maxCounter := uint64(1)<<r - 1
	for i := uint64(1); len(out) < n; i++ {
		if i > maxCounter {
			return nil, fmt.Errorf("%w: %d bits need more than %d blocks", ErrLength, bits, maxCounter)
		}
		var c [4]byte
		binary.BigEndian.PutUint32(c[:], uint32(i))
		copy(in, c[4-r/8:])
		k, err := prf(ctx, in)
		if err != nil {
			return nil, fmt.Errorf("kdf: PRF block %d: %w", i, err)
		}
		if len(k) == 0 {
			return nil, fmt.Errorf("kdf: PRF block %d returned no output", i)
		}
		out = append(out, k...)
	}
	return out[:n], nil
}

// FixedInput returns the fixed input data of the Sluice profile:
// Label || 0x00 || Context || [bits]_16. It is exported so that the layout is
// documented in one place and tests can check it byte by byte.
func FixedInput(label, context []byte, bits int) []byte {
	b := make([]byte, 0, len(label)+1+len(context)+2)
	b = append(b, label...)
	b = append(b, 0x00)
	b = append(b, context...)
	return binary.BigEndian.AppendUint16(b, uint16(bits))
}

// Derive returns bits of key material derived under prf for label (the
// purpose) and context (what the key belongs to), with the Sluice profile:
// 8-bit counter before the fixed input Label || 0x00 || Context || [bits]_16.
func Derive(ctx context.Context, prf PRF, label, context []byte, bits int) ([]byte, error) {
	if bits <= 0 || bits > MaxBits || bits%8 != 0 {
		return nil, fmt.Errorf("%w: %d bits (want a multiple of 8 up to %d)", ErrLength, bits, MaxBits)
	}
	return CounterMode(ctx, prf, 8, FixedInput(label, context, bits), bits)
}

// DiversifyAN10922 returns the AES-128 key diversified from key for the
// diversification input m, as NXP AN10922 section 2.2 specifies:
//
//	K_div = CMAC(K, 0x01 || M || padding)
//
// where M is 1 to 31 bytes (for cards: UID || AID || system identifier) and
// the padding is CMAC's own (0x80 00..) whenever 0x01 || M is not 32 bytes.
// key must be 16 bytes.
func DiversifyAN10922(key, m []byte) ([]byte, error) {
	if len(key) != 16 {
		return nil, fmt.Errorf("kdf: AN10922 AES-128 key is %d bytes, want 16", len(key))
	}
	if len(m) == 0 || len(m) > 31 {
		return nil, fmt.Errorf("kdf: AN10922 diversification input is %d bytes, want 1 to 31", len(m))
	}
	msg := make([]byte, 0, 32)
	msg = append(msg, 0x01)
	msg = append(msg, m...)
	return cmac.Sum(key, msg)
}
