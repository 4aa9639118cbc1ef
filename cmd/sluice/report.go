package main

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"sluice/headend"
	"sluice/report"
	"sluice/store"
)

// cmdReport is `sluice report <name> --from D --to D [filters] [--format]`:
// a report streamed to standard output as CSV or JSON (package report).
func cmdReport(ctx context.Context, sio stdio, args []string) error {
	const synopsis = "<name>|list|explain --from DATE --to DATE [--supply-group SGC] [--vendor CODE] [--operator USER] [--format csv|json] [--tz ZONE] [--config FILE] [--data DIR] [--db-driver D] [--db-url URL]"
	name := ""
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		name, args = args[0], args[1:]
	}
	fs := newFlags(sio, "report", synopsis)
	cf := addConfigFlags(fs, false)
	from := fs.String("from", "", "first `date` (YYYY-MM-DD) or RFC 3339 time")
	to := fs.String("to", "", "last `date` (included) or RFC 3339 time (excluded)")
	sg := fs.String("supply-group", "", "only this supply group `code`")
	vendor := fs.String("vendor", "", "only this vending point `code`")
	operator := fs.String("operator", "", "only this operator `username`")
	format := fs.String("format", "csv", "output `format`: csv or json")
	tz := fs.String("tz", "UTC", "time `zone` days are counted in (the one vending uses)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if name == "list" {
		for _, r := range report.List() {
			fmt.Fprintf(sio.out, "%-12s %s (filters: %s)\n", r.Name, r.Title, strings.Join(r.Filters, ", "))
		}
		return nil
	}
	if name == "" {
		fs.Usage()
		return errUsage
	}
	loc, err := time.LoadLocation(*tz)
	if err != nil {
		return fmt.Errorf("--tz: %w", err)
	}
	cfg, err := cf.load(sio)
	if err != nil {
		return configError(sio, "report", err)
	}
	db, err := headend.OpenStore(ctx, cfg)
	if err != nil {
		return err
	}
	defer db.Close()
	if err := db.Ready(ctx); err != nil {
		return err
	}
	if name == "explain" {
		return db.Read(ctx, func(tx store.Tx) error {
			plans, err := tx.Reports().Explain(ctx)
			if err != nil {
				return err
			}
			keys := make([]string, 0, len(plans))
			for k := range plans {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				fmt.Fprintf(sio.out, "%s:\n%s\n\n", k, plans[k])
			}
			return nil
		})
	}
	f, t, err := report.ParseRange(*from, *to, loc)
	if err != nil {
		return fmt.Errorf("--%v", err)
	}
	sink, err := report.NewSink(*format, sio.out)
	if err != nil {
		return fmt.Errorf("--%v", err)
	}
	svc := report.New(db, loc, nil)
	_, err = svc.Run(ctx, name, report.Params{From: f, To: t, SupplyGroup: *sg, Vendor: *vendor, Operator: *operator}, sink)
	if fe, ok := err.(*report.FieldError); ok {
		return fmt.Errorf("--%s", strings.Replace(fe.Error(), "_", "-", 1))
	}
	return err
}
