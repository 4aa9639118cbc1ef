package report

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"sluice/ledger"
	"sluice/store"
	"sluice/tariff"
)

var allFilters = []string{"supply_group", "vendor", "operator"}

func money(names ...string) []Column {
	var cs []Column
	for _, n := range names {
		cs = append(cs, Column{Name: n, Sum: true})
	}
	return cs
}

func cols(names ...string) []Column {
	var cs []Column
	for _, n := range names {
		cs = append(cs, Column{Name: n})
	}
	return cs
}

func definitions() []definition {
	return []definition{
		{Info{"alerts", "Revenue-protection alerts open at some time in the range, and those resolved in it", []string{"supply_group"}},
			append(cols("id", "subject", "rule", "severity", "state", "first_at", "last_at", "resolved_at", "resolved_by", "summary"),
				money("alerts", "open", "resolved", "occurrences")...), alertsReport},
		{Info{"campaigns", "Key-change campaigns running in the range: meters by state", []string{}},
			append(cols("campaign", "kind", "state", "created_at", "finished_at"), money("meters", "pending", "issued", "delivered", "confirmed", "failed")...), campaignsReport},
		{Info{"consumption", "Water consumed by day, supply group and area, from meter readings", []string{"supply_group"}},
			append(cols("day", "supply_group", "area"), money("readings", "litres", "reverse_litres", "resets")...), consumptionReport},
		{Info{"debt", "Debt recovered by day and vending point", allFilters},
			append(cols("day", "vendor"), money("purchases", "recovered_cents", "returned_cents", "net_cents")...), debtReport},
		{Info{"free-water", "Free basic water issued by day, supply group and area", allFilters},
			append(cols("day", "supply_group", "area"), money("tokens", "litres", "value_cents")...), freeWaterReport},
		{Info{"sales", "Sales by tariff block and fixed charge, with VAT", allFilters},
			append(cols("tariff", "kind", "line", "purchases"), money("litres", "amount_cents", "vat_cents", "net_cents")...), salesReport},
		{Info{"settlement", "Daily vendor settlement: opening float, deposits, vends, refunds, fees, closing float, difference", []string{"vendor", "operator"}},
			append(append(cols("day", "vendor", "opening_cents"), money("deposits_cents", "vends_cents", "refunds_cents", "fees_cents", "other_cents")...),
				append(cols("closing_cents"), money("sold_cents", "difference_cents")...)...), settlementReport},
		{Info{"tokens", "Tokens issued by day, operator and class (credit, key change, engineering)", allFilters},
			append(cols("day", "operator", "class"), money("tokens", "litres")...), tokensReport},
		{Info{"vends", "Purchase journal: one line per purchase or reversal", allFilters},
			append(cols("time", "entry", "reference", "vendor", "operator", "meter", "supply_group", "area"),
				money("tendered_cents", "paid_cents", "litres", "free_litres", "debt_cents", "vat_cents")...), vendsReport},
	}
}

// receipt is the part of a stored vend.Receipt the reports read.
type receipt struct {
	Reference  string            `json:"reference"`
	Litres     int64             `json:"litres"`
	FreeLitres int64             `json:"free_litres"`
	Breakdown  *tariff.Breakdown `json:"breakdown"`
}

func decodeReceipt(s store.SaleRow) (receipt, error) {
	var r receipt
	if err := json.Unmarshal(s.Receipt, &r); err != nil {
		return r, fmt.Errorf("stored receipt of purchase %d: %w", s.PurchaseID, err)
	}
	if r.Breakdown == nil {
		return r, fmt.Errorf("stored receipt of purchase %d has no breakdown", s.PurchaseID)
	}
	return r, nil
}

// eachSale decodes every sale in range.
func eachSale(ctx context.Context, tx store.Tx, p Params, fn func(store.SaleRow, receipt) error) error {
	return tx.Reports().Sales(ctx, p.filter(), func(s store.SaleRow) error {
		r, err := decodeReceipt(s)
		if err != nil {
			return err
		}
		return fn(s, r)
	})
}

// groups accumulates summary lines keyed by K; memory grows with the
// number of lines, never with the rows folded into them.
type groups[K comparable] struct {
	m     map[K][]int64
	width int
}

func newGroups[K comparable](width int) *groups[K] {
	return &groups[K]{m: map[K][]int64{}, width: width}
}

