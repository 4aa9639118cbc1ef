package main

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"

	"sluice/config"
	"sluice/firmware"
	"sluice/kms"
	"sluice/kms/kmsconfig"
	"sluice/kms/pkcs11kms"
)

// cmdFirmware groups the firmware signing tools.
func cmdFirmware(ctx context.Context, sio stdio, args []string) error {
	return subcommands(ctx, sio, "firmware", args, []command{
		{"keygen", "generate a firmware signing key pair (PEM files)", cmdFirmwareKeygen},
		{"sign", "wrap an application binary into a signed MCUboot image", cmdFirmwareSign},
		{"verify", "verify an image (exit 0 valid, 1 invalid with the reason)", cmdFirmwareVerify},
		{"inspect", "print the header and TLVs of an image", cmdFirmwareInspect},
		{"scan", "fail if an image contains key material of the fleet", cmdFirmwareScan},
	})
}

// listFlag is a repeatable flag that also splits on commas.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }
func (l *listFlag) Set(s string) error {
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			*l = append(*l, p)
		}
	}
	return nil
}

// parseAnywhere parses flags that may come before or after the positional
// arguments and returns the positionals; want is their exact number.
func parseAnywhere(fs *flag.FlagSet, args []string, want int) ([]string, error) {
	var pos []string
	for {
		if err := parseFlags(fs, args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if len(pos) != want {
		fs.Usage()
		return nil, errUsage
	}
	return pos, nil
}

func cmdFirmwareKeygen(_ context.Context, sio stdio, args []string) error {
	fs := newFlags(sio, "firmware keygen", "--key PRIVATE.pem --pubkey PUBLIC.pem [--type ed25519|p256]")
	keyPath := fs.String("key", "", "private key file to create (PEM PKCS#8, mode 0600)")
	pubPath := fs.String("pubkey", "", "public key file to create (PEM PKIX)")
	typ := fs.String("type", "ed25519", "key type: ed25519 or p256")
	if _, err := parseAnywhere(fs, args, 0); err != nil {
		return err
	}
	if *keyPath == "" || *pubPath == "" {
		fs.Usage()
		return errUsage
	}
	var priv crypto.Signer
	var err error
	switch *typ {
	case "ed25519":
		_, priv, err = ed25519.GenerateKey(rand.Reader)
	case "p256":
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	default:
		return fmt.Errorf("--type %q: want ed25519 or p256", *typ)
	}
	if err != nil {
		return err
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return err
	}
	pubDER, err := x509.MarshalPKIXPublicKey(priv.Public())
	if err != nil {
		return err
	}
	// O_EXCL: never overwrite a signing key.
	if err := writeNew(*keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return err
	}
	if err := writeNew(*pubPath, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}), 0o644); err != nil {
		return err
	}
	kh, _ := firmware.KeyHash(priv.Public())
	fmt.Fprintf(sio.out, "%s key written to %s (public %s), key hash %x\n", *typ, *keyPath, *pubPath, kh)
	return nil
}

