package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"sluice/card"
	"sluice/card/pcsc"
	"sluice/card/vpcd"
	"sluice/keys"
	"sluice/kms"
	"sluice/voucher"
)

// cmdCard groups the prepaid card tools of the vending office (issue, load,
// inspect over PC/SC) and the card emulator that puts a card into pcscd's
// virtual reader.
func cmdCard(ctx context.Context, sio stdio, args []string) error {
	return subcommands(ctx, sio, "card", args, []command{
		{"issue", "personalize a blank card for one meter", cmdCardIssue},
		{"load", "write a signed voucher onto a card", cmdCardLoad},
		{"inspect", "show a card's identity and, with its key, vouchers, receipts and feedback", cmdCardInspect},
		{"rekey", "move a card to its meter's new card key version", cmdCardRekey},
		{"emulate", "run an emulated card in the vpcd virtual reader", cmdCardEmulate},
	})
}

// readerFlags are the flags every PC/SC command shares.
type readerFlags struct {
	reader string
	wait   time.Duration
}

func (r *readerFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&r.reader, "reader", vpcd.ReaderName(0), "PC/SC reader name")
	fs.DurationVar(&r.wait, "wait", 10*time.Second, "how long to wait for a card in the reader")
}

func (r *readerFlags) connect(ctx context.Context) (*pcsc.Reader, error) {
	ctx, cancel := context.WithTimeout(ctx, r.wait)
	defer cancel()
	return pcsc.Connect(ctx, r.reader)
}

// identify connects to the card in the reader and reads its public
// identity; the caller closes the reader.
func (r *readerFlags) identify(ctx context.Context) (*pcsc.Reader, card.Identity, error) {
	rd, err := r.connect(ctx)
	if err != nil {
		return nil, card.Identity{}, err
	}
	id, err := card.Identify(rd)
	if err != nil {
		rd.Close()
		return nil, card.Identity{}, err
	}
	return rd, id, nil
}

// meterKeyFlags say where a meter's card key comes from: a key file (tests,
// the emulator's world), or the KMS, which derives it from the meter root
// exactly as provisioning does (keys.MeterKey, purpose "card").
type meterKeyFlags struct {
	file *string
	root *int
	kms  *kmsFlags
}

func addMeterKeyFlags(fs *flag.FlagSet) *meterKeyFlags {
	return &meterKeyFlags{
		file: fs.String("meter-card-key-file", "", "`file` with the meter's card key, 32 hex digits (instead of the KMS)"),
		// After a meter-root rotation, meters provisioned before it still
		// hold card keys under their own root (the meter row's
		// key_root_version; sluice meter provision issue prints it).
		root: fs.Int("meter-root-version", 0, "meter-root `version` the meter's keys derive from (0: newest)"),
		kms:  addKMSFlags(fs),
	}
}

func (f *meterKeyFlags) given() bool {
	return *f.file != "" || *f.kms.keystore != "" || *f.kms.p11Module != ""
}

// key returns the card key of meter id at key version v.
func (f *meterKeyFlags) key(ctx context.Context, sio stdio, id uint64, v uint8) ([]byte, error) {
	if *f.file != "" {
		return readKey("meter-card-key-file", *f.file)
	}
	if !f.given() {
		return nil, errors.New("no meter card key: give --meter-card-key-file, or the KMS (--keystore or --pkcs11-module)")
	}
	km, err := f.kms.open(ctx, sio, false)
	if err != nil {
		return nil, err
	}
	defer km.Close()
	k, _, err := keys.MeterKey(ctx, km, kms.KeyRef{Name: keys.MeterRoot, Version: *f.root}, id, keys.Card, uint16(v))
	return k, err
}

// readKey reads a 16-byte AES key written as 32 hex digits in a file.
func readKey(flagName, path string) ([]byte, error) {
	if path == "" {
		return nil, fmt.Errorf("--%s: required", flagName)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--%s: %w", flagName, err)
	}
	k, err := hex.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(k) != card.KeySize {
		return nil, fmt.Errorf("--%s: %s does not hold %d hex-encoded bytes", flagName, path, card.KeySize)
	}
	return k, nil
}