func (g *groups[K]) add(k K, vals ...int64) {
	acc := g.m[k]
	if acc == nil {
		acc = make([]int64, g.width)
		g.m[k] = acc
	}
	for i, v := range vals {
		acc[i] += v
	}
}

func (g *groups[K]) each(less func(a, b K) int, fn func(K, []int64) error) error {
	keys := make([]K, 0, len(g.m))
	for k := range g.m {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, less)
	for _, k := range keys {
		if err := fn(k, g.m[k]); err != nil {
			return err
		}
	}
	return nil
}

func vendsReport(ctx context.Context, s *Service, tx store.Tx, p Params, emit func(...any) error) error {
	return eachSale(ctx, tx, p, func(sr store.SaleRow, r receipt) error {
		b, sg := r.Breakdown, sr.Sign
		return emit(sr.At.Format("2006-01-02T15:04:05Z07:00"), sr.EntryID, r.Reference, sr.Vendor, sr.Operator, sr.Meter, sr.SupplyGroup, sr.Area,
			sg*sr.Tendered, sg*sr.Paid, sg*r.Litres, sg*r.FreeLitres, sg*int64(b.Debt), sg*int64(b.VAT))
	})
}

type salesKey struct {
	tariff string
	kind   string // "block" sorts before "fixed"
	block  int
	name   string
}

func salesReport(ctx context.Context, s *Service, tx store.Tx, p Params, emit func(...any) error) error {
	g := newGroups[salesKey](5)
	err := eachSale(ctx, tx, p, func(sr store.SaleRow, r receipt) error {
		b, sg := r.Breakdown, sr.Sign
		for _, bl := range b.Blocks {
			g.add(salesKey{b.Tariff, "block", bl.Block, ""}, sg, sg*int64(bl.Litres), sg*int64(bl.Amount), sg*int64(bl.VAT), sg*int64(bl.Amount-bl.VAT))
		}
		for _, f := range b.Fixed {
			g.add(salesKey{b.Tariff, "fixed", 0, f.Name}, sg, 0, sg*int64(f.Amount), sg*int64(f.VAT), sg*int64(f.Amount-f.VAT))
		}
		return nil
	})
	if err != nil {
		return err
	}
	return g.each(func(a, b salesKey) int {
		return cmp.Or(strings.Compare(a.tariff, b.tariff), strings.Compare(a.kind, b.kind), cmp.Compare(a.block, b.block), strings.Compare(a.name, b.name))
	}, func(k salesKey, v []int64) error {
		line := k.name
		if k.kind == "block" {
			line = fmt.Sprintf("block %d", k.block)
		}
		return emit(k.tariff, k.kind, line, v[0], v[1], v[2], v[3], v[4])
	})
}

type freeKey struct{ day, sg, area string }

func freeWaterReport(ctx context.Context, s *Service, tx store.Tx, p Params, emit func(...any) error) error {
	g := newGroups[freeKey](3)
	err := eachSale(ctx, tx, p, func(sr store.SaleRow, r receipt) error {
		if r.FreeLitres == 0 && r.Breakdown.FreeValue == 0 {
			return nil
		}
		g.add(freeKey{s.day(sr.At), sr.SupplyGroup, sr.Area}, sr.Sign, sr.Sign*r.FreeLitres, sr.Sign*int64(r.Breakdown.FreeValue))
		return nil
	})
	if err != nil {
		return err
	}
	return g.each(func(a, b freeKey) int {
		return cmp.Or(strings.Compare(a.day, b.day), strings.Compare(a.sg, b.sg), strings.Compare(a.area, b.area))
	}, func(k freeKey, v []int64) error { return emit(k.day, k.sg, k.area, v[0], v[1], v[2]) })
}

type dayVendor struct{ day, vendor string }

func byDayVendor(a, b dayVendor) int {
	return cmp.Or(strings.Compare(a.day, b.day), strings.Compare(a.vendor, b.vendor))
}