func writeNew(path string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func loadSigner(path string) (crypto.Signer, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(data)
	if blk == nil || blk.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("%s: want a PEM \"PRIVATE KEY\" (PKCS#8) block", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%s: %T is not a signing key", path, k)
	}
	return s, nil
}

func loadPublicKey(path string) (crypto.PublicKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(data)
	if blk == nil || blk.Type != "PUBLIC KEY" {
		return nil, fmt.Errorf("%s: want a PEM \"PUBLIC KEY\" (PKIX) block", path)
	}
	k, err := x509.ParsePKIXPublicKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}

func cmdFirmwareSign(ctx context.Context, sio stdio, args []string) error {
	fs := newFlags(sio, "firmware sign", "(--key KEY.pem | --kms-key NAME[@V] [--config FILE]) --version X.Y.Z[+B] --security-counter N [--scan-keys FILES] IN OUT")
	keyPath := fs.String("key", "", "signing key (PEM PKCS#8, Ed25519 or ECDSA P-256)")
	kmsKey := fs.String("kms-key", "", "sign with this KMS key instead, NAME or NAME@VERSION (Ed25519 or ECDSA P-256)")
	cfgPath := fs.String("config", "", "Sluice configuration file locating the KMS, for --kms-key (SLUICE_* variables apply)")
	version := fs.String("version", "", "image version MAJOR.MINOR.REVISION[+BUILD]")
	counter := fs.String("security-counter", "", "security counter (anti-rollback), 0..4294967295")
	loadAddr := fs.String("load-addr", "0", "RAM load address (non-zero sets RAM_LOAD)")
	hdrSize := fs.Uint("header-size", firmware.HeaderSize, "ih_hdr_size (32, or e.g. 0x200 for Zephyr)")
	var scanKeys listFlag
	fs.Var(&scanKeys, "scan-keys", "refuse to sign if the application contains key material from these files (repeatable)")
	pos, err := parseAnywhere(fs, args, 2)
	if err != nil {
		return err
	}
	if (*keyPath == "") == (*kmsKey == "") || *version == "" || *counter == "" {
		fmt.Fprintln(sio.err, "sluice firmware sign: one of --key or --kms-key, and --version and --security-counter, are required")
		return errUsage
	}
	v, err := firmware.ParseVersion(*version)
	if err != nil {
		return err
	}
	n, err := strconv.ParseUint(*counter, 0, 32)
	if err != nil {
		return fmt.Errorf("--security-counter: %w", err)
	}
	la, err := strconv.ParseUint(*loadAddr, 0, 32)
	if err != nil {
		return fmt.Errorf("--load-addr: %w", err)
	}
	if *hdrSize > 0xffff {
		return fmt.Errorf("--header-size %d too large", *hdrSize)
	}
	app, err := os.ReadFile(pos[0])
	if err != nil {
		return err
	}
	opts := firmware.SignOptions{Version: v, SecurityCounter: uint32(n), LoadAddr: uint32(la), HeaderSize: uint16(*hdrSize)}
	var img []byte
	if *kmsKey != "" {
		img, err = signWithKMS(ctx, sio, *cfgPath, *kmsKey, app, opts)
	} else {
		var signer crypto.Signer
		if signer, err = loadSigner(*keyPath); err == nil {
			img, err = firmware.Sign(app, signer, opts)
		}
	}
	if err != nil {
		return err
	}
	if len(scanKeys) > 0 {
		// A signing key file is always among the secrets looked for.
		if *keyPath != "" {
			scanKeys = append(scanKeys, *keyPath)
		}
		if err := scanImage(sio, img, scanKeys); err != nil {
			return err
		}
	}
	if err := os.WriteFile(pos[1], img, 0o644); err != nil {
		return err
	}
	fmt.Fprintf(sio.out, "%s: version %v, security counter %d, %d bytes\n", pos[1], v, n, len(img))
	return nil
}

// signWithKMS signs through the configured key manager; the private key
// never leaves it. The signature goes through KeyManager.Sign, which serves
// Ed25519 and ECDSA P-256 keys alike (see firmware.SignMessages).
func signWithKMS(ctx context.Context, sio stdio, cfgPath, keyRef string, app []byte, opts firmware.SignOptions) ([]byte, error) {
	ref := kms.KeyRef{Name: keyRef}
	if name, ver, ok := strings.Cut(keyRef, "@"); ok {
		n, err := strconv.Atoi(ver)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("--kms-key %q: version must be a positive number", keyRef)
		}
		ref = kms.KeyRef{Name: name, Version: n}
	}
	cfg, err := config.Load(cfgPath, sio.getenv, nil)
	if err != nil {
		return nil, err
	}
	kc := kmsconfig.Config{Backend: cfg.KMS.Backend, Path: cfg.KMS.File}
	switch cfg.KMS.Backend {
	case kmsconfig.PKCS11:
		pin := []byte(cfg.KMS.PKCS11.PIN)
		if len(pin) == 0 {
			if pin, err = kmsconfig.ReadSecret(cfg.KMS.PKCS11.PINFile); err != nil {
				return nil, err
			}
		}
		kc.PKCS11 = pkcs11kms.Config{Module: cfg.KMS.PKCS11.Module, Token: cfg.KMS.PKCS11.Token, PIN: string(pin)}
	default:
		kc.Passphrase = []byte(cfg.KMS.Passphrase)
		if len(kc.Passphrase) == 0 {
			if kc.Passphrase, err = kmsconfig.ReadSecret(cfg.KMS.PassphraseFile); err != nil {
				return nil, err
			}
		}
	}
	km, err := kmsconfig.Open(ctx, kc)
	if err != nil {
		return nil, err
	}
	defer km.Close()
	info, err := km.Key(ctx, ref) // pin the version for the whole signature
	if err != nil {
		return nil, err
	}
	return firmware.SignMessages(app, info.Public, func(msg []byte) ([]byte, error) {
		return km.Sign(ctx, info.Ref(), msg)
	}, opts)
}

