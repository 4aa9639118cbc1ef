package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"sluice/meter"
	"sluice/meter/console"
	"sluice/meter/sim"
	"sluice/provision"
	"sluice/sts"
)

// cmdMeter runs the reference meter: one meter on a bench with a keypad
// prompt, a fleet of emulated meters (--meters N), or the firmware-readout
// view of a flash image (--inspect FILE).
func cmdMeter(ctx context.Context, sio stdio, args []string) error {
	if len(args) > 0 && args[0] == "provision" {
		return subcommands(ctx, sio, "meter provision", args[1:], []command{
			{"request", "factory station: a blank meter makes its device keys and signed request", cmdMeterProvisionRequest},
			{"issue", "head-end: sign the next provisioning record of a registered meter", cmdMeterProvisionIssue},
			{"apply", "the meter installs a signed provisioning record", cmdMeterProvisionApply},
		})
	}
	fs := newFlags(sio, "meter", "[--flash FILE] | --meters N [--for 168h] | --inspect FILE | provision request|issue|apply")
	flash := fs.String("flash", "", "bench: EEPROM image file, kept across runs (a new demo meter if missing)")
	id := fs.Uint64("id", 4710001, "bench: meter ID of a new demo meter")
	startAt := fs.String("start", "", "meter clock at start, RFC 3339 (default: now)")
	inspect := fs.String("inspect", "", "print what an EEPROM image holds, as JSON, and exit")
	meters := fs.Int("meters", 0, "fleet: emulate N meters instead of one bench meter")
	runFor := fs.Duration("for", 7*24*time.Hour, "fleet: simulated time to run")
	step := fs.Duration("step", 15*time.Minute, "fleet: simulated time per step")
	report := fs.Duration("report", time.Hour, "fleet: reading interval of each meter")
	seed := fs.Uint64("seed", 1, "fleet: random seed (runs are reproducible)")
	leaks := fs.Float64("leaks", 0.05, "fleet: share of households with a leak")
	tamper := fs.Float64("tamper", 0.01, "fleet: share of households tampering")
	every := fs.Duration("every", 24*time.Hour, "fleet: print a summary line each time this much simulated time passes")
	asJSON := fs.Bool("json", false, "fleet: print the final summary as JSON")
	attach := fs.Bool("headend", false, "fleet: attach to the head-end named by --config/--data: register the meters, report over its MQTT broker, buy through vending, take remote top-ups")
	cf := addConfigFlags(fs, false)
	firstID := fs.Uint64("first", 9100001, "fleet with --headend: the first meter number")
	tariff := fs.String("tariff", "", "fleet with --headend: code of an existing tariff for the meters")
	brokerURL := fs.String("mqtt", "", "fleet with --headend: broker URL (default: the head-end's embedded broker at mqtt.listen)")
	topUp := fs.Int64("topup-cents", 20000, "fleet with --headend: what a household pays each time it buys")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		fmt.Fprintf(sio.err, "sluice meter: unexpected argument %q\n", fs.Arg(0))
		return errUsage
	}
	start := time.Now().UTC().Truncate(time.Second)
	if *startAt != "" {
		t, err := time.Parse(time.RFC3339, *startAt)
		if err != nil {
			return fmt.Errorf("--start: %v", err)
		}
		start = t
	}
	switch {
	case *inspect != "":
		return meterInspect(sio, *inspect)
	case *meters > 0 && *attach:
		cfg, err := cf.load(sio)
		if err != nil {
			return configError(sio, "meter", err)
		}
		return meterFleetHeadend(ctx, sio, cfg, fleetFlags{first: *firstID, tariff: *tariff, broker: *brokerURL, topUp: *topUp},
			sim.Config{Meters: *meters, Seed: *seed, Start: start, Step: *step, Report: *report, Params: meter.DefaultParams(),
				LeakShare: *leaks, TamperShare: *tamper, TopUp: 1000}, start.Add(*runFor), *every)
	case *meters > 0:
		return meterFleet(ctx, sio, sim.Config{Meters: *meters, FirstID: 1, Seed: *seed, Start: start, Step: *step,
			Report: *report, Params: meter.DefaultParams(), LeakShare: *leaks, TamperShare: *tamper, InitialCredit: 3000},
			start.Add(*runFor), *every, *asJSON)
	case *meters < 0:
		return fmt.Errorf("--meters: %d is negative", *meters)
	}
	return meterBench(ctx, sio, *flash, *id, start)
}

