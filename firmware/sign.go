package firmware

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/binary"
	"fmt"
	"io"
)

// SignOptions are the header fields and protected values of a new image.
type SignOptions struct {
	Version         Version
	SecurityCounter uint32
	// LoadAddr, if not zero, is written to ih_load_addr and sets RAM_LOAD,
	// as imgtool does.
	LoadAddr uint32
	// HeaderSize is ih_hdr_size; 0 means 32. A larger header (Zephyr uses
	// 0x200) is padded with zeros, which the digest covers.
	HeaderSize uint16
	// Rand feeds ECDSA; nil means crypto/rand. Ed25519 needs none.
	Rand io.Reader
}

// Sign builds a signed image around the application app. The signer's
// public key must be Ed25519 or ECDSA P-256; the private key may live in
// the KMS or an HSM (kms.Signer gives one). The signature is checked before
// the image is returned, so a faulty signer cannot produce an image no
// meter will boot.
func Sign(app []byte, signer crypto.Signer, opts SignOptions) ([]byte, error) {
	r := opts.Rand
	if r == nil {
		r = rand.Reader
	}
	pub := signer.Public()
	return SignMessages(app, pub, func(msg []byte) ([]byte, error) {
		if _, ok := pub.(*ecdsa.PublicKey); ok {
			h := sha256.Sum256(msg)
			return signer.Sign(r, h[:], crypto.SHA256)
		}
		return signer.Sign(r, msg, crypto.Hash(0))
	}, opts)
}

// MessageSigner signs msg as kms.KeyManager.Sign does: pure Ed25519 of msg,
// or ECDSA P-256 over SHA-256(msg) with an ASN.1 DER result.
type MessageSigner func(msg []byte) ([]byte, error)

// SignMessages is Sign for a key reached through a message-signing API
// (kms.KeyManager.Sign, bound to a key reference by the caller). For
// Ed25519 the message is the image digest; for ECDSA it is the signed bytes
// themselves, whose SHA-256 is that digest.
func SignMessages(app []byte, pub crypto.PublicKey, sign MessageSigner, opts SignOptions) ([]byte, error) {
	sigType, err := signatureType(pub)
	if err != nil {
		return nil, err
	}
	keyHash, err := KeyHash(pub)
	if err != nil {
		return nil, err
	}
	hdrSize := opts.HeaderSize
	if hdrSize == 0 {
		hdrSize = HeaderSize
	}
	if hdrSize < HeaderSize || hdrSize > maxHeaderSize {
		return nil, fmt.Errorf("firmware: sign: %w: header size %d outside [%d, %d]", ErrBadHeader, hdrSize, HeaderSize, maxHeaderSize)
	}
	if uint64(len(app)) > 0xffffffff-uint64(hdrSize) {
		return nil, fmt.Errorf("firmware: sign: application of %d bytes does not fit ih_img_size", len(app))
	}
	var flags uint32
	if opts.LoadAddr != 0 {
		flags |= FlagRAMLoad
	}
	const protSize = TLVInfoSize + TLVHeaderSize + 4 // one SEC_CNT

	le := binary.LittleEndian
	out := make([]byte, int(hdrSize), int(hdrSize)+len(app)+protSize+TLVInfoSize+3*TLVHeaderSize+32+32+maxECDSASigSize)
	le.PutUint32(out[0:], ImageMagic)
	le.PutUint32(out[4:], opts.LoadAddr)
	le.PutUint16(out[8:], hdrSize)
	le.PutUint16(out[10:], protSize)
	le.PutUint32(out[12:], uint32(len(app)))
	le.PutUint32(out[16:], flags)
	out[20], out[21] = opts.Version.Major, opts.Version.Minor
	le.PutUint16(out[22:], opts.Version.Revision)
	le.PutUint32(out[24:], opts.Version.Build)
	// out[28:32], ih_pad1, and any header padding stay zero.
	out = append(out, app...)

	out = le.AppendUint16(out, ProtectedMagic)
	out = le.AppendUint16(out, protSize)
	out = appendTLV(out, TLVSecCnt, le.AppendUint32(nil, opts.SecurityCounter))

	digest := sha256.Sum256(out)
	var sig []byte
	if sigType == TLVEd25519 {
		// MCUboot's default Ed25519 mode signs the digest, not the image.
		sig, err = sign(digest[:])
	} else {
		sig, err = sign(out)
	}
	if err != nil {
		return nil, fmt.Errorf("firmware: sign: signer: %w", err)
	}
	if err := checkSignature(pub, sigType, digest[:], sig); err != nil {
		return nil, fmt.Errorf("firmware: sign: the signer returned a signature that does not verify: %w", err)
	}

	unprotAt := len(out)
	out = le.AppendUint16(out, UnprotectedMagic)
	out = le.AppendUint16(out, 0) // it_tlv_tot, filled below
	out = appendTLV(out, TLVSHA256, digest[:])
	out = appendTLV(out, TLVKeyHash, keyHash[:])
	out = appendTLV(out, sigType, sig)
	if len(out)-unprotAt > 0xffff {
		return nil, fmt.Errorf("firmware: sign: unprotected area of %d bytes", len(out)-unprotAt)
	}
	le.PutUint16(out[unprotAt+2:], uint16(len(out)-unprotAt))
	return out, nil
}

