package main

import (
	"context"
	"fmt"

	"sluice/headend"
)

func cmdMigrate(ctx context.Context, sio stdio, args []string) error {
	fs := newFlags(sio, "migrate", "[--config FILE] [--data DIR] [--db-driver sqlite|postgres] [--db-url URL]")
	cf := addConfigFlags(fs, false)
	status := fs.Bool("status", false, "print the schema version and exit without migrating")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, err := cf.load(sio)
	if err != nil {
		return configError(sio, "migrate", err)
	}
	db, err := headend.OpenStore(ctx, cfg)
	if err != nil {
		return err
	}
	defer db.Close()
	if !*status {
		n, err := db.Migrate(ctx)
		if err != nil {
			return err
		}
		fmt.Fprintf(sio.out, "applied %d migration(s)\n", n)
	}
	applied, latest, err := db.SchemaVersion(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(sio.out, "%s schema at version %d of %d\n", db.Driver(), applied, latest)
	return nil
}
