package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"os"
	"text/tabwriter"

	"sluice/config"
	"sluice/headend"
	"sluice/keys"
	"sluice/kms"
	"sluice/kms/filekms"
	"sluice/kms/kmsconfig"
	"sluice/kms/pkcs11kms"
	"sluice/voucher"
)

// cmdKeys is `sluice keys`: the key ceremony's tools over the configured
// key manager. Delivering rotated keys to meters is the job of campaigns.
func cmdKeys(ctx context.Context, sio stdio, args []string) error {
	return subcommands(ctx, sio, "keys", args, []command{
		{"init", "create the key store (file backend) and the standard keys", cmdKeysInit},
		{"list", "list every key version", cmdKeysList},
		{"pubkey", "print the public key of a signing key", cmdKeysPubkey},
		{"rotate", "create the next version of a key", cmdKeysRotate},
		{"import-sts", "import STS vending keys from the utility's key file", cmdKeysImportSTS},
		{"campaign", "key-rotation campaigns: start, run, status, report, deliver", cmdKeysCampaign},
	})
}

// kmsFlags are the flags every keys subcommand takes to reach the KMS.
type kmsFlags struct {
	backend, keystore, passFile *string
	p11Module, p11Token, p11PIN *string
	// cf locates the head-end: its key store by default, and its database,
	// which records every key operation in the audit log.
	cf *configFlags
}

func addKMSFlags(fs *flag.FlagSet) *kmsFlags {
	return &kmsFlags{
		cf:        addConfigFlags(fs, false),
		backend:   fs.String("backend", "", "key manager: file or pkcs11 (default: pkcs11 when --pkcs11-module is set, else file)"),
		keystore:  fs.String("keystore", "", "sealed key store `file` (file backend)"),
		passFile:  fs.String("passphrase-file", "", "`file` holding the key store passphrase (default: $SLUICE_KMS_PASSPHRASE)"),
		p11Module: fs.String("pkcs11-module", "", "PKCS#11 library `path` (pkcs11 backend)"),
		p11Token:  fs.String("pkcs11-token", "", "PKCS#11 token `label`"),
		p11PIN:    fs.String("pkcs11-pin", "", "PKCS#11 user PIN (default: $SLUICE_PKCS11_PIN)"),
	}
}

// open resolves the flags into a kmsconfig.Config and opens the key
// manager; create lets the file backend make a new store.
func (f *kmsFlags) open(ctx context.Context, sio stdio, create bool) (kms.KeyManager, error) {
	cfg, err := f.cf.load(sio)
	if err != nil {
		return nil, err
	}
	km, err := f.openKMS(ctx, sio, cfg, create)
	if err != nil {
		return nil, err
	}
	return withAudit(ctx, sio, cfg, km), nil
}

// openKMS opens the key manager the flags name, defaulting to the
// configured head-end's.
func (f *kmsFlags) openKMS(ctx context.Context, sio stdio, cfg config.Config, create bool) (kms.KeyManager, error) {
	if *f.backend == "" && *f.keystore == "" && *f.p11Module == "" {
		// No key manager named: the head-end's, from its configuration.
		if cfg.KMS.Backend == "file" && !create {
			if _, err := os.Stat(cfg.KMS.File); err != nil {
				return nil, fmt.Errorf("no key store at %s: name one with --keystore, or the head-end's with --data or --config", cfg.KMS.File)
			}
		}
		return headend.OpenKMS(ctx, cfg, filekms.Options{})
	}
	c := kmsconfig.Config{Backend: *f.backend, Create: create}
	if c.Backend == "" {
		c.Backend = kmsconfig.File
		if *f.p11Module != "" {
			c.Backend = kmsconfig.PKCS11
		}
	}
	switch c.Backend {
	case kmsconfig.File:
		if *f.keystore == "" {
			return nil, errors.New("--keystore is required with the file backend")
		}
		c.Path = *f.keystore
		if *f.passFile != "" {
			p, err := kmsconfig.ReadSecret(*f.passFile)
			if err != nil {
				return nil, fmt.Errorf("--passphrase-file: %w", err)
			}
			c.Passphrase = p
		} else if p := sio.getenv("SLUICE_KMS_PASSPHRASE"); p != "" {
			c.Passphrase = []byte(p)
		} else {
			return nil, errors.New("no passphrase: give --passphrase-file or set SLUICE_KMS_PASSPHRASE")
		}
	case kmsconfig.PKCS11:
		pin := *f.p11PIN
		if pin == "" {
			pin = sio.getenv("SLUICE_PKCS11_PIN")
		}
		if *f.p11Module == "" || *f.p11Token == "" || pin == "" {
			return nil, errors.New("the pkcs11 backend needs --pkcs11-module, --pkcs11-token and --pkcs11-pin (or SLUICE_PKCS11_PIN)")
		}
		c.PKCS11 = pkcs11kms.Config{Module: *f.p11Module, Token: *f.p11Token, PIN: pin}
	default:
		return nil, fmt.Errorf("--backend %q is not file or pkcs11", c.Backend)
	}
	return kmsconfig.Open(ctx, c)
}

