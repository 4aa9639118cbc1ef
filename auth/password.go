// Package auth holds who may do what on the head-end: operators' password
// hashes, generated credentials and the first-run bootstrap administrator.
//
// Passwords are hashed with argon2id (RFC 9106) and stored in the PHC string
// format, $argon2id$v=19$m=...,t=...,p=...$salt$hash, so parameters can be
// raised later without invalidating stored hashes: Verify reads them from
// the string, and NeedsRehash tells the caller to upgrade on next login.
package auth

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/crypto/argon2"
)

// Params are argon2id cost parameters.
type Params struct {
	Memory  uint32 // KiB
	Time    uint32
	Threads uint8
}

// DefaultParams follow RFC 9106's second recommended option (64 MiB, 3
// passes), which costs tens of milliseconds per login on the 2-core machines
// Sluice targets; logins are rate limited, so that is affordable.
var DefaultParams = Params{Memory: 64 * 1024, Time: 3, Threads: 2}

// ErrMismatch is returned for a wrong password.
var ErrMismatch = errors.New("password does not match")

// ErrBadHash is returned for a stored hash Sluice cannot read.
var ErrBadHash = errors.New("unrecognised password hash")

const saltLen, keyLen = 16, 32

// Hash returns the PHC string of password under p.
func Hash(password string, p Params) (string, error) {
	salt := make([]byte, saltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("hash password: %w", err)
	}
	key := argon2.IDKey([]byte(password), salt, p.Time, p.Memory, p.Threads, keyLen)
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s",
		argon2.Version, p.Memory, p.Time, p.Threads, b64.EncodeToString(salt), b64.EncodeToString(key)), nil
}

// Verify checks password against a PHC string made by Hash, in constant time.
func Verify(encoded, password string) error {
	p, salt, key, err := parse(encoded)
	if err != nil {
		return err
	}
	got := argon2.IDKey([]byte(password), salt, p.Time, p.Memory, p.Threads, uint32(len(key)))
	if subtle.ConstantTimeCompare(got, key) != 1 {
		return ErrMismatch
	}
	return nil
}

// NeedsRehash reports whether encoded was made with parameters other than p.
func NeedsRehash(encoded string, p Params) bool {
	got, _, _, err := parse(encoded)
	return err != nil || got != p
}

func parse(encoded string) (Params, []byte, []byte, error) {
	parts := strings.Split(encoded, "$")
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" {
		return Params{}, nil, nil, ErrBadHash
	}
	var v int
	if _, err := fmt.Sscanf(parts[2], "v=%d", &v); err != nil || v != argon2.Version {
		return Params{}, nil, nil, fmt.Errorf("%w: version %q", ErrBadHash, parts[2])
	}
	var p Params
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &p.Memory, &p.Time, &p.Threads); err != nil {
		return Params{}, nil, nil, fmt.Errorf("%w: parameters %q", ErrBadHash, parts[3])
	}
	// Bounds keep a corrupted or hostile row from costing gigabytes.
	if p.Memory < 8 || p.Memory > 1<<21 || p.Time < 1 || p.Time > 64 || p.Threads < 1 {
		return Params{}, nil, nil, fmt.Errorf("%w: parameters out of range", ErrBadHash)
	}
	b64 := base64.RawStdEncoding
	salt, err := b64.DecodeString(parts[4])
	if err != nil || len(salt) < 8 {
		return Params{}, nil, nil, fmt.Errorf("%w: salt", ErrBadHash)
	}
	key, err := b64.DecodeString(parts[5])
	if err != nil || len(key) < 16 || len(key) > 64 {
		return Params{}, nil, nil, fmt.Errorf("%w: key", ErrBadHash)
	}
	return p, salt, key, nil
}

// GeneratePassword returns a random password of 20 characters from an
// alphabet without look-alike characters, about 113 bits.
func GeneratePassword() string {
	const alphabet = "abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"
	var b [20]byte
	out := make([]byte, len(b))
	rand.Read(b[:])
	for i := range b {
		// 256 % 55 bias is under 1%; the length makes up for it.
		out[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(out)
}
