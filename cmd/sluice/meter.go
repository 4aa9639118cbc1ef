package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"sluice/meter"
	"sluice/meter/console"
	"sluice/meter/sim"
	"sluice/sts"
)

// cmdMeter runs the reference meter: one meter on a bench with a keypad
// prompt, a fleet of emulated meters (--meters N), or the firmware-readout
// view of a flash image (--inspect FILE).
func cmdMeter(ctx context.Context, sio stdio, args []string) error {
	fs := newFlags(sio, "meter", "[--flash FILE] | --meters N [--for 168h] | --inspect FILE")
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
	}{ID: im.ID, JournalSeq: im.Seq, MeterKey: hex.EncodeToString(im.Keys.MeterKey[:]),
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
	err = f.Run(ctx, until, every, func(s sim.Summary) {
		steps = int(s.Time.Sub(cfg.Start) / cfg.Step)
		rate := float64(steps) * float64(cfg.Meters) / time.Since(wall).Seconds()
		fmt.Fprintf(sio.out, "%s  meters %d  valve closed %d  low credit %d  emergency %d  tampered %d  "+
			"used %.1f m3  top-ups %d  readings %d  events %d  (%.1fM meter-steps/s)\n",
			s.Time.Format("2006-01-02 15:04"), s.Meters, s.ValveClosed, s.LowCredit, s.Emergency, s.Tampered,
			float64(s.ForwardL-last.ForwardL)/1000, s.TopUps-last.TopUps, s.Readings-last.Readings,
			s.Events-last.Events, rate/1e6)
		last = s
	})
	if errors.Is(err, context.Canceled) {
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
