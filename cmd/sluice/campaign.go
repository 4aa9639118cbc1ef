package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"sluice/campaign"
	"sluice/config"
	"sluice/kms"
	"sluice/store"
	"sluice/store/sqlstore"
	"sluice/vend"
)

// cmdKeysCampaign is `sluice keys campaign`: key-rotation campaigns over the
// head-end's database and key manager (package campaign). Every step is
// written to the audit log by the package.
func cmdKeysCampaign(ctx context.Context, sio stdio, args []string) error {
	return subcommands(ctx, sio, "keys campaign", args, []command{
		{"start", "propose a campaign and enrol its meters", cmdCampaignStart},
		{"approve", "approve a campaign another operator proposed (dual control)", cmdCampaignApprove},
		{"run", "issue for the pending meters in batches (resumable; progress on stderr)", cmdCampaignRun},
		{"status", "show a campaign's progress", cmdCampaignStatus},
		{"report", "report counts, failed and unconfirmed meters", cmdCampaignReport},
		{"list", "list campaigns", cmdCampaignList},
		{"deliver", "mark meters' campaign tokens delivered (printed, sent)", cmdCampaignDeliver},
		{"cancel", "stop a campaign", cmdCampaignCancel},
	})
}

// campaignEnv is what a campaign subcommand opens.
type campaignEnv struct {
	db  *sqlstore.DB
	km  kms.KeyManager
	svc *campaign.Service
}

func (e *campaignEnv) Close() {
	if e.km != nil {
		e.km.Close()
	}
	if e.db != nil {
		e.db.Close()
	}
}

// openCampaigns opens the store and, when withKMS, the key manager.
func openCampaigns(ctx context.Context, cfg config.Config, withKMS bool, batch int) (*campaignEnv, error) {
	db, err := openExistingStore(ctx, cfg)
	if err != nil {
		return nil, err
	}
	e := &campaignEnv{db: db}
	c := campaign.Config{Store: db, Batch: batch}
	if withKMS {
		if e.km, err = openConfigKMS(ctx, cfg); err != nil {
			e.Close()
			return nil, err
		}
		c.KM = e.km
		c.Vend = vend.New(vend.Config{Store: db, Keys: vend.KMSKeys{KM: e.km}})
	}
	e.svc = campaign.New(c)
	return e, nil
}

func cmdCampaignStart(ctx context.Context, sio stdio, args []string) error {
	fs := newFlags(sio, "keys campaign start", "--name NAME --kind sts|voucher-key|meter-key [target flags] [--meters LIST|@FILE]")
	cf := addConfigFlags(fs, false)
	name := fs.String("name", "", "campaign `name` (unique)")
	kind := fs.String("kind", "", "campaign `kind`: sts (key change, TID rollover), voucher-key, meter-key")
	meters := fs.String("meters", "", "comma-separated meter numbers, or @FILE with one per line (default: every meter the kind applies to)")
	sgc := fs.String("supply-group", "", "sts: supply group `code`")
	krn := fs.Int("krn", 0, "sts: target key revision (default: the group's)")
	ti := fs.Int("ti", -1, "sts: target tariff index (default: the group's)")
	base := fs.Int("base-date", 0, "sts: target base date 1993, 2014 or 2035 (default: the group's)")
	rollover := fs.Bool("rollover", false, "sts: the TID rollover (same as --base-date 2014)")
	role := fs.String("role", "", "voucher-key: rotated key's role, credit or management")
	newV := fs.Int("new", 0, "voucher-key: version to trust (default: newest)")
	oldV := fs.Int("old", 0, "voucher-key: version to retire (default: the one before --new)")
	signer := fs.Int("signer", 0, "voucher-key: management key version the meters trust (default: --old for management, else newest)")
	keepOld := fs.Bool("keep-old", false, "voucher-key: do not retire the old key")
	days := fs.Int("valid-days", 0, "voucher-key: voucher validity in days (default 60)")
	keyVersion := fs.Int("key-version", 0, "meter-key: target per-meter key version")
	actor := fs.String("actor", "", "who is acting, for the audit log (default cli:$USER)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *rollover {
		if *base != 0 && *base != 2014 {
			fmt.Fprintln(sio.err, "sluice keys campaign start: --rollover means --base-date 2014")
			return errUsage
		}
		*base = 2014
	}
	list, err := campaignMeterList(*meters)
	if err != nil {
		fmt.Fprintf(sio.err, "sluice keys campaign start: --meters: %v\n", err)
		return errUsage
	}
	cfg, err := cf.load(sio)
	if err != nil {
		return configError(sio, "keys campaign start", err)
	}
	e, err := openCampaigns(ctx, cfg, true, 0)
	if err != nil {
		return err
	}
	defer e.Close()
	c, n, err := e.svc.Start(ctx, cliActor(sio, *actor), campaign.Spec{Name: *name, Kind: *kind, Meters: list, SupplyGroup: *sgc, KRN: *krn, TI: *ti,
		BaseDate: *base, Role: *role, New: *newV, Old: *oldV, Signer: *signer, KeepOld: *keepOld, ValidDays: *days, KeyVersion: *keyVersion})
	if err != nil {
		return err
	}
	fmt.Fprintf(sio.out, "campaign %d %q proposed: %d meters enrolled; a second operator approves it with: sluice keys campaign approve %d\n", c.ID, c.Name, n, c.ID)
	return nil
}