func cmdFirmwareVerify(_ context.Context, sio stdio, args []string) error {
	fs := newFlags(sio, "firmware verify", "--pubkey PUBLIC.pem [--pubkey ...] FILE")
	var pubs listFlag
	fs.Var(&pubs, "pubkey", "trusted public key (PEM PKIX; repeatable for a rotation)")
	pos, err := parseAnywhere(fs, args, 1)
	if err != nil {
		return err
	}
	if len(pubs) == 0 {
		fmt.Fprintln(sio.err, "sluice firmware verify: --pubkey is required")
		return errUsage
	}
	var keys []crypto.PublicKey
	for _, p := range pubs {
		k, err := loadPublicKey(p)
		if err != nil {
			return err
		}
		keys = append(keys, k)
	}
	v, err := firmware.NewVerifier(keys...)
	if err != nil {
		return err
	}
	b, err := os.ReadFile(pos[0])
	if err != nil {
		return err
	}
	im, err := v.Verify(b)
	if err != nil {
		fmt.Fprintf(sio.err, "%s: INVALID: %v\n", pos[0], err)
		return exitError{1}
	}
	fmt.Fprintf(sio.out, "%s: valid, version %v, security counter %d, signed by key %x\n", pos[0], im.Header.Version, im.SecurityCounter, im.KeyHash)
	return nil
}

type inspectTLV struct {
	Offset int    `json:"offset"`
	Type   string `json:"type"`
	Code   uint16 `json:"code"`
	Length int    `json:"length"`
	Value  string `json:"value"`
}

type inspectJSON struct {
	Size             int          `json:"size"`
	Magic            string       `json:"magic"`
	LoadAddr         uint32       `json:"load_addr"`
	HeaderSize       uint16       `json:"header_size"`
	ProtectedTLVSize uint16       `json:"protected_tlv_size"`
	ImageSize        uint32       `json:"image_size"`
	Flags            uint32       `json:"flags"`
	Version          string       `json:"version"`
	SecurityCounter  uint32       `json:"security_counter"`
	Hash             string       `json:"sha256"`
	KeyHash          string       `json:"key_hash"`
	Signature        string       `json:"signature_type"`
	Protected        []inspectTLV `json:"protected_tlvs"`
	Unprotected      []inspectTLV `json:"unprotected_tlvs"`
	Verified         bool         `json:"verified"`
}

