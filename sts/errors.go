package sts

import "errors"

// Errors callers branch on. Every error the package returns wraps one of
// them, with a message naming the field or the reason.
var (
	// ErrFormat: the input is malformed or out of range (not 20 digits, a
	// token above 2^66-1, an identifier out of its range, a bad key length).
	ErrFormat = errors.New("sts: format")
	// ErrCRC: the decrypted block fails its CRC. A token for another meter,
	// or under another key, fails here too: STS has no other integrity check.
	ErrCRC = errors.New("sts: crc")
	// ErrUnsupported: a reserved class or subclass, or one this decoder is
	// not configured for (a credit subclass for another utility, a 4-token
	// key change section on a 64-bit key).
	ErrUnsupported = errors.New("sts: unsupported token")
	// ErrUsed: the TID is in the decoder's TID memory: the token was used.
	ErrUsed = errors.New("sts: token already used")
	// ErrOld: the TID is older than the oldest the decoder remembers.
	ErrOld = errors.New("sts: token too old")
	// ErrKeyExpired: the TID lies beyond the key expiry number (KEN) of the
	// decoder key.
	ErrKeyExpired = errors.New("sts: decoder key expired")
	// ErrTIDRange: a time lies before the base date or beyond its 2^24
	// minutes, or a vending TID sequence is exhausted: a rollover key change
	// is due.
	ErrTIDRange = errors.New("sts: tid out of range")
	// ErrAmount: a credit amount exceeds the largest the amount field holds.
	ErrAmount = errors.New("sts: amount out of range")
)
