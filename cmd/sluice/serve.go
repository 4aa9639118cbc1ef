package main

import (
	"context"
	"fmt"

	"sluice/headend"
)

func cmdServe(ctx context.Context, sio stdio, args []string) error {
	fs := newFlags(sio, "serve", "[--config FILE] [--data DIR] [--listen ADDR] [--mqtt-listen ADDR]")
	cf := addConfigFlags(fs, true)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, err := cf.load(sio)
	if err != nil {
		return configError(sio, "serve", err)
	}
	log := newLogger(sio.err, cfg)
	h, err := headend.Start(ctx, cfg, log, headend.Options{Version: version})
	if err != nil {
		return err
	}
	fmt.Fprintf(sio.out, "Sluice is serving at %s (data in %s, database %s)\n", h.URL(), cfg.DataDir, h.Store().Driver())
	if h.BootstrapPassword != "" {
		fmt.Fprintf(sio.out, "First run: log in as %q with the one-time password in %s (readable only by you);\nyou will be asked to change it.\n", "admin", h.BootstrapPath)
	}
	select {
	case <-ctx.Done():
		log.Info("shutting down", "reason", context.Cause(ctx))
	case <-h.Done():
	}
	return h.Shutdown(context.Background())
}
