// Package meter is Sluice's reference prepaid water meter: the exact logic
// a firmware team ports to the meter's microcontroller, and the meter the
// emulators, the card and telemetry tests and the attack lab run against.
//
// # Design
//
// The meter is a deterministic state machine. It has no goroutines and no
// clock of its own: every input (a keypad entry, flow pulses, a sensor, a
// voucher, a card) carries the meter's clock reading, storage is a Storage
// the caller provides (an emulated EEPROM here, the real part on a device)
// and randomness comes in through Deps. Given the same inputs it does the
// same thing, which is what lets the tests cut the power at every byte.
//
// Credit and supply logic lives in Core, a 40-byte value with pure
// methods; Meter wraps one with its keys, the STS decoder state, the
// keypad lockout, the voucher sequence window and a bounded event log, and
// journals all of it as one record. Every input computes the next state on
// a copy, commits it, and only then adopts it and returns: an input is
// acknowledged exactly when its commit completed.
//
// # Storage that survives power loss
//
// The journal keeps the state in one of two banks of whole EEPROM pages,
// each record with a sequence number and a CRC-32C; a commit writes the bank
// not holding the current record and boot takes the valid record with the
// higher sequence number. A power cut tears at most the bank being written,
// so after any cut the meter boots on the old state or the new one: credit,
// TID memory, voucher sequence numbers and events are never lost once
// acknowledged and never applied twice (TestPowerCutEveryByte).
//
// # Security choices
//
//   - The storage holds only this meter's own keys (card and telemetry keys
//     diversified for it, its STS decoder key) and public verification keys.
//     Dump returns the image a debug probe would read; it mints nothing for
//     any other meter, and signed vouchers cannot be minted from it at all.
//   - Native credit is an Ed25519-signed voucher (package voucher), checked
//     against a keyring with separate credit and management roles, bound to
//     the meter and accepted once within a 64-number sequence window.
//   - STS tokens (package sts) are accepted for existing infrastructure. Their
//     16-bit CRC is guessable, so the keypad charges the rejection counter
//     and commits it before decoding: cutting the power after a guess does
//     not avoid the exponential lockout, and neither does a power cycle. Test
//     tokens, which anyone can make, never lift a lockout.
//   - After an STS key change the state is committed twice so the old key
//     does not survive in the other bank.
//   - Tamper conditions latch until an engineering token or voucher clears
//     them; repeated card authentication failures are card-port abuse.
//   - Production meters get their keys only from a signed provisioning
//     record bound to the key pairs they generated themselves (package
//     provision); there is no initialisation card, and Format refuses a
//     meter that already holds state.
//
// The protocol, layouts, codes and measured figures are in docs/meter.md.
package meter
