// Package sts implements the STS prepaid token standard (IEC 62055-41): the
// 20-digit tokens typed on a meter's keypad, the decoder keys they are
// encrypted under, and the meter-side rules that accept or refuse them.
//
// The package is pure: no I/O, no clock (times are passed in), no mutable
// globals. Everything is integer arithmetic.
//
// # Pieces
//
//   - Identifiers: PAN (IIN + DRN + Luhn), KeyID (key type, supply group,
//     tariff index, key revision), BaseDate, PAN block and control block.
//   - Decoder key generation: DKGA02 (DES, legacy and weak) and DKGA04
//     (HMAC-SHA-256 from a 160-bit vending key, the default).
//   - Encryption: EA07, the Standard Transfer Algorithm, whose substitution
//     and permutation tables are licensed data loaded with ParseSTATables;
//     and EA11, MISTY1 (RFC 2994, package sts/internal/misty1).
//   - Tokens: class 0 credit (every subclass, water = 1 in 0.1 m3), class 1
//     test and display (not encrypted), class 2 management including 2- and
//     4-token key change sets. A Coder holds one expanded decoder key and
//     seals or opens tokens without allocating.
//   - Decoder: the meter's state machine (TID memory, key expiry, key change
//     sets committed only when complete, rollover), a plain value with a
//     fixed, versioned binary form for power-fail-safe journals.
//   - NextTID: the vending side's strictly increasing TID per meter, which
//     never issues the reserved minute 00:01 of a day (ReservedTID).
//
// # Security
//
// An STS token's only integrity check is a 16-bit CRC under the decoder
// key: a random 20-digit entry passes for a given class with probability
// about 2^-16, and a meter's keypad lockout is the only bound on guessing.
// The TID memory stops replay of a token on the meter it was made for. A
// decoder key derived with DKGA02 falls to a 2^56 DES search from one
// extracted meter key, and the search yields the supply group's vending key;
// DKGA04 with EA11 has no such shortcut and is the default for new meters.
// Sluice's own credit vouchers (package voucher) are signed so meters hold
// no secret that can mint credit; STS is supported for meters already in
// the field. docs/sts.md describes the layouts bit by bit.
package sts