func debtReport(ctx context.Context, s *Service, tx store.Tx, p Params, emit func(...any) error) error {
	g := newGroups[dayVendor](3)
	err := eachSale(ctx, tx, p, func(sr store.SaleRow, r receipt) error {
		d := int64(r.Breakdown.Debt)
		if d == 0 {
			return nil
		}
		k := dayVendor{s.day(sr.At), sr.Vendor}
		if sr.Sign > 0 {
			g.add(k, 1, d, 0)
		} else {
			g.add(k, -1, 0, d)
		}
		return nil
	})
	if err != nil {
		return err
	}
	return g.each(byDayVendor, func(k dayVendor, v []int64) error { return emit(k.day, k.vendor, v[0], v[1], v[2], v[1]-v[2]) })
}

type tokenKey struct{ day, operator, class string }

// Token classes as the report names them.
const (
	ClassCredit      = "credit"
	ClassKeyChange   = "key_change"
	ClassEngineering = "engineering"
)

func tokenClass(kind string) string {
	switch kind {
	case store.TokenCredit, store.TokenFreeWater:
		return ClassCredit
	case store.TokenKeyChange:
		return ClassKeyChange
	}
	return ClassEngineering
}

func tokensReport(ctx context.Context, s *Service, tx store.Tx, p Params, emit func(...any) error) error {
	g := newGroups[tokenKey](2)
	err := tx.Reports().Tokens(ctx, p.filter(), func(t store.TokenReportRow) error {
		g.add(tokenKey{s.day(t.At), t.Operator, tokenClass(t.Kind)}, 1, t.Litres)
		return nil
	})
	if err != nil {
		return err
	}
	return g.each(func(a, b tokenKey) int {
		return cmp.Or(strings.Compare(a.day, b.day), strings.Compare(a.operator, b.operator), strings.Compare(a.class, b.class))
	}, func(k tokenKey, v []int64) error { return emit(k.day, k.operator, k.class, v[0], v[1]) })
}

// settlementReport folds the float postings of the range into one line per
// vendor and day. Floats are liabilities (credit balances), so the money a
// vendor has available is minus its account's balance.
func settlementReport(ctx context.Context, s *Service, tx store.Tx, p Params, emit func(...any) error) error {
	vendor := p.Vendor
	if p.Operator != "" {
		o, err := tx.Operators().ByUsername(ctx, p.Operator)
		if errors.Is(err, store.ErrNotFound) {
			return fieldErr("operator", "no operator %q", p.Operator)
		}
		if err != nil {
			return err
		}
		if o.VendorID == 0 {
			return fieldErr("operator", "operator %s sells for no vending point", p.Operator)
		}
		v, err := tx.Vendors().ByID(ctx, o.VendorID)
		if err != nil {
			return err
		}
		if vendor != "" && vendor != v.Code {
			return fieldErr("operator", "operator %s sells for %s, not %s", p.Operator, v.Code, vendor)
		}
		vendor = v.Code
	}
	prefix := string(ledger.Float) + ":" + vendor
	match := func(account string) (string, bool) {
		code, ok := strings.CutPrefix(account, string(ledger.Float)+":")
		return code, ok && (vendor == "" || code == vendor)
	}
	opening := map[string]int64{}
	err := tx.Reports().Balances(ctx, prefix, p.From, func(account, unit string, amount int64) error {
		if code, ok := match(account); ok {
			opening[code] -= amount
		}
		return nil
	})
	if err != nil {
		return err
	}
	// deposits, vends, refunds, fees, other: available money in (+) or out (-)
	g := newGroups[dayVendor](5)
	err = tx.Reports().Postings(ctx, p.filter(), prefix, func(r store.PostingRow) error {
		code, ok := match(r.Account)
		if !ok {
			return nil
		}
		k := dayVendor{s.day(r.At), code}
		switch ledger.Type(r.EntryType) {
		case ledger.TypeDeposit:
			g.add(k, -r.Amount, 0, 0, 0, 0)
		case ledger.TypePurchase:
			g.add(k, 0, r.Amount, 0, 0, 0)
		case ledger.TypeReversal:
			g.add(k, 0, 0, -r.Amount, 0, 0)
		case ledger.TypeFee:
			g.add(k, 0, 0, 0, r.Amount, 0)
		default:
			g.add(k, 0, 0, 0, 0, -r.Amount)
		}
		return nil
	})
	if err != nil {
		return err
	}
	vendorIDs := map[string]int64{}
	byVendorDay := func(a, b dayVendor) int {
		return cmp.Or(strings.Compare(a.vendor, b.vendor), strings.Compare(a.day, b.day))
	}
	return g.each(byVendorDay, func(k dayVendor, v []int64) error {
		id, ok := vendorIDs[k.vendor]
		if !ok {
			vd, err := tx.Vendors().ByCode(ctx, k.vendor)
			if err != nil {
				return fmt.Errorf("vendor %s: %w", k.vendor, err)
			}
			id, vendorIDs[k.vendor] = vd.ID, vd.ID
		}
		// The daily-limit counter is vending's own record of what was sold
		// that day, kept apart from the ledger: the difference shows a vend
		// whose ledger entry is missing, or the other way round. It counts
		// the whole civil day, so a range cutting a day shows a difference
		// on the days it cuts.
		sold, err := tx.Vendors().DaySales(ctx, id, k.day)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		open := opening[k.vendor]
		closing := open + v[0] - v[1] + v[2] - v[3] + v[4]
		opening[k.vendor] = closing
		return emit(k.day, k.vendor, open, v[0], v[1], v[2], v[3], v[4], closing, sold, sold-v[1])
	})
}

