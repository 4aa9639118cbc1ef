package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"sluice/attack"
	"sluice/card/pcsc"
	"sluice/card/vpcd"
)

// pcscSlot is the vpcd slot the attack lab's sniffing attack plays on when
// pcscd offers it.
const pcscSlot = 1

// cmdAttack runs the attack lab: every attack against the real components,
// a table (or JSON) of what was observed, exit 0 only when every attack
// that ran was defeated.
func cmdAttack(ctx context.Context, sio stdio, args []string) error {
	fs := newFlags(sio, "attack", "[--json] [--only ID[,ID...]] [--seed N] [--pcsc auto|none|READER]")
	asJSON := fs.Bool("json", false, "print a JSON array of the reports")
	only := fs.String("only", "", "run only these attacks (comma-separated IDs, see the table)")
	seed := fs.Uint64("seed", 1, "seed of every random stream; a run is repeatable with the same seed")
	reader := fs.String("pcsc", "auto", "PC/SC reader for the sniffing attack: auto (vpcd slot 1 if pcscd offers it), none (in-process transport), or a reader name")
	if err := parseArgs(fs, args, 0); err != nil {
		return err
	}
	opt := attack.Options{Seed: *seed}
	if *only != "" {
		opt.Only = strings.Split(*only, ",")
	}
	switch *reader {
	case "none":
	case "auto":
		if names, err := pcsc.Readers(); err == nil && slices.Contains(names, vpcd.ReaderName(pcscSlot)) {
			opt.PCSCReader = vpcd.ReaderName(pcscSlot)
			opt.PCSCAddr = fmt.Sprintf("127.0.0.1:%d", 35963+pcscSlot)
		}
	default:
		opt.PCSCReader, opt.PCSCAddr = *reader, vpcd.DefaultAddr
	}
	if !*asJSON {
		opt.Progress = func(a attack.Attack) { fmt.Fprintf(sio.err, "attack %s: %s...\n", a.ID, a.Name) }
	}
	start := time.Now()
	reports, err := attack.Run(ctx, opt)
	if err != nil {
		return err
	}
	if *asJSON {
		err = attack.WriteJSON(sio.out, reports)
	} else {
		err = attack.WriteTable(sio.out, reports, *seed)
		fmt.Fprintf(sio.out, "%d attacks in %.1fs.\n", len(reports), time.Since(start).Seconds())
	}
	if err != nil {
		return err
	}
	if !attack.AllDefeated(reports) {
		return exitError{1}
	}
	return nil
}
