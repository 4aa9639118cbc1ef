package wmbus

import "errors"

// Errors callers branch on. Every error Decode returns wraps one of them and
// names the layer and field that failed.
var (
	// ErrShort: the telegram ends before a field its headers announce.
	ErrShort = errors.New("telegram too short")
	// ErrLength: the L-field disagrees with the number of bytes received.
	ErrLength = errors.New("length field mismatch")
	// ErrCRC: a DLL block CRC or the ELL payload CRC does not match.
	ErrCRC = errors.New("CRC mismatch")
	// ErrNoKey: the telegram is encrypted and no key was given.
	ErrNoKey = errors.New("encrypted telegram and no key")
	// ErrNotEncrypted: a key was given but nothing in the telegram was
	// encrypted: a downgrade or an impersonation of a keyed meter.
	ErrNotEncrypted = errors.New("telegram not encrypted")
	// ErrBadKey: decryption produced no valid plaintext (the 2F2F check or
	// the ELL payload CRC failed): the key is wrong or the telegram damaged.
	ErrBadKey = errors.New("decryption failed (wrong key?)")
	// ErrMAC: the mode 7 AFL MAC does not verify.
	ErrMAC = errors.New("MAC verification failed")
	// ErrUnsupported: a valid but unimplemented CI field, security mode,
	// KDF or data encoding.
	ErrUnsupported = errors.New("unsupported")
	// ErrRecord: the application data is not a well-formed DIF/VIF list.
	ErrRecord = errors.New("malformed data record")
)

// ErrDecrypt is an alias of ErrBadKey for callers that think of it as a
// decryption failure rather than a key problem.
var ErrDecrypt = ErrBadKey