const stamp = "2006-01-02T15:04:05Z07:00"

func timeText(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(stamp)
}

func alertsReport(ctx context.Context, s *Service, tx store.Tx, p Params, emit func(...any) error) error {
	return tx.Reports().Alerts(ctx, p.filter(), func(a store.Alert) error {
		var open, resolved int64 = 1, 0
		if a.State == store.AlertResolved {
			open, resolved = 0, 1
		}
		return emit(a.ID, a.Subject, a.Rule, a.Severity, a.State, timeText(a.FirstAt), timeText(a.LastAt), timeText(a.ResolvedAt), a.ResolvedBy, a.Summary,
			int64(1), open, resolved, a.Count)
	})
}

// maxCampaigns bounds the campaigns listed; a utility runs a handful.
const maxCampaigns = 10000

func campaignsReport(ctx context.Context, s *Service, tx store.Tx, p Params, emit func(...any) error) error {
	cs, err := tx.Campaigns().List(ctx, maxCampaigns)
	if err != nil {
		return err
	}
	slices.SortFunc(cs, func(a, b store.Campaign) int { return cmp.Compare(a.ID, b.ID) })
	for _, c := range cs {
		if !c.CreatedAt.Before(p.To) || (!c.FinishedAt.IsZero() && c.FinishedAt.Before(p.From)) {
			continue
		}
		n, err := tx.Campaigns().Counts(ctx, c.ID)
		if err != nil {
			return err
		}
		var total int64
		for _, v := range n {
			total += v
		}
		if err := emit(c.Name, c.Kind, c.State, timeText(c.CreatedAt), timeText(c.FinishedAt), total,
			n[store.CampaignPending], n[store.CampaignIssued], n[store.CampaignDelivered], n[store.CampaignConfirmed], n[store.CampaignFailed]); err != nil {
			return err
		}
	}
	return nil
}

type areaKey struct{ day, sg, area string }

// consumptionReport adds up the growth of each meter's forward register
// between consecutive readings in the range, on the day of the later
// reading; a meter's first reading in the range is its baseline. A register
// that went backwards (meter replaced, or tampered with) adds nothing and is
// counted under resets.
func consumptionReport(ctx context.Context, s *Service, tx store.Tx, p Params, emit func(...any) error) error {
	g := newGroups[areaKey](4)
	var prev store.ReadingRow
	err := tx.Reports().Readings(ctx, p.filter(), func(r store.ReadingRow) error {
		k := areaKey{s.day(r.Time), r.SupplyGroup, r.Area}
		switch {
		case r.MeterID != prev.MeterID:
			g.add(k, 1, 0, 0, 0)
		case r.Forward < prev.Forward || r.Reverse < prev.Reverse:
			g.add(k, 1, 0, 0, 1)
		default:
			g.add(k, 1, r.Forward-prev.Forward, r.Reverse-prev.Reverse, 0)
		}
		prev = r
		return nil
	})
	if err != nil {
		return err
	}
	return g.each(func(a, b areaKey) int {
		return cmp.Or(strings.Compare(a.day, b.day), strings.Compare(a.sg, b.sg), strings.Compare(a.area, b.area))
	}, func(k areaKey, v []int64) error { return emit(k.day, k.sg, k.area, v[0], v[1], v[2], v[3]) })
}
