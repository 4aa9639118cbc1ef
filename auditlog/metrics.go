package auditlog

import (
	"context"
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"sluice/store"
)

// Collector exports the audit log's state to Prometheus at each scrape:
// sluice_audit_pending_records (committed but not yet chained: it should
// stay near zero; growth means the sealer is failing) and
// sluice_audit_sealed_records (the chain's head sequence number).
type Collector struct {
	st             store.Store
	pending, head  *prometheus.Desc
	scrapeTimeout  time.Duration
	scrapeFailures prometheus.Counter
}

// NewCollector returns a collector reading st; register it with the
// server's registry.
func NewCollector(st store.Store) *Collector {
	return &Collector{
		st:            st,
		pending:       prometheus.NewDesc("sluice_audit_pending_records", "Audit records committed but not yet sealed into the chain.", nil, nil),
		head:          prometheus.NewDesc("sluice_audit_sealed_records", "Sequence number of the audit chain's head.", nil, nil),
		scrapeTimeout: 2 * time.Second,
		scrapeFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sluice_audit_scrape_errors_total", Help: "Failures reading the audit log's state for metrics.",
		}),
	}
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.pending
	ch <- c.head
	c.scrapeFailures.Describe(ch)
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), c.scrapeTimeout)
	defer cancel()
	var pending, head int64
	err := c.st.Read(ctx, func(tx store.Tx) error {
		var err error
		if pending, err = tx.Audit().CountPending(ctx); err != nil {
			return err
		}
		h, err := tx.Audit().Head(ctx)
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		head = h.Seq
		return err
	})
	if err != nil {
		c.scrapeFailures.Inc()
	} else {
		ch <- prometheus.MustNewConstMetric(c.pending, prometheus.GaugeValue, float64(pending))
		ch <- prometheus.MustNewConstMetric(c.head, prometheus.GaugeValue, float64(head))
	}
	c.scrapeFailures.Collect(ch)
}
