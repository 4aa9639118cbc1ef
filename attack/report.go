package attack

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// WriteJSON writes the reports as one JSON array.
func WriteJSON(w io.Writer, reports []Report) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if reports == nil {
		reports = []Report{}
	}
	return enc.Encode(reports)
}

// WriteTable writes a summary table (one row per attack: outcome, cases
// defeated), then per attack the weakness it reproduces, the expected
// defence and the evidence of every case, and a verdict line. Pending and succeeded rows are marked so they cannot be
// missed.
func WriteTable(w io.Writer, reports []Report, seed uint64) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tATTACK\tOUTCOME\tCASES DEFEATED\tSECONDS")
	for _, r := range reports {
		n, d := 0, 0
		for _, c := range r.Cases {
			if c.Outcome != Reproduced {
				n++
			}
			if c.Outcome == Defeated {
				d++
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d/%d\t%.2f\n", r.ID, r.Name, outcomeLabel(r.Outcome), d, n, r.Seconds)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, r := range reports {
		fmt.Fprintf(w, "\n[%s] %s: %s\n", r.ID, r.Name, outcomeLabel(r.Outcome))
		fmt.Fprintf(w, "  weakness: %s\n", r.Weakness)
		fmt.Fprintf(w, "  defence:  %s\n", r.Defence)
		for _, c := range r.Cases {
			fmt.Fprintf(w, "  - %s: %s: %s\n", outcomeLabel(c.Outcome), c.Name, strings.TrimPrefix(c.Evidence, "PENDING: "))
		}
		if r.Error != "" {
			fmt.Fprintf(w, "  - ERROR     %s\n", r.Error)
		}
	}
	counts := map[Outcome]int{}
	for _, r := range reports {
		counts[r.Outcome]++
	}
	verdict := "PASS: every attack that ran was defeated"
	if !AllDefeated(reports) {
		verdict = "FAIL: at least one attack succeeded or could not run"
	}
	var parts []string
	for _, o := range []Outcome{Defeated, Succeeded, Pending, Error} {
		if counts[o] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", counts[o], o))
		}
	}
	_, err := fmt.Fprintf(w, "\nseed %d: %s. %s (pending attacks are not counted as defeated).\n", seed, strings.Join(parts, ", "), verdict)
	return err
}

func outcomeLabel(o Outcome) string {
	switch o {
	case Succeeded:
		return "SUCCEEDED"
	case Pending:
		return "PENDING"
	case Error:
		return "ERROR"
	case Reproduced:
		return "weakness reproduced"
	}
	return string(o)
}