func cmdCampaignApprove(ctx context.Context, sio stdio, args []string) error {
	fs := newFlags(sio, "keys campaign approve", "CAMPAIGN [--actor NAME]")
	cf := addConfigFlags(fs, false)
	actor := fs.String("actor", "", "who approves, for the audit log (default cli:$USER); must differ from the proposer")
	ref, _, err := campaignArg(sio, fs, args, false)
	if err != nil {
		return err
	}
	e, c, err := openCampaign(ctx, sio, cf, "keys campaign approve", ref, true, 0)
	if err != nil {
		return err
	}
	defer e.Close()
	st, err := e.svc.Approve(ctx, cliActor(sio, *actor), c.ID)
	if err != nil {
		return err
	}
	fmt.Fprintf(sio.out, "campaign %d %q approved by %s (proposed by %s); run it with: sluice keys campaign run %d\n", st.ID, st.Name, st.ApprovedBy, st.CreatedBy, st.ID)
	return nil
}

// campaignMeterList reads --meters.
func campaignMeterList(s string) ([]string, error) {
	if s == "" {
		return nil, nil
	}
	if f, ok := strings.CutPrefix(s, "@"); ok {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		s = string(b)
	}
	var out []string
	for _, f := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == '\n' || r == '\r' || r == ' ' || r == '\t' }) {
		out = append(out, f)
	}
	if len(out) == 0 {
		return nil, errors.New("no meter numbers")
	}
	return out, nil
}

// openCampaign loads the configuration, opens the campaigns of its head-end
// (with the key manager when the command issues anything) and finds the
// campaign ref names. The caller closes the environment.
func openCampaign(ctx context.Context, sio stdio, cf *configFlags, name, ref string, withKMS bool, batch int) (*campaignEnv, store.Campaign, error) {
	cfg, err := cf.load(sio)
	if err != nil {
		return nil, store.Campaign{}, configError(sio, name, err)
	}
	e, err := openCampaigns(ctx, cfg, withKMS, batch)
	if err != nil {
		return nil, store.Campaign{}, err
	}
	c, err := e.svc.Lookup(ctx, ref)
	if err != nil {
		e.Close()
		return nil, store.Campaign{}, err
	}
	return e, c, nil
}

// campaignArg parses flags and the one CAMPAIGN argument (ID or name).
func campaignArg(sio stdio, fs *flag.FlagSet, args []string, more bool) (string, []string, error) {
	if err := parseFlags(fs, args); err != nil {
		return "", nil, err
	}
	if fs.NArg() < 1 || (!more && fs.NArg() != 1) {
		fs.Usage()
		return "", nil, errUsage
	}
	return fs.Arg(0), fs.Args()[1:], nil
}

