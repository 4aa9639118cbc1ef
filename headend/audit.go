package headend

import (
	"context"
	"net/http"

	"sluice/auditlog"
	"sluice/auth"
	"sluice/kms"
	"sluice/server"
	"sluice/store"
)

// auditRoutes lets auditors verify the whole audit chain, anchors included,
// from the console: the same check as `sluice audit verify`.
func auditRoutes(st store.Store, km kms.KeyManager) []server.Route {
	return []server.Route{{
		Method: "GET", Path: "/audit/verify", Roles: []string{auth.Auditor, auth.Admin}, Tag: "audit",
		Summary:  "Verify the sealed audit chain and its KMS-keyed anchors (constant memory; may take a while on a long chain)",
		Response: auditlog.Report{},
		Handler: func(ctx context.Context, r *http.Request, p auth.Principal) (any, error) {
			anchors, err := auditlog.NewKMSAnchors(ctx, km)
			if err != nil {
				return nil, server.Error(http.StatusServiceUnavailable, "unavailable", "", "the anchor key cannot be derived: "+err.Error())
			}
			return auditlog.Verify(ctx, st, anchors)
		},
	}}
}
