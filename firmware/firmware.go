// Package firmware writes and verifies signed meter firmware images in the
// format of MCUboot, the open secure bootloader for microcontrollers, so that
// a Sluice meter can run MCUboot itself or the reference boot logic in
// package firmware/boot, and images can be inspected with MCUboot's tools.
//
// An image is a 32-byte header, the application, a protected TLV area and an
// unprotected TLV area (layout byte by byte in docs/firmware.md):
//
//	header (32) | application | 0x6908 area: SEC_CNT | 0x6907 area: SHA256, KEYHASH, signature
//
// The SHA-256 digest covers the header, the application and the whole
// protected TLV area (its info header included); the signature is over that
// digest: Ed25519 signs the 32-byte digest as its message (MCUboot's default,
// not the "pure" mode) and ECDSA P-256 signs the digest in ASN.1 DER form.
//
// Security choices:
//   - The parser is an allow-list. The protected area may hold only SEC_CNT,
//     the unprotected area only SHA256, KEYHASH and one signature, each exactly
//     once. MCUboot up to 1.11 accepted any TLV in either area, so an attacker
//     could append a TLV that ought to be protected (CVE-2024-32883); here a
//     TLV in the wrong area, unknown, duplicated or of the wrong length
//     rejects the whole image.
//   - The security counter is mandatory: a bootloader needs it to refuse a
//     downgrade, and it must be under the signature.
//   - Signing goes through crypto.Signer, so the private key can stay in the
//     KMS or an HSM; the writer verifies what the signer returned before
//     emitting an image.
//   - Images carry no secrets. Scan looks for any key of the fleet in an
//     image so a release build can refuse a leaky one.
package firmware

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Layout constants of the MCUboot image format.
const (
	ImageMagic       = 0x96f3b83d // ih_magic
	HeaderSize       = 32         // the fixed part of the header
	TLVInfoSize      = 4          // it_magic + it_tlv_tot
	TLVHeaderSize    = 4          // it_type + it_len
	ProtectedMagic   = 0x6908     // info magic of the protected TLV area
	UnprotectedMagic = 0x6907     // info magic of the unprotected TLV area
)

// TLV types used by Sluice (MCUboot's IMAGE_TLV_* values).
const (
	TLVKeyHash  = 0x01 // SHA-256 of the signing key's DER SubjectPublicKeyInfo
	TLVSHA256   = 0x10 // SHA-256 of header, application and protected TLVs
	TLVECDSASig = 0x22 // ECDSA P-256 signature of the digest (DER)
	TLVEd25519  = 0x24 // Ed25519 signature of the digest
	TLVSecCnt   = 0x50 // security counter, uint32 little endian
)

// Header flags (IMAGE_F_*). Only RAM_LOAD and ROM_FIXED are accepted: Sluice
// images are neither encrypted nor position independent nor split.
const (
	FlagPIC         = 0x00000001
	FlagEncAES128   = 0x00000004
	FlagEncAES256   = 0x00000008
	FlagNonBootable = 0x00000010
	FlagRAMLoad     = 0x00000020
	FlagROMFixed    = 0x00000100
	allowedFlags    = FlagRAMLoad | FlagROMFixed
	maxHeaderSize   = 0x1000 // generous: Zephyr pads headers to 0x200
	ed25519SigSize  = 64
	maxECDSASigSize = 72 // DER of two 33-byte INTEGERs, MCUboot's padded size
	minECDSASigSize = 8
)

// Errors callers branch on. Every error returned by Parse, Verify and Sign
// wraps exactly one of these, with the field and offset in its message.
var (
	ErrBadMagic       = errors.New("bad magic")
	ErrTruncated      = errors.New("truncated image")
	ErrTrailingData   = errors.New("data after the TLV areas")
	ErrBadHeader      = errors.New("invalid header field")
	ErrTLVLength      = errors.New("TLV area length mismatch")
	ErrUnknownTLV     = errors.New("TLV type not allowed")
	ErrMisplacedTLV   = errors.New("protected TLV outside the protected area")
	ErrDuplicateTLV   = errors.New("duplicate TLV")
	ErrMissingTLV     = errors.New("missing TLV")
	ErrHashMismatch   = errors.New("hash mismatch")
	ErrKeyHash        = errors.New("key hash matches no trusted key")
	ErrBadSignature   = errors.New("bad signature")
	ErrUnsupportedKey = errors.New("unsupported key type")
)

// Version is MCUboot's image_version: major.minor.revision+build.
type Version struct {
	Major    uint8
	Minor    uint8
	Revision uint16
	Build    uint32
}

