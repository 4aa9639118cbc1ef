// Command sluice is the Sluice prepaid water-metering platform in one binary:
// the vending head-end (serve), the tools of the key ceremony and of the
// vending office, the meter and card emulators, and the attack lab.
//
// This package only parses flags and wires the domain packages together; the
// behaviour lives in those packages, where it is tested.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
	// The utility's time zone (config key timezone) must load on machines
	// without a zoneinfo database.
	_ "time/tzdata"
)

// stdio is what a subcommand may touch of the outside world besides the files
// and sockets its flags name. Tests run commands with their own.
type stdio struct {
	in       io.Reader
	out, err io.Writer
	getenv   func(string) string
}

// command is one `sluice NAME` subcommand.
type command struct {
	name    string
	summary string
	run     func(ctx context.Context, io stdio, args []string) error
}

// commands lists every subcommand; each lives in a file of its own name.
func commands() []command {
	cmds := []command{
		{"serve", "run the vending head-end (HTTP API, console, telemetry)", cmdServe},
		{"migrate", "apply database migrations and exit", cmdMigrate},
		{"demo", "run a scripted end-to-end story on a throw-away data directory", cmdDemo},
		{"version", "print the version and exit", cmdVersion},
		{"firmware", "sign, verify, inspect and leak-scan meter firmware images", cmdFirmware},
		{"wmbus", "decode wireless M-Bus / OMS telegrams", cmdWmbus},
		{"sts", "STS (IEC 62055-41) tokens: decoder keys, encode, decode", cmdSTS},
		{"card", "prepaid cards: issue, load, inspect over PC/SC; emulate a card", cmdCard},
		{"keys", "key ceremony: init, list, pubkey, rotate, import-sts", cmdKeys},
		{"meter", "the reference meter: one on a keypad prompt, or a fleet (--meters N)", cmdMeter},
		{"audit", "audit log: verify the hash chain and anchors, seal pending records", cmdAudit},
		{"attack", "the attack lab: play every known attack against the real components", cmdAttack},
		{"ledger", "ledger: check every entry against the invariants", cmdLedger},
		{"backup", "write an online backup of the SQLite store and its sealed key store", cmdBackup},
		{"restore", "restore a backup into a data directory, then verify audit chain and ledger", cmdRestore},
		{"report", "reports as CSV or JSON: settlement, sales, free-water, debt, tokens, vends", cmdReport},
		{"bench", "measure the hot paths on this machine (tokens, vends over HTTP, fleet emulator)", cmdBench},
	}
	sort.Slice(cmds, func(i, j int) bool { return cmds[i].name < cmds[j].name })
	return cmds
}

// errUsage marks errors already explained to the user by a usage message.
var errUsage = errors.New("usage")

// exitError carries a specific exit status (for example 1 from `firmware
// verify` on an invalid image) without printing anything more.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, stdio{in: os.Stdin, out: os.Stdout, err: os.Stderr, getenv: os.Getenv}, os.Args[1:])
	stop()
	os.Exit(code)
}

// run executes one command line and returns the process exit status.
func run(ctx context.Context, sio stdio, args []string) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(sio.out)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	for _, c := range commands() {
		if c.name != args[0] {
			continue
		}
		err := c.run(ctx, sio, args[1:])
		var ee exitError
		switch {
		case err == nil:
			return 0
		case errors.Is(err, flag.ErrHelp):
			return 0
		case errors.Is(err, errUsage):
			return 2
		case errors.As(err, &ee):
			return ee.code
		}
		fmt.Fprintf(sio.err, "sluice %s: %v\n", c.name, err)
		return 1
	}
	fmt.Fprintf(sio.err, "sluice: unknown command %q (see sluice --help)\n", args[0])
	return 2
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "Sluice: secure prepaid water metering.")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Usage: sluice COMMAND [flags]   (sluice COMMAND --help for its flags)")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Commands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-10s %s\n", c.name, c.summary)
	}
}

// newFlags returns a flag set that prints its usage to sio.err under a
// heading naming the command, and returns errors rather than exiting.
func newFlags(sio stdio, name, synopsis string) *flag.FlagSet {
	fs := flag.NewFlagSet("sluice "+name, flag.ContinueOnError)
	fs.SetOutput(sio.err)
	fs.Usage = func() {
		fmt.Fprintf(sio.err, "Usage: sluice %s %s\n", name, synopsis)
		var any bool
		fs.VisitAll(func(*flag.Flag) { any = true })
		if any {
			fmt.Fprintln(sio.err, "\nFlags:")
			fs.PrintDefaults()
		}
	}
	return fs
}

// parseFlags parses args and maps a bad command line to errUsage, since the
// flag package has already printed why.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	return nil
}

// parseArgs is parseFlags for a command that takes exactly n arguments
// after its flags.
func parseArgs(fs *flag.FlagSet, args []string, n int) error {
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != n {
		fs.Usage()
		return errUsage
	}
	return nil
}

// subcommands dispatches `sluice NAME SUB ...` to one of subs.
func subcommands(ctx context.Context, sio stdio, name string, args []string, subs []command) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprintf(sio.err, "Usage: sluice %s SUBCOMMAND [flags]\n\nSubcommands:\n", name)
		for _, c := range subs {
			fmt.Fprintf(sio.err, "  %-14s %s\n", c.name, c.summary)
		}
		if len(args) == 0 {
			return errUsage
		}
		return flag.ErrHelp
	}
	var names []string
	for _, c := range subs {
		if c.name == args[0] {
			return c.run(ctx, sio, args[1:])
		}
		names = append(names, c.name)
	}
	fmt.Fprintf(sio.err, "sluice %s: unknown subcommand %q (one of %s)\n", name, args[0], strings.Join(names, ", "))
	return errUsage
}
