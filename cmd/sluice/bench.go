package main

import (
	"context"
	"fmt"
	"strings"

	"sluice/bench"
)

func cmdBench(ctx context.Context, sio stdio, args []string) error {
	fs := newFlags(sio, "bench", "[--json] [--quick] [--only PREFIX,...] [--repeat N] [--postgres URL]")
	asJSON := fs.Bool("json", false, "print one JSON object per measurement instead of a table")
	quick := fs.Bool("quick", false, "short runs and a 100k-meter fleet (under two minutes, for CI smoke runs)")
	only := fs.String("only", "", "run only measurements starting with these comma-separated `PREFIXES` (sts, meter, vend, fleet, campaign, telemetry)")
	repeat := fs.Int("repeat", 1, "run the selection `N` times in rounds and report each figure's median (every round's value in its parameters)")
	pg := fs.String("postgres", "", "PostgreSQL `URL` for the vending runs, each in a fresh schema; \"off\" skips them\n(default $SLUICE_TEST_POSTGRES_URL or "+bench.DefaultPostgresURL+")")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *repeat < 1 {
		fmt.Fprintf(sio.err, "sluice bench: --repeat %d: want 1 or more rounds\n", *repeat)
		return errUsage
	}
	url := *pg
	if url == "" {
		url = sio.getenv("SLUICE_TEST_POSTGRES_URL")
	}
	if url == "" {
		url = bench.DefaultPostgresURL
	}
	if url == "off" {
		url = ""
	}
	opt := bench.Options{Quick: *quick, Progress: sio.err, PostgresURL: url, Repeat: *repeat}
	if *only != "" {
		opt.Only = strings.Split(*only, ",")
	}
	rs, err := bench.Run(ctx, opt)
	if *asJSON {
		if werr := bench.WriteJSON(sio.out, rs); err == nil {
			err = werr
		}
	} else if werr := bench.WriteTable(sio.out, rs); err == nil {
		err = werr
	}
	return err
}
