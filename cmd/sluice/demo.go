package main

import (
	"context"
	"log/slog"

	"sluice/demo"
)

func cmdDemo(ctx context.Context, sio stdio, args []string) error {
	fs := newFlags(sio, "demo", "[--data DIR] [--verbose]")
	dir := fs.String("data", "", "keep the demo's data in `DIR` (default: a temporary directory, removed afterwards)")
	verbose := fs.Bool("verbose", false, "also print the head-end's log")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	log := slog.New(slog.DiscardHandler)
	if *verbose {
		log = slog.New(slog.NewTextHandler(sio.err, nil))
	}
	return demo.Run(ctx, demo.Options{DataDir: *dir, Out: sio.out, Log: log})
}