func meterBench(ctx context.Context, sio stdio, path string, id uint64, start time.Time) error {
	wall := time.Now()
	b := &console.Bench{Deps: meter.Deps{Rand: rand.Reader}, Clock: func() time.Time { return start.Add(time.Since(wall)) }}
	img, err := os.ReadFile(path)
	switch {
	case path != "" && err == nil:
		if b.Storage, err = meter.LoadEEPROM(img, meter.DefaultPageSize); err != nil {
			return fmt.Errorf("--flash %s: %w", path, err)
		}
		if err := b.Boot(); err != nil {
			return fmt.Errorf("--flash %s: %w", path, err)
		}
		if b.Demo, err = console.OpenDemo(b.Meter(), meterLastTID(b.Storage)); err != nil {
			return err
		}
		if b.Demo == nil {
			fmt.Fprintf(sio.out, "Meter %d is not a demo meter: no demo vending point on this bench.\n", b.Meter().ID())
		}
	case path != "" && !errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("--flash: %w", err)
	default:
		b.Storage = meter.NewEEPROM(meter.DefaultEEPROMSize, meter.DefaultPageSize)
		if b.Demo, err = console.NewDemo(b.Storage, id); err != nil {
			return err
		}
		fmt.Fprintf(sio.out, "New DEMO meter %d: its keys come from public labels; never use it for real credit.\n", id)
	}
	if path != "" {
		b.Save = func(img []byte) error { return meterWriteFile(path, img) }
		if err := b.Save(mustDump(b.Storage)); err != nil {
			return err
		}
	}
	return b.Run(ctx, sio.in, sio.out)
}

func mustDump(st meter.Storage) []byte {
	img, _ := meter.Dump(st) // an in-memory EEPROM always reads
	return img
}

// meterLastTID finds the newest TID in the demo meter's STS memory, so the
// demo vending point continues above it.
func meterLastTID(st meter.Storage) uint32 {
	im, err := meter.ParseImage(mustDump(st), meter.DefaultPageSize)
	if err != nil {
		return 0
	}
	var d sts.Decoder
	if err := d.UnmarshalBinary(im.Tokens); err != nil {
		return 0
	}
	var last uint32
	for _, t := range d.TIDs() {
		last = max(last, t)
	}
	return last
}