func cmdFirmwareInspect(_ context.Context, sio stdio, args []string) error {
	fs := newFlags(sio, "firmware inspect", "FILE [--json]")
	asJSON := fs.Bool("json", false, "print a JSON object")
	pos, err := parseAnywhere(fs, args, 1)
	if err != nil {
		return err
	}
	b, err := os.ReadFile(pos[0])
	if err != nil {
		return err
	}
	im, err := firmware.Parse(b)
	if err != nil {
		fmt.Fprintf(sio.err, "%s: MALFORMED: %v\n", pos[0], err)
		return exitError{1}
	}
	conv := func(ts []firmware.TLV) []inspectTLV {
		out := []inspectTLV{}
		for _, t := range ts {
			out = append(out, inspectTLV{t.Offset, firmware.TLVName(t.Type), t.Type, len(t.Value), hex.EncodeToString(t.Value)})
		}
		return out
	}
	h := im.Header
	j := inspectJSON{
		Size: len(b), Magic: fmt.Sprintf("0x%08x", firmware.ImageMagic), LoadAddr: h.LoadAddr, HeaderSize: h.HeaderSize,
		ProtectedTLVSize: h.ProtectedTLVSize, ImageSize: h.ImageSize, Flags: h.Flags, Version: h.Version.String(),
		SecurityCounter: im.SecurityCounter, Hash: hex.EncodeToString(im.Hash[:]), KeyHash: hex.EncodeToString(im.KeyHash[:]),
		Signature: firmware.TLVName(im.SigType), Protected: conv(im.Protected), Unprotected: conv(im.Unprotected),
	}
	if *asJSON {
		e := json.NewEncoder(sio.out)
		e.SetIndent("", "  ")
		return e.Encode(j)
	}
	w := sio.out
	fmt.Fprintf(w, "%s: %d bytes (structure checked; signature NOT verified, use firmware verify)\n", pos[0], len(b))
	fmt.Fprintf(w, "header:   magic %s, load_addr 0x%08x, hdr_size %d, protect_tlv_size %d, img_size %d, flags 0x%08x\n",
		j.Magic, h.LoadAddr, h.HeaderSize, h.ProtectedTLVSize, h.ImageSize, h.Flags)
	fmt.Fprintf(w, "version:  %s\nsec_cnt:  %d\n", j.Version, im.SecurityCounter)
	for _, area := range []struct {
		name string
		tlvs []inspectTLV
	}{{"protected", j.Protected}, {"unprotected", j.Unprotected}} {
		fmt.Fprintf(w, "%s TLVs:\n", area.name)
		for _, t := range area.tlvs {
			fmt.Fprintf(w, "  @%-6d %-9s (0x%02x) len %-3d %s\n", t.Offset, t.Type, t.Code, t.Length, t.Value)
		}
	}
	return nil
}

func cmdFirmwareScan(_ context.Context, sio stdio, args []string) error {
	fs := newFlags(sio, "firmware scan", "--keys FILE[,FILE...] IMAGE")
	var keys listFlag
	fs.Var(&keys, "keys", "files of fleet key material: PEM private keys, JSON key-store export, hex/base64 lines, raw keys (repeatable)")
	pos, err := parseAnywhere(fs, args, 1)
	if err != nil {
		return err
	}
	if len(keys) == 0 {
		fmt.Fprintln(sio.err, "sluice firmware scan: --keys is required")
		return errUsage
	}
	img, err := os.ReadFile(pos[0])
	if err != nil {
		return err
	}
	if err := scanImage(sio, img, keys); err != nil {
		return err
	}
	fmt.Fprintf(sio.out, "%s: no key material found (%d bytes scanned)\n", pos[0], len(img))
	return nil
}

// scanImage reports findings on stderr and returns exitError{1} if any.
func scanImage(sio stdio, img []byte, files []string) error {
	var secrets []firmware.Secret
	seen := map[string]bool{}
	for _, f := range files {
		if seen[f] {
			continue
		}
		seen[f] = true
		data, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		s, err := firmware.ParseSecrets(f, data)
		if err != nil {
			return err
		}
		secrets = append(secrets, s...)
	}
	found := firmware.Scan(img, secrets)
	if len(found) == 0 {
		return nil
	}
	for _, f := range found {
		fmt.Fprintf(sio.err, "LEAK: %v\n", f)
	}
	fmt.Fprintf(sio.err, "image refused: %d occurrence(s) of key material\n", len(found))
	return exitError{1}
}
