package service

import (
	"context"
	"fmt"

	"sluice/campaign"
	"sluice/meter"
	"sluice/telemetry/frame"
)

// keyEvidence is what a stored frame says about the meter's keys, for
// key-change campaigns to confirm against: a completed STS key-change set
// (event "key changed" with value 0), a newly trusted voucher key (the same
// event carrying the key ID), or the voucher sequence the meter has taken
// (an accepted or duplicate voucher acknowledgement).
func keyEvidence(f *frame.Frame) []campaign.Evidence {
	src := fmt.Sprintf("telemetry frame %d", f.Counter)
	var out []campaign.Evidence
	switch f.Kind {
	case frame.KindEvent:
		for _, e := range f.Events {
			if e.Kind != uint8(meter.EvKeyChanged) {
				continue
			}
			ev := campaign.Evidence{Source: src, At: e.Time}
			if e.Value == 0 {
				ev.STSKeyChanged = true
			} else {
				ev.TrustedKeyIDs = []uint32{uint32(e.Value)}
			}
			out = append(out, ev)
		}
	case frame.KindAck:
		if f.Ack.Subject == frame.SubjectVoucher && (f.Ack.Result == frame.Accepted || f.Ack.Result == frame.Duplicate) {
			out = append(out, campaign.Evidence{Source: src, At: f.Time, VoucherSeq: int64(f.Ack.Ref)})
		}
	}
	return out
}

// confirmKeys hands a frame's key evidence to the key-change campaigns.
func (s *Service) confirmKeys(ctx context.Context, meterID int64, number uint64, f *frame.Frame) {
	for _, ev := range keyEvidence(f) {
		if _, err := campaign.Confirm(ctx, s.deps.Store, meterID, ev); err != nil {
			s.log.Error("key-change campaign confirmation", "meter", number, "err", err)
		}
	}
}