func cmdCampaignRun(ctx context.Context, sio stdio, args []string) error {
	fs := newFlags(sio, "keys campaign run", "CAMPAIGN [--batch N] [--quiet]")
	cf := addConfigFlags(fs, false)
	batch := fs.Int("batch", campaign.DefaultBatch, "meters per transaction")
	quiet := fs.Bool("quiet", false, "no progress bar")
	actor := fs.String("actor", "", "who is acting, for the audit log (default cli:$USER)")
	ref, _, err := campaignArg(sio, fs, args, false)
	if err != nil {
		return err
	}
	cfg, err := cf.load(sio)
	if err != nil {
		return configError(sio, "keys campaign run", err)
	}
	e, err := openCampaigns(ctx, cfg, true, *batch)
	if err != nil {
		return err
	}
	defer e.Close()
	c, err := e.svc.Lookup(ctx, ref)
	if errors.Is(err, context.Canceled) {
		fmt.Fprintln(sio.err, "interrupted before the run began")
		return exitError{130}
	}
	if err != nil {
		return err
	}
	bar := &campaignBar{w: sio.err, start: time.Now()}
	show := bar.show
	if *quiet {
		show = nil
	}
	p, err := e.svc.Run(ctx, c.ID, cliActor(sio, *actor), show)
	if !*quiet {
		bar.done()
	}
	if err != nil {
		if errors.Is(err, context.Canceled) {
			fmt.Fprintf(sio.err, "interrupted: %d meters issued in this run; run again to resume\n", p.ThisRun)
			return exitError{130}
		}
		return err
	}
	fmt.Fprintf(sio.out, "campaign %d %q: %d issued in this run; %d pending, %d issued, %d delivered, %d confirmed, %d failed of %d\n",
		c.ID, c.Name, p.ThisRun, p.Pending, p.Issued, p.Delivered, p.Confirmed, p.Failed, p.Total)
	if p.Failed > 0 {
		fmt.Fprintf(sio.out, "failed meters: sluice keys campaign report %d\n", c.ID)
	}
	return nil
}

// campaignBar draws a campaign's progress on one terminal line.
type campaignBar struct {
	w     io.Writer
	start time.Time
	drawn bool
}

func (b *campaignBar) show(p campaign.Progress) {
	const width = 30
	frac := 1.0
	if p.Total > 0 {
		frac = float64(p.Done()) / float64(p.Total)
	}
	fill := int(frac * width)
	rate := float64(p.ThisRun) / max(time.Since(b.start).Seconds(), 1e-3)
	fmt.Fprintf(b.w, "\r[%s%s] %d/%d %5.1f%%  %.0f meters/s  failed %d ", strings.Repeat("#", fill), strings.Repeat(".", width-fill),
		p.Done(), p.Total, 100*frac, rate, p.Failed)
	b.drawn = true
}

func (b *campaignBar) done() {
	if b.drawn {
		fmt.Fprintln(b.w)
	}
}

func cmdCampaignStatus(ctx context.Context, sio stdio, args []string) error {
	fs := newFlags(sio, "keys campaign status", "CAMPAIGN [--json]")
	cf := addConfigFlags(fs, false)
	asJSON := fs.Bool("json", false, "print JSON")
	ref, _, err := campaignArg(sio, fs, args, false)
	if err != nil {
		return err
	}
	e, c, err := openCampaign(ctx, sio, cf, "keys campaign status", ref, false, 0)
	if err != nil {
		return err
	}
	defer e.Close()
	st, err := e.svc.Status(ctx, c.ID)
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(sio, st)
	}
	printCampaignStatus(sio.out, st)
	return nil
}

func printCampaignStatus(w io.Writer, st campaign.Status) {
	p := st.Progress
	fmt.Fprintf(w, "campaign %d %q (%s) %s, proposed %s by %s\n", st.ID, st.Name, st.Kind, st.State, st.CreatedAt.Format(time.RFC3339), st.CreatedBy)
	if st.ApprovedBy != "" {
		fmt.Fprintf(w, "  approved %s by %s\n", st.ApprovedAt.Format(time.RFC3339), st.ApprovedBy)
	} else if st.State == store.CampaignRunning {
		fmt.Fprintf(w, "  waiting for a second operator's approval\n")
	}
	fmt.Fprintf(w, "  target: %s\n", campaignTarget(st))
	fmt.Fprintf(w, "  meters: %d  pending %d  issued %d  delivered %d  confirmed %d  failed %d\n", p.Total, p.Pending, p.Issued, p.Delivered, p.Confirmed, p.Failed)
}

func campaignTarget(st campaign.Status) string {
	p := st.Params
	switch st.Kind {
	case campaign.KindSTS:
		return fmt.Sprintf("supply group %s from KRN %d TI %d base %d to KRN %d TI %d base %d", p.SupplyGroup, p.FromKRN, p.FromTI, p.FromBase, p.KRN, p.TI, p.BaseDate)
	case campaign.KindVoucherKey:
		s := fmt.Sprintf("%s role: trust %s@%d (key ID %08x)", p.Role, p.KeyName, p.NewVersion, p.NewKeyID)
		if p.RetireID != 0 {
			s += fmt.Sprintf(", retire @%d (key ID %08x)", p.OldVersion, p.RetireID)
		}
		return s
	case campaign.KindMeterKey:
		return "per-meter key version " + strconv.Itoa(p.KeyVersion)
	}
	return "?"
}