func (v Version) String() string {
	s := fmt.Sprintf("%d.%d.%d", v.Major, v.Minor, v.Revision)
	if v.Build != 0 {
		s += "+" + strconv.FormatUint(uint64(v.Build), 10)
	}
	return s
}

// Compare returns -1, 0 or +1 as v is older than, equal to or newer than w.
func (v Version) Compare(w Version) int {
	a := [4]uint64{uint64(v.Major), uint64(v.Minor), uint64(v.Revision), uint64(v.Build)}
	b := [4]uint64{uint64(w.Major), uint64(w.Minor), uint64(w.Revision), uint64(w.Build)}
	for i := range a {
		switch {
		case a[i] < b[i]:
			return -1
		case a[i] > b[i]:
			return 1
		}
	}
	return 0
}

// ParseVersion reads "X.Y.Z" or "X.Y.Z+B" (imgtool's syntax; minor,
// revision and build may be omitted).
func ParseVersion(s string) (Version, error) {
	var v Version
	main, build, hasBuild := strings.Cut(s, "+")
	parts := strings.Split(main, ".")
	if len(parts) > 3 || main == "" {
		return v, fmt.Errorf("firmware: version %q: want MAJOR.MINOR.REVISION[+BUILD]", s)
	}
	limits := []int{8, 8, 16}
	var vals [3]uint64
	for i, p := range parts {
		n, err := strconv.ParseUint(p, 10, limits[i])
		if err != nil {
			return v, fmt.Errorf("firmware: version %q: part %d: %w", s, i+1, err)
		}
		vals[i] = n
	}
	v.Major, v.Minor, v.Revision = uint8(vals[0]), uint8(vals[1]), uint16(vals[2])
	if hasBuild {
		n, err := strconv.ParseUint(build, 10, 32)
		if err != nil {
			return v, fmt.Errorf("firmware: version %q: build: %w", s, err)
		}
		v.Build = uint32(n)
	}
	return v, nil
}

// Header is the decoded image header.
type Header struct {
	LoadAddr         uint32
	HeaderSize       uint16 // offset of the application
	ProtectedTLVSize uint16 // protected area including its info header
	ImageSize        uint32 // application size, header excluded
	Flags            uint32
	Version          Version
}

// TLV is one record of a TLV area, with its offset in the image.
type TLV struct {
	Type   uint16
	Offset int // of the TLV header
	Value  []byte
}

// Image is a parsed image. Parse fills it from untrusted bytes; only
// Verifier.Verify says it may be trusted.
type Image struct {
	Header          Header
	SecurityCounter uint32
	Hash            [32]byte // the SHA256 TLV as stored
	KeyHash         [32]byte
	SigType         uint16 // TLVEd25519 or TLVECDSASig
	Signature       []byte
	Protected       []TLV
	Unprotected     []TLV

	raw         []byte // exactly the image, from header to the last TLV
	protectedAt int    // offset of the protected area (= end of application)
}

// Bytes returns the image as parsed (aliasing the input).
func (im *Image) Bytes() []byte { return im.raw }

// Payload returns the application (the bytes the bootloader jumps into).
func (im *Image) Payload() []byte {
	return im.raw[im.Header.HeaderSize:im.protectedAt]
}

// SignedBytes returns what the SHA256 TLV covers: header, application and
// the protected TLV area.
func (im *Image) SignedBytes() []byte {
	return im.raw[:im.protectedAt+int(im.Header.ProtectedTLVSize)]
}

// tlvName names the TLV types for error messages and inspect.
func tlvName(t uint16) string {
	switch t {
	case TLVKeyHash:
		return "KEYHASH"
	case TLVSHA256:
		return "SHA256"
	case TLVECDSASig:
		return "ECDSA_SIG"
	case TLVEd25519:
		return "ED25519"
	case TLVSecCnt:
		return "SEC_CNT"
	case 0x02:
		return "PUBKEY"
	case 0x20:
		return "RSA2048_PSS"
	case 0x23:
		return "RSA3072_PSS"
	case 0x30, 0x31, 0x32, 0x33:
		return "ENC_*"
	case 0x40:
		return "DEPENDENCY"
	case 0x60:
		return "BOOT_RECORD"
	}
	return fmt.Sprintf("0x%02x", t)
}

// TLVName is the MCUboot name of a TLV type ("SEC_CNT", "ED25519", ...).
func TLVName(t uint16) string { return tlvName(t) }