// meterWriteFile replaces path atomically, so that a crash of the bench
// never leaves a half-written image (the emulated EEPROM has its own
// journal; the file under it should not need one).
func meterWriteFile(path string, b []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".meter-*")
	if err != nil {
		return err
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// meterInspect prints what a flash image holds: the firmware-readout view.
func meterInspect(sio stdio, path string) error {
	img, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("--inspect: %w", err)
	}
	im, err := meter.ParseImage(img, meter.DefaultPageSize)
	if err != nil {
		return fmt.Errorf("--inspect %s: %w", path, err)
	}
	type trusted struct {
		Role   string `json:"role"`
		Public string `json:"public_key"`
	}
	out := struct {
		ID           uint64    `json:"id"`
		JournalSeq   uint32    `json:"journal_seq"`
		Ready        bool      `json:"provisioned"`
		ProvCounter  uint32    `json:"provisioning_counter"`
		DeviceKeys   string    `json:"device_keys,omitempty"`
		MeterKey     string    `json:"meter_key"`
		TelemetryKey string    `json:"telemetry_key"`
		Trusted      []trusted `json:"trusted_keys"`
		STSKey       string    `json:"sts_decoder_key,omitempty"`
		STSTIDs      []uint32  `json:"sts_tids,omitempty"`
		Unit         string    `json:"unit"`
		Credit       int64     `json:"credit"`
		Forward      uint64    `json:"forward_litres"`
		Reverse      uint64    `json:"reverse_litres"`
		Loaded       uint64    `json:"loaded"`
		Status       string    `json:"status"`
		VoucherSeq   uint32    `json:"voucher_seq"`
		EventSeq     uint32    `json:"event_seq"`
	}{ID: im.ID, JournalSeq: im.Seq, Ready: im.Ready, ProvCounter: im.ProvCounter, DeviceKeys: hex.EncodeToString(im.Device), MeterKey: hex.EncodeToString(im.Keys.MeterKey[:]),
		TelemetryKey: hex.EncodeToString(im.Keys.TelemetryKey[:]), Unit: im.Unit.String(), Credit: im.Credit,
		Forward: im.Forward, Reverse: im.Reverse, Loaded: im.Loaded, Status: im.StatusText(time.Time{}),
		VoucherSeq: im.VoucherSeq, EventSeq: im.EventSeq}
	for _, k := range im.Keys.Trusted {
		out.Trusted = append(out.Trusted, trusted{Role: k.Role.String(), Public: hex.EncodeToString(k.Public)})
	}
	if len(im.Tokens) > 0 {
		var d sts.Decoder
		if err := d.UnmarshalBinary(im.Tokens); err == nil {
			out.STSKey, out.STSTIDs = hex.EncodeToString(d.Key()), d.TIDs()
		}
	}
	enc := json.NewEncoder(sio.out)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

func meterFleet(ctx context.Context, sio stdio, cfg sim.Config, until time.Time, every time.Duration, asJSON bool) error {
	// The emulator's own vending point: a credit key made up for this run,
	// which the fleet's meters trust. With the head-end, the keyring is the
	// KMS's public credit key and purchases go through the vending API.
	seed := sha256.Sum256([]byte(fmt.Sprintf("sluice fleet vendor %d", cfg.Seed)))
	vendor := sim.NewLocalVendor(ed25519.NewKeyFromSeed(seed[:]), cfg.FirstID, cfg.Meters)
	cfg.Keyring = vendor.Keyring()
	up := &sim.Counter{}
	t0 := time.Now()
	f, err := sim.New(cfg, up, vendor)
	if err != nil {
		return err
	}
	fmt.Fprintf(sio.err, "%d meters ready in %v (%d steps of %v per simulated day)\n",
		cfg.Meters, time.Since(t0).Round(time.Millisecond), int(24*time.Hour/cfg.Step), cfg.Step)
	steps, wall := 0, time.Now()
	last := f.Summary()
	line := func(s sim.Summary) {
		steps = int(s.Time.Sub(cfg.Start) / cfg.Step)
		rate := float64(steps) * float64(cfg.Meters) / time.Since(wall).Seconds()
		fmt.Fprintf(sio.out, "%s  meters %d  valve closed %d  low credit %d  emergency %d  tampered %d  "+
			"used %.1f m3  top-ups %d  readings %d  events %d  (%.1fM meter-steps/s)\n",
			s.Time.Format("2006-01-02 15:04"), s.Meters, s.ValveClosed, s.LowCredit, s.Emergency, s.Tampered,
			float64(s.ForwardL-last.ForwardL)/1000, s.TopUps-last.TopUps, s.Readings-last.Readings,
			s.Events-last.Events, rate/1e6)
		last = s
	}
	err = f.Run(ctx, until, every, line)
	if errors.Is(err, context.Canceled) {
		// Interrupted: show where the fleet got to.
		line(f.Summary())
		err = nil
	}
	if err != nil {
		return err
	}
	if asJSON {
		enc := json.NewEncoder(sio.out)
		enc.SetIndent("", "  ")
		return enc.Encode(f.Summary())
	}
	return nil
}

// cmdMeterProvisionRequest plays the factory station: a blank meter image
// gets the meter's own provisioning key pairs (generated here, as on the
// meter, never leaving the image) and the management key its firmware
// trusts, and the meter's signed request goes to the head-end.
func cmdMeterProvisionRequest(ctx context.Context, sio stdio, args []string) error {
	fs := newFlags(sio, "meter provision request", "--flash FILE --id N --model M --anchor KEYFILE --out REQUEST [--sts-sgc 6DIGITS ...]")
	flash := fs.String("flash", "", "the meter's EEPROM image to create (must not exist)")
	id := fs.Uint64("id", 0, "meter ID")
	model := fs.String("model", "", "hardware model (1-32 printable ASCII)")
	anchor := fs.String("anchor", "", "management public key the firmware trusts: PEM PUBLIC KEY or 64 hex digits")
	out := fs.String("out", "", "where to write the signed request (hex)")
	sgc := fs.String("sts-sgc", "", "STS supply group code of the keypad's decoder key (empty: no keypad)")
	ti := fs.Int("sts-ti", 1, "STS tariff index")
	krn := fs.Int("sts-krn", 1, "STS key revision number")
	kt := fs.Int("sts-kt", 2, "STS key type")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	switch {
	case *flash == "":
		return errors.New("--flash: required")
	case *out == "":
		return errors.New("--out: required")
	}
	if _, err := os.Stat(*flash); err == nil {
		return fmt.Errorf("--flash %s: exists; a meter is set up at the factory once", *flash)
	}
	pub, err := meterReadEd25519Public(*anchor)
	if err != nil {
		return fmt.Errorf("--anchor: %w", err)
	}
	dev, err := provision.NewDevice(rand.Reader, *id, *model)
	if err != nil {
		return err
	}
	f := meter.Factory{Params: meter.DefaultParams(), Device: dev, Anchor: pub}
	if *sgc != "" {
		code, err := sts.ParseSGC(*sgc)
		if err != nil {
			return fmt.Errorf("--sts-sgc: %w", err)
		}
		f.STS = &sts.DecoderConfig{EA: sts.EA11, ID: sts.KeyID{KT: *kt, SGC: code, TI: *ti, KRN: *krn}, KEN: 255,
			Base: sts.Base2014, CreditSubclasses: 1<<sts.SubWater | 1<<sts.SubWaterCurrency}
	}
	ee := meter.NewEEPROM(meter.DefaultEEPROMSize, meter.DefaultPageSize)
	if err := meter.FormatFactory(ee, f); err != nil {
		return err
	}
	m, err := meter.Boot(ee, meter.Deps{})
	if err != nil {
		return err
	}
	req, err := m.ProvisioningRequest()
	if err != nil {
		return err
	}
	if err := meterWriteFile(*flash, mustDump(ee)); err != nil {
		return fmt.Errorf("--flash: %w", err)
	}
	if err := os.WriteFile(*out, []byte(hex.EncodeToString(req)+"\n"), 0o644); err != nil {
		return fmt.Errorf("--out: %w", err)
	}
	fmt.Fprintf(sio.out, "meter %d (%s) set up in %s; request in %s\n", *id, *model, *flash, *out)
	return nil
}

// cmdMeterProvisionIssue is the head-end's step between request and apply:
// the meter must be registered; its keys come from the head-end's KMS under
// the newest meter root, and the meter row records the counter and root.
func cmdMeterProvisionIssue(ctx context.Context, sio stdio, args []string) error {
	fs := newFlags(sio, "meter provision issue", "--request FILE --out RECORD [--replace-board] [--data DIR | --config FILE] [key manager flags]")
	request := fs.String("request", "", "the meter's signed request (hex, from provision request)")
	out := fs.String("out", "", "where to write the signed record (hex)")
	actor := fs.String("actor", "", "who is acting, for the audit log (default cli:$USER)")
	replace := fs.Bool("replace-board", false, "accept a request from another board than the meter's last one (a repaired meter; audited)")
	kf := addKMSFlags(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	switch {
	case *request == "":
		return errors.New("--request: required")
	case *out == "":
		return errors.New("--out: required")
	}
	raw, err := os.ReadFile(*request)
	if err != nil {
		return fmt.Errorf("--request: %w", err)
	}
	b, err := hex.DecodeString(strings.TrimSpace(string(raw)))
	if err != nil {
		b = raw
	}
	req, err := provision.ParseRequest(b)
	if err != nil {
		return fmt.Errorf("--request: %w", err)
	}
	cfg, err := kf.cf.load(sio)
	if err != nil {
		return err
	}
	db, err := openExistingStore(ctx, cfg)
	if err != nil {
		return err
	}
	defer db.Close()
	km, err := kf.open(ctx, sio, false)
	if err != nil {
		return err
	}
	defer km.Close()
	iss, err := provision.IssueRegistered(ctx, db, km, req, provision.IssueOptions{
		Actor: cliActor(sio, *actor), Now: time.Now(), ReplaceBoard: *replace})
	if err != nil {
		return err
	}
	if err := os.WriteFile(*out, []byte(hex.EncodeToString(iss.Record)+"\n"), 0o644); err != nil {
		return fmt.Errorf("--out: %w", err)
	}
	fmt.Fprintf(sio.out, "meter %d: record %d (keys under meter-root@%d, key version %d) in %s\n",
		req.MeterID, iss.Counter, iss.RootVersion, iss.KeyVersion, *out)
	return nil
}

// cmdMeterProvisionApply hands a signed provisioning record to the meter.
func cmdMeterProvisionApply(ctx context.Context, sio stdio, args []string) error {
	fs := newFlags(sio, "meter provision apply", "--flash FILE --record FILE")
	flash := fs.String("flash", "", "the meter's EEPROM image")
	record := fs.String("record", "", "the signed provisioning record (binary or hex)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	img, err := os.ReadFile(*flash)
	if err != nil {
		return fmt.Errorf("--flash: %w", err)
	}
	rec, err := os.ReadFile(*record)
	if err != nil {
		return fmt.Errorf("--record: %w", err)
	}
	if h, err := hex.DecodeString(strings.Join(strings.Fields(string(rec)), "")); err == nil {
		rec = h
	}
	ee, err := meter.LoadEEPROM(img, meter.DefaultPageSize)
	if err != nil {
		return fmt.Errorf("--flash: %w", err)
	}
	m, err := meter.Boot(ee, meter.Deps{})
	if err != nil {
		return fmt.Errorf("--flash: %w", err)
	}
	perr := m.Provision(time.Now().UTC(), rec)
	// The refusal is in the meter's event log too: save either way.
	if err := meterWriteFile(*flash, mustDump(ee)); err != nil {
		return fmt.Errorf("--flash: %w", err)
	}
	if perr != nil {
		return fmt.Errorf("record refused: %w", perr)
	}
	fmt.Fprintf(sio.out, "meter %d provisioned\n", m.ID())
	return nil
}

// meterReadEd25519Public reads an Ed25519 public key from a PEM PUBLIC KEY
// file or a file of 64 hex digits.
func meterReadEd25519Public(path string) (ed25519.PublicKey, error) {
	if path == "" {
		return nil, errors.New("required")
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if blk, _ := pem.Decode(b); blk != nil {
		k, err := x509.ParsePKIXPublicKey(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if pub, ok := k.(ed25519.PublicKey); ok {
			return pub, nil
		}
		return nil, fmt.Errorf("%s: %T is not an Ed25519 key", path, k)
	}
	h, err := hex.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(h) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("%s: want PEM or %d hex digits", path, 2*ed25519.PublicKeySize)
	}
	return ed25519.PublicKey(h), nil
}