func cmdCampaignReport(ctx context.Context, sio stdio, args []string) error {
	fs := newFlags(sio, "keys campaign report", "CAMPAIGN [--json]")
	cf := addConfigFlags(fs, false)
	asJSON := fs.Bool("json", false, "print JSON")
	ref, _, err := campaignArg(sio, fs, args, false)
	if err != nil {
		return err
	}
	e, c, err := openCampaign(ctx, sio, cf, "keys campaign report", ref, false, 0)
	if err != nil {
		return err
	}
	defer e.Close()
	rep, err := e.svc.Report(ctx, c.ID)
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(sio, rep)
	}
	printCampaignStatus(sio.out, rep.Status)
	fmt.Fprintf(sio.out, "  tokens and vouchers issued: %d\n", rep.TokensIssued)
	tw := tabwriter.NewWriter(sio.out, 0, 4, 2, ' ', 0)
	if len(rep.Failed) > 0 {
		fmt.Fprintf(tw, "\nFAILED\tREASON\n")
		for _, m := range rep.Failed {
			fmt.Fprintf(tw, "%s\t%s\n", m.Meter, m.Detail)
		}
	}
	if len(rep.Unconfirmed) > 0 {
		fmt.Fprintf(tw, "\nUNCONFIRMED\tSTATE\tTOKENS\tDETAIL\n")
		for _, m := range rep.Unconfirmed {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\n", m.Meter, m.State, m.Tokens, m.Detail)
		}
		if rep.Truncated {
			fmt.Fprintf(tw, "...\t(first %d listed)\n", campaign.ReportLimit)
		}
	}
	return tw.Flush()
}

func cmdCampaignList(ctx context.Context, sio stdio, args []string) error {
	fs := newFlags(sio, "keys campaign list", "[--json]")
	cf := addConfigFlags(fs, false)
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, err := cf.load(sio)
	if err != nil {
		return configError(sio, "keys campaign list", err)
	}
	e, err := openCampaigns(ctx, cfg, false, 0)
	if err != nil {
		return err
	}
	defer e.Close()
	list, err := e.svc.List(ctx, 100)
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(sio, list)
	}
	tw := tabwriter.NewWriter(sio.out, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "ID\tNAME\tKIND\tSTATE\tMETERS\tPENDING\tISSUED\tDELIVERED\tCONFIRMED\tFAILED\n")
	for _, s := range list {
		p := s.Progress
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\n", s.ID, s.Name, s.Kind, s.State, p.Total, p.Pending, p.Issued, p.Delivered, p.Confirmed, p.Failed)
	}
	return tw.Flush()
}

func cmdCampaignDeliver(ctx context.Context, sio stdio, args []string) error {
	fs := newFlags(sio, "keys campaign deliver", "CAMPAIGN METER...")
	cf := addConfigFlags(fs, false)
	actor := fs.String("actor", "", "who is acting, for the audit log (default cli:$USER)")
	ref, meters, err := campaignArg(sio, fs, args, true)
	if err != nil {
		return err
	}
	if len(meters) == 0 {
		fs.Usage()
		return errUsage
	}
	e, c, err := openCampaign(ctx, sio, cf, "keys campaign deliver", ref, false, 0)
	if err != nil {
		return err
	}
	defer e.Close()
	failed := false
	for _, m := range meters {
		if err := e.svc.Deliver(ctx, cliActor(sio, *actor), c.ID, m); err != nil {
			fmt.Fprintf(sio.err, "%s: %v\n", m, err)
			failed = true
			continue
		}
		fmt.Fprintf(sio.out, "%s delivered\n", m)
	}
	if failed {
		return exitError{1}
	}
	return nil
}

func cmdCampaignCancel(ctx context.Context, sio stdio, args []string) error {
	fs := newFlags(sio, "keys campaign cancel", "CAMPAIGN")
	cf := addConfigFlags(fs, false)
	actor := fs.String("actor", "", "who is acting, for the audit log (default cli:$USER)")
	ref, _, err := campaignArg(sio, fs, args, false)
	if err != nil {
		return err
	}
	e, c, err := openCampaign(ctx, sio, cf, "keys campaign cancel", ref, false, 0)
	if err != nil {
		return err
	}
	defer e.Close()
	if err := e.svc.Cancel(ctx, cliActor(sio, *actor), c.ID); err != nil {
		return err
	}
	fmt.Fprintf(sio.out, "campaign %d %q cancelled\n", c.ID, c.Name)
	return nil
}