func appendTLV(b []byte, typ uint16, v []byte) []byte {
	b = binary.LittleEndian.AppendUint16(b, typ)
	b = binary.LittleEndian.AppendUint16(b, uint16(len(v)))
	return append(b, v...)
}

// KeyHash is the KEYHASH TLV of images signed by pub: SHA-256 of its DER
// SubjectPublicKeyInfo, as imgtool computes it and MCUboot compares it.
func KeyHash(pub crypto.PublicKey) ([32]byte, error) {
	if _, err := signatureType(pub); err != nil {
		return [32]byte{}, err
	}
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return [32]byte{}, fmt.Errorf("firmware: %w: %v", ErrUnsupportedKey, err)
	}
	return sha256.Sum256(der), nil
}

// signatureType maps a public key to the TLV its signatures go in.
func signatureType(pub crypto.PublicKey) (uint16, error) {
	switch k := pub.(type) {
	case ed25519.PublicKey:
		if len(k) == ed25519.PublicKeySize {
			return TLVEd25519, nil
		}
	case *ecdsa.PublicKey:
		if k.Curve == elliptic.P256() {
			return TLVECDSASig, nil
		}
		return 0, fmt.Errorf("firmware: %w: ECDSA on %s (want P-256)", ErrUnsupportedKey, k.Curve.Params().Name)
	}
	return 0, fmt.Errorf("firmware: %w: %T (want Ed25519 or ECDSA P-256)", ErrUnsupportedKey, pub)
}

// checkSignature verifies sig over digest; the digest is the message for
// Ed25519 and the hash for ECDSA.
func checkSignature(pub crypto.PublicKey, sigType uint16, digest, sig []byte) error {
	switch k := pub.(type) {
	case ed25519.PublicKey:
		if sigType != TLVEd25519 {
			return fmt.Errorf("%w: %s signature for an Ed25519 key", ErrBadSignature, tlvName(sigType))
		}
		if len(sig) != ed25519.SignatureSize || !ed25519.Verify(k, digest, sig) {
			return fmt.Errorf("%w: Ed25519 signature does not verify", ErrBadSignature)
		}
		return nil
	case *ecdsa.PublicKey:
		if sigType != TLVECDSASig {
			return fmt.Errorf("%w: %s signature for an ECDSA key", ErrBadSignature, tlvName(sigType))
		}
		if !ecdsa.VerifyASN1(k, digest, sig) {
			return fmt.Errorf("%w: ECDSA P-256 signature does not verify", ErrBadSignature)
		}
		return nil
	}
	return fmt.Errorf("%w: %T", ErrUnsupportedKey, pub)
}