func printJSON(sio stdio, v any) error {
	enc := json.NewEncoder(sio.out)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

type identityJSON struct {
	UID        string `json:"uid"`
	Lifecycle  string `json:"lifecycle"`
	Kind       string `json:"kind,omitempty"`
	MeterID    uint64 `json:"meter_id,omitempty"`
	KeyVersion uint8  `json:"key_version,omitempty"`
	Issued     string `json:"issued,omitempty"`
}

func identityOut(id card.Identity) identityJSON {
	j := identityJSON{UID: id.UID.String(), Lifecycle: id.Lifecycle.String(), MeterID: id.MeterID, KeyVersion: id.KeyVersion}
	if id.Lifecycle == card.Personalized {
		j.Kind = id.Kind.String()
		j.Issued = id.Issued.Format(time.RFC3339)
	}
	return j
}

func cmdCardIssue(ctx context.Context, sio stdio, args []string) error {
	fs := newFlags(sio, "card issue", "--batch-key-file F (--meter-card-key-file F | KMS flags) --meter ID [--kind customer|engineering]")
	var rf readerFlags
	rf.register(fs)
	batchFile := fs.String("batch-key-file", "", "file with the card batch (transport) key, 32 hex digits")
	mk := addMeterKeyFlags(fs)
	meterID := fs.Uint64("meter", 0, "meter ID the card is bound to")
	kindName := fs.String("kind", "customer", "card kind: customer or engineering")
	keyVersion := fs.Uint("key-version", 1, "version of the meter card key")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	batch, err := readKey("batch-key-file", *batchFile)
	if err != nil {
		return err
	}
	kind, err := card.ParseKind(*kindName)
	if err != nil {
		return fmt.Errorf("--kind: %w", err)
	}
	if *meterID == 0 {
		return errors.New("--meter: required")
	}
	if *keyVersion > 255 {
		return errors.New("--key-version: at most 255")
	}
	mkey, err := mk.key(ctx, sio, *meterID, uint8(*keyVersion))
	if err != nil {
		return err
	}
	r, err := rf.connect(ctx)
	if err != nil {
		return err
	}
	defer r.Close()
	id, err := card.Issue(r, batch, mkey, card.Personalization{
		KeyVersion: uint8(*keyVersion), Kind: kind, MeterID: *meterID, Issued: time.Now(),
	}, rand.Reader)
	if err != nil {
		return err
	}
	return printJSON(sio, identityOut(id))
}

// readVoucher reads a voucher file: hex text (as the vending system prints
// it) or raw bytes.
func readVoucher(path string) ([]byte, error) {
	if path == "" {
		return nil, errors.New("--voucher: required")
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--voucher: %w", err)
	}
	if h, err := hex.DecodeString(strings.Join(strings.Fields(string(b)), "")); err == nil {
		b = h
	}
	if _, err := voucher.Parse(b); err != nil {
		return nil, fmt.Errorf("--voucher: %s: %w", path, err)
	}
	return b, nil
}

func cmdCardLoad(ctx context.Context, sio stdio, args []string) error {
	fs := newFlags(sio, "card load", "(--meter-card-key-file F | KMS flags) --voucher FILE")
	var rf readerFlags
	rf.register(fs)
	mk := addMeterKeyFlags(fs)
	vfile := fs.String("voucher", "", "voucher file (hex or binary)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if !mk.given() {
		return errors.New("no meter card key: give --meter-card-key-file, or the KMS (--keystore or --pkcs11-module)")
	}
	v, err := readVoucher(*vfile)
	if err != nil {
		return err
	}
	pv, _ := voucher.Parse(v)
	r, id, err := rf.identify(ctx)
	if err != nil {
		return err
	}
	defer r.Close()
	if id.Lifecycle != card.Personalized || id.MeterID != pv.MeterID {
		return fmt.Errorf("%w: %v card for meter %d, voucher for meter %d", card.ErrWrongCard, id.Lifecycle, id.MeterID, pv.MeterID)
	}
	mkey, err := mk.key(ctx, sio, id.MeterID, id.KeyVersion)
	if err != nil {
		return err
	}
	s, err := card.Open(r, pv.MeterID, mkey, rand.Reader)
	if err != nil {
		return err
	}
	slot, err := s.LoadVoucher(v)
	if err != nil {
		return err
	}
	return printJSON(sio, map[string]any{"uid": s.Identity().UID.String(), "meter_id": pv.MeterID, "sequence": pv.Sequence, "slot": slot})
}

type slotJSON struct {
	Slot     int    `json:"slot"`
	State    string `json:"state"`
	Sequence uint32 `json:"sequence"`
	Voucher  string `json:"voucher"`
	Kind     string `json:"kind,omitempty"`
	Quantity uint32 `json:"quantity,omitempty"`
	Unit     string `json:"unit,omitempty"`
	Expires  string `json:"expires,omitempty"`
}

type receiptJSON struct {
	Sequence uint32 `json:"sequence"`
	Status   string `json:"status"`
	Amount   int64  `json:"amount"`
	Balance  int64  `json:"balance"`
	At       string `json:"at"`
}

func cmdCardInspect(ctx context.Context, sio stdio, args []string) error {
	fs := newFlags(sio, "card inspect", "[--meter-card-key-file F | KMS flags]")
	var rf readerFlags
	rf.register(fs)
	mk := addMeterKeyFlags(fs) // without a key only the public identity is shown
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	r, id, err := rf.identify(ctx)
	if err != nil {
		return err
	}
	defer r.Close()
	out := map[string]any{"identity": identityOut(id)}
	if !mk.given() || id.Lifecycle != card.Personalized {
		return printJSON(sio, out)
	}
	mkey, err := mk.key(ctx, sio, id.MeterID, id.KeyVersion)
	if err != nil {
		return err
	}
	s, err := card.Open(r, id.MeterID, mkey, rand.Reader)
	if err != nil {
		return err
	}
	s.PreferExtended()
	slots, err := s.ReadVouchers()
	if err != nil {
		return err
	}
	vs := []slotJSON{}
	for _, sl := range slots {
		j := slotJSON{Slot: sl.Index, State: sl.State.String(), Sequence: sl.Sequence, Voucher: hex.EncodeToString(sl.Voucher)}
		if v, err := voucher.Parse(sl.Voucher); err == nil {
			j.Kind, j.Expires = v.Kind.String(), v.Expires.Format(time.RFC3339)
			if v.Kind == voucher.KindCredit {
				j.Quantity, j.Unit = v.Quantity, v.Unit.String()
			}
		}
		vs = append(vs, j)
	}
	out["vouchers"] = vs
	rs, err := s.ReadReceipts()
	if err != nil {
		return err
	}
	rj := []receiptJSON{}
	for _, r := range rs {
		rj = append(rj, receiptJSON{r.Sequence, r.Status.String(), r.Amount, r.Balance, r.At.Format(time.RFC3339)})
	}
	out["receipts"] = rj
	if f, ok, err := s.ReadFeedback(); err != nil {
		return err
	} else if ok {
		out["feedback"] = map[string]any{
			"at": f.At.Format(time.RFC3339), "total_litres": f.TotalLitres, "balance": f.Balance,
			"tamper": fmt.Sprintf("%#08x", f.Tamper), "status": fmt.Sprintf("%#08x", f.Status),
		}
	}
	return printJSON(sio, out)
}

func cmdCardRekey(ctx context.Context, sio stdio, args []string) error {
	fs := newFlags(sio, "card rekey", "(--meter-card-key-file OLD --new-meter-card-key-file NEW | KMS flags) --new-key-version N")
	var rf readerFlags
	rf.register(fs)
	mk := addMeterKeyFlags(fs)
	newFile := fs.String("new-meter-card-key-file", "", "`file` with the meter's new card key (with --meter-card-key-file)")
	newVersion := fs.Uint("new-key-version", 0, "the meter's new card key version (1..255)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *newVersion == 0 || *newVersion > 255 {
		return errors.New("--new-key-version: required, 1..255")
	}
	if !mk.given() {
		return errors.New("no meter card key: give --meter-card-key-file and --new-meter-card-key-file, or the KMS (--keystore or --pkcs11-module)")
	}
	r, id, err := rf.identify(ctx)
	if err != nil {
		return err
	}
	defer r.Close()
	oldKey, err := mk.key(ctx, sio, id.MeterID, id.KeyVersion)
	if err != nil {
		return err
	}
	newKey := oldKey
	if *mk.file != "" {
		if newKey, err = readKey("new-meter-card-key-file", *newFile); err != nil {
			return err
		}
	} else if newKey, err = mk.key(ctx, sio, id.MeterID, uint8(*newVersion)); err != nil {
		return err
	}
	id, err = card.Rekey(r, oldKey, newKey, uint8(*newVersion), rand.Reader)
	if err != nil {
		return err
	}
	return printJSON(sio, identityOut(id))
}

func cmdCardEmulate(ctx context.Context, sio stdio, args []string) error {
	fs := newFlags(sio, "card emulate", "--state FILE [--uid HEX --batch-key-file F] [--vpcd ADDR]")
	state := fs.String("state", "", "card memory file; created blank when missing (needs --uid and --batch-key-file)")
	uidHex := fs.String("uid", "", "UID of a new blank card, 14 hex digits")
	batchFile := fs.String("batch-key-file", "", "card batch key for a new blank card, 32 hex digits")
	addr := fs.String("vpcd", vpcd.DefaultAddr, "vpcd reader slot address (35963 is \"Virtual PCD 00 00\", 35964 is \"00 01\")")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *state == "" {
		return errors.New("--state: required")
	}
	img, err := card.LoadImage(*state)
	switch {
	case errors.Is(err, os.ErrNotExist):
		uid, err := card.ParseUID(*uidHex)
		if err != nil {
			return fmt.Errorf("--uid: %w", err)
		}
		batch, err := readKey("batch-key-file", *batchFile)
		if err != nil {
			return err
		}
		tk, err := card.TransportKey(batch, uid)
		if err != nil {
			return err
		}
		if img, err = card.NewBlank(uid, tk); err != nil {
			return err
		}
		if err := card.SaveImage(*state, img); err != nil {
			return err
		}
	case err != nil:
		return err
	}
	c, err := card.New(img, rand.Reader, func(img card.Image) error { return card.SaveImage(*state, img) })
	if err != nil {
		return err
	}
	fmt.Fprintf(sio.err, "card %v (%v) inserted in vpcd %s; Ctrl-C pulls it\n", img.UID, img.Lifecycle, *addr)
	return vpcd.Serve(ctx, *addr, c, card.ATR())
}
