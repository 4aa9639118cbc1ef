// Package pkcs11kms keeps Sluice's keys in a hardware security module,
// reached through PKCS#11 (github.com/miekg/pkcs11, which needs cgo).
//
// Every key is generated inside the token (imported, for STS vending keys)
// as a private, sensitive, non-extractable token object: no operation of
// this package, and no PKCS#11 call by anyone holding the PIN, can read the
// key value or wrap it out of the token. What leaves the token is what the
// operations produce:
//
//   - AES root keys: the PRF is CKM_AES_CMAC computed in the token, so each
//     SP 800-108 block of a derived key is made inside the HSM (package kdf
//     only arranges the inputs); Wrap and Unwrap are CKM_AES_GCM with a
//     nonce drawn by the host.
//   - Ed25519 keys sign with CKM_EDDSA, ECDSA P-256 keys with CKM_ECDSA over
//     a SHA-256 computed by the host (the signature is converted to ASN.1 DER
//     to match Go's crypto.Signer convention).
//   - STS DKGA04 vending keys are generic secrets used with
//     CKM_SHA256_HMAC. The 160-bit key is stored zero-padded to 64 bytes:
//     HMAC pads a short key with zeros to the hash block size anyway, so the
//     MAC is identical, and tokens that enforce a 256-bit minimum HMAC key
//     (SoftHSM2 does) accept it.
//   - STS DKGA02 vending keys are refused (kms.ErrUnsupported): DKGA02
//     XORs the vending key itself into its output, which no PKCS#11
//     mechanism computes, so the key would have to be readable. Keep DKGA02
//     keys in the file backend; one dumped DKGA02 meter exposes them anyway.
//
// Objects are labelled "sluice:" + key name, with the version as a 4-byte
// big-endian CKA_ID; a key's kind is read back from its PKCS#11 attributes,
// so the token is the only record. All calls go through one logged-in
// session guarded by a mutex: PKCS#11 sessions are not safe for concurrent
// use, and key operations are short. A PKCS#11 module is initialised once
// per process, so open one KMS per module and share it: a second Open on a
// module in use is refused rather than allowed to finalise it for both.
//
// The package builds without cgo (or with the nopkcs11 tag) to a stub whose
// Open reports kms.ErrUnsupported, so the rest of Sluice never needs cgo.
package pkcs11kms

// Config locates a token.
type Config struct {
	Module string // path of the PKCS#11 library, e.g. /usr/lib/softhsm/libsofthsm2.so
	Token  string // token label
	PIN    string // user PIN
}