func cmdKeysInit(ctx context.Context, sio stdio, args []string) error {
	fs := newFlags(sio, "keys init", "[flags]")
	kf := addKMSFlags(fs)
	fw := fs.String("firmware-kind", string(kms.Ed25519), "kind of the firmware-signing key: ed25519 or ecdsa-p256")
	if err := parseArgs(fs, args, 0); err != nil {
		return err
	}
	km, err := kf.open(ctx, sio, true)
	if err != nil {
		return err
	}
	defer km.Close()
	created, err := keys.Init(ctx, km, kms.Kind(*fw))
	for _, info := range created {
		fmt.Fprintf(sio.out, "created %s@%d (%s)\n", info.Name, info.Version, info.Kind)
	}
	if err != nil {
		return err
	}
	if len(created) == 0 {
		fmt.Fprintln(sio.out, "all standard keys already exist")
	}
	return nil
}

func cmdKeysList(ctx context.Context, sio stdio, args []string) error {
	fs := newFlags(sio, "keys list", "[flags]")
	kf := addKMSFlags(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	km, err := kf.open(ctx, sio, false)
	if err != nil {
		return err
	}
	defer km.Close()
	list, err := km.Keys(ctx)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(sio.out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tVERSION\tKIND\tCREATED\tVOUCHER KEY ID")
	for _, k := range list {
		created, id := "-", "-"
		if !k.Created.IsZero() {
			created = k.Created.UTC().Format("2006-01-02T15:04:05Z")
		}
		if pub, ok := k.Public.(ed25519.PublicKey); ok {
			id = fmt.Sprintf("%08x", voucher.KeyID(pub))
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\n", k.Name, k.Version, k.Kind, created, id)
	}
	return tw.Flush()
}

func cmdKeysPubkey(ctx context.Context, sio stdio, args []string) error {
	fs := newFlags(sio, "keys pubkey", "[flags] NAME[@VERSION]")
	kf := addKMSFlags(fs)
	format := fs.String("format", "pem", "output: pem (PKIX) or hex (raw Ed25519 key or uncompressed P-256 point)")
	if err := parseArgs(fs, args, 1); err != nil {
		return err
	}
	ref, err := kms.ParseRef(fs.Arg(0))
	if err != nil {
		return err
	}
	km, err := kf.open(ctx, sio, false)
	if err != nil {
		return err
	}
	defer km.Close()
	pub, err := km.PublicKey(ctx, ref)
	if err != nil {
		return err
	}
	switch *format {
	case "pem":
		der, err := x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			return err
		}
		return pem.Encode(sio.out, &pem.Block{Type: "PUBLIC KEY", Bytes: der})
	case "hex":
		switch p := pub.(type) {
		case ed25519.PublicKey:
			fmt.Fprintln(sio.out, hex.EncodeToString(p))
		case *ecdsa.PublicKey:
			b, err := p.Bytes()
			if err != nil {
				return err
			}
			fmt.Fprintln(sio.out, hex.EncodeToString(b))
		}
		return nil
	}
	return fmt.Errorf("--format %q is not pem or hex", *format)
}

func cmdKeysRotate(ctx context.Context, sio stdio, args []string) error {
	fs := newFlags(sio, "keys rotate", "[flags] NAME")
	kf := addKMSFlags(fs)
	if err := parseArgs(fs, args, 1); err != nil {
		return err
	}
	km, err := kf.open(ctx, sio, false)
	if err != nil {
		return err
	}
	defer km.Close()
	info, err := km.Rotate(ctx, fs.Arg(0))
	if err != nil {
		return err
	}
	fmt.Fprintf(sio.out, "created %s@%d (%s); earlier versions stay usable until a campaign moves every meter\n",
		info.Name, info.Version, info.Kind)
	return nil
}

func cmdKeysImportSTS(ctx context.Context, sio stdio, args []string) error {
	fs := newFlags(sio, "keys import-sts", "[flags] KEYFILE")
	kf := addKMSFlags(fs)
	if err := parseArgs(fs, args, 1); err != nil {
		return err
	}
	data, err := os.ReadFile(fs.Arg(0))
	if err != nil {
		return err
	}
	vks, err := keys.ParseVendingKeys(data)
	clear(data)
	if err != nil {
		return err
	}
	km, err := kf.open(ctx, sio, false)
	if err != nil {
		return err
	}
	defer km.Close()
	done, err := keys.ImportVendingKeys(ctx, km, vks)
	for _, info := range done {
		fmt.Fprintf(sio.out, "imported %s (%s)\n", info.Name, info.Kind)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(sio.out, "%d of %d keys imported, %d already present\n", len(done), len(vks), len(vks)-len(done))
	return nil
}
