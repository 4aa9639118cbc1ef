// Package wmbus decodes wireless M-Bus telegrams (EN 13757-4) carrying OMS
// application data (EN 13757-3, OMS specification volume 2), as the
// gateways in the field forward them: raw bytes from the L-field, with or
// without the link-layer block CRCs.
//
// # Layers
//
// A telegram is peeled layer by layer, each introduced by a CI field:
//
//	DLL  L C M A                       link layer: length, control, sender address
//	ELL  CI 8C..8F  CC ACC [M A] [SN CRC]   extended link layer; with SN, AES-128-CTR
//	AFL  CI 90      FCL MCL [KI] MCR MAC    authentication layer of security mode 7
//	TPL  CI 7A/72/78 ACC STS CF [CFE]       transport layer: security mode 0, 5 or 7
//	     CI 79  signature CRC data          compact frame: records rebuilt from a known format
//	APL  DIF [DIFE] VIF [VIFE] data ...     data records
//
// # Security choices
//
// Decryption is only ever accepted with proof: the ELL's AES-CTR plaintext
// must carry a matching CRC-16 of itself, mode 5 and mode 7 plaintext must
// start with the 2F2F check bytes, and mode 7's AFL MAC (AES-CMAC under a
// per-message key) is verified, in constant time, before anything is
// decrypted. A wrong key is reported as ErrBadKey (or ErrMAC), never as
// garbage records. The CTR and CBC IVs and the mode 7 KDF follow the
// standard byte for byte; see docs/wmbus.md.
//
// None of this authenticates mode 5 or ELL telegrams: CBC and CTR without a
// MAC are malleable and replayable, and a shared manufacturer default key
// (DefaultKeys) gives them no confidentiality either. Decode flags such
// telegrams (Telegram.DefaultKey) so the head-end can treat those meters'
// readings as untrusted and plan a key change.
//
// The package is pure: no I/O, no clock, no global mutable state. Decode
// never modifies its input.
package wmbus
