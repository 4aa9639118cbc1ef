package provision

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"time"

	"sluice/keys"
	"sluice/kms"
	"sluice/store"
)

// ErrNotRegistered is returned by IssueRegistered for a request whose meter
// the head-end does not know (or has retired): keys are only ever issued to
// meters in the registry, so a stolen factory request buys nothing.
var ErrNotRegistered = errors.New("provision: meter not registered or not active")

// ErrOtherBoard is returned by IssueRegistered for a request whose identity
// key differs from the board the meter was provisioned on before: a cloned
// board, or a swapped one, which an operator must confirm
// (IssueOptions.ReplaceBoard) after checking the meter in the field.
var ErrOtherBoard = errors.New("provision: request from another board than the meter's")

// IssueOptions are the operator's side of IssueRegistered.
type IssueOptions struct {
	Actor string    // who issues, for the audit log
	Now   time.Time // the audit record's time
	// ReplaceBoard accepts a request from a board other than the one the
	// meter was last provisioned on (a repaired meter). Audited.
	ReplaceBoard bool
}

// Issued is the outcome of IssueRegistered.
type Issued struct {
	Record      []byte
	Counter     uint32
	RootVersion int
	KeyVersion  uint16
}

// IssueRegistered issues the next provisioning record of a registered meter,
// the head-end's side of the factory flow: it reads the meter, derives its
// keys under the newest meter root at the meter's key version, signs the
// record with the management key, and only then records the counter and the
// root version (with an audit record by actor) in a conditional update. The
// KMS work stays outside the transaction (it writes its own key-use audit
// records, and SQLite has one writer); two issuers racing for one meter both
// sign, but only one record is stored and returned, the other gets
// store.ErrConflict and its record is dropped unseen.
//
// The root version is pinned per meter because the head-end derives the
// meter's keys again later (telemetry MACs, cards) and must use the root the
// meter holds keys from, whatever rotations happen after. Issuing again (a
// lost record, a re-key after a root rotation) takes the next counter; a
// meter that applies the newer record can no longer apply the older one.
//
// The board is pinned too: the first record binds the meter to the identity
// key of the request it answered, and a later request with another identity
// gets ErrOtherBoard unless opt.ReplaceBoard.
func IssueRegistered(ctx context.Context, st store.Store, km kms.KeyManager, req *Request, opt IssueOptions) (Issued, error) {
	if req == nil || req.raw == nil {
		return Issued{}, fmt.Errorf("%w: request not parsed with ParseRequest", ErrInvalid)
	}
	number := strconv.FormatUint(req.MeterID, 10)
	var m store.Meter
	err := st.Read(ctx, func(tx store.Tx) error {
		var err error
		m, err = tx.Meters().ByNumber(ctx, number)
		return err
	})
	switch {
	case errors.Is(err, store.ErrNotFound):
		return Issued{}, fmt.Errorf("%w: meter %s", ErrNotRegistered, number)
	case err != nil:
		return Issued{}, fmt.Errorf("provision meter %s: %w", number, err)
	case m.Status != "active":
		return Issued{}, fmt.Errorf("%w: meter %s is %s", ErrNotRegistered, number, m.Status)
	case m.ProvisionCounter >= 0xffffffff:
		return Issued{}, fmt.Errorf("%w: meter %s has used every provisioning counter", ErrInvalid, number)
	}
	replaced := m.ProvisionIdentity != nil && !bytes.Equal(m.ProvisionIdentity, req.Identity)
	if replaced && !opt.ReplaceBoard {
		return Issued{}, fmt.Errorf("%w: meter %s was provisioned on board %x, the request comes from %x", ErrOtherBoard, number, m.ProvisionIdentity[:8], []byte(req.Identity[:8]))
	}
	_, kv := m.KeyVersions() // the root is the newest, not the meter's old one
	signer, err := kms.Signer(ctx, km, kms.Ref(keys.ManagementSigning))
	if err != nil {
		return Issued{}, fmt.Errorf("provision: management key: %w", err)
	}
	root, err := km.Key(ctx, kms.Ref(keys.MeterRoot))
	if err != nil {
		return Issued{}, fmt.Errorf("provision: meter root: %w", err)
	}
	trust, err := KMSTrust(ctx, km)
	if err != nil {
		return Issued{}, err
	}
	svc, err := NewService(signer, KMSDerive(km, root.Ref(), func(uint64) uint16 { return kv }))
	if err != nil {
		return Issued{}, err
	}
	out := Issued{Counter: uint32(m.ProvisionCounter + 1), RootVersion: root.Version, KeyVersion: kv}
	rec, err := svc.Provision(ctx, req, Params{Counter: out.Counter, Trust: trust})
	if err != nil {
		return Issued{}, err
	}
	err = st.Tx(ctx, func(tx store.Tx) error {
		if err := tx.Meters().Provisioned(ctx, m.ID, root.Version, int64(out.Counter), req.Identity); err != nil {
			return err
		}
		return store.AppendAudit(ctx, tx, opt.Now.UTC(), opt.Actor, "meter.provision", "meter/"+number, map[string]any{
			"counter": out.Counter, "root_version": root.Version, "key_version": kv, "model": req.Model,
			"identity": hex.EncodeToString(req.Identity), "board_replaced": replaced,
		})
	})
	if err != nil {
		return Issued{}, fmt.Errorf("provision meter %s: %w", number, err)
	}
	out.Record = rec
	return out, nil
}
