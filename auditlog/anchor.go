package auditlog

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"

	"sluice/audit"
	"sluice/keys"
	"sluice/kms"
)

// AnchorLabel is the SP 800-108 label under which the anchor key is derived
// from the meter root. It differs from every per-meter label
// ("sluice/meter/..."), so the anchor key is independent of all meter keys.
const AnchorLabel = "sluice/audit-anchor"

// anchorContext is the derivation context: the anchor algorithm, so a
// future anchor kind under the same label gets an unrelated key.
const anchorContext = "hmac-sha256 v1"

// ErrAnchorFormat reports an anchor that is not version || MAC.
var ErrAnchorFormat = errors.New("auditlog: malformed anchor")

// KMSAnchors signs and verifies anchors with HMAC-SHA-256 under a 256-bit
// key derived in the KMS from the meter root (kms.Derive, label AnchorLabel).
// The root never leaves the KMS (an HSM computes the derivation); the
// derived key lives only in this process's memory, never in the database.
//
// An anchor is 36 bytes: the meter-root version the key was derived under
// (uint32, big-endian) followed by the 32-byte HMAC of audit.AnchorMessage.
// Naming the version keeps old anchors verifiable after the meter root is
// rotated: new anchors use the newest version, and verification derives
// whichever version an anchor names.
//
// HMAC anchors can be checked only by a holder of the KMS, who could also
// forge them; that fits an audit run by the utility with its key custodians.
type KMSAnchors struct {
	ctx     context.Context
	km      kms.KeyManager
	root    string
	signVer int

	mu   sync.Mutex
	macs map[int]*audit.HMAC // by root version
}

// NewKMSAnchors derives the anchor key under the newest meter root. ctx is
// kept for the derivations later verifications need. It fails when the KMS
// has no meter root (run `sluice keys init`).
func NewKMSAnchors(ctx context.Context, km kms.KeyManager) (*KMSAnchors, error) {
	a := &KMSAnchors{ctx: ctx, km: km, root: keys.MeterRoot, macs: map[int]*audit.HMAC{}}
	info, err := km.Key(ctx, kms.Ref(a.root))
	if err != nil {
		return nil, fmt.Errorf("auditlog: anchor key: %w", err)
	}
	if _, err := a.mac(info.Version); err != nil {
		return nil, err
	}
	a.signVer = info.Version
	return a, nil
}

// mac returns the anchor key derived under one version of the root.
func (a *KMSAnchors) mac(version int) (*audit.HMAC, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if m, ok := a.macs[version]; ok {
		return m, nil
	}
	key, _, err := kms.Derive(a.ctx, a.km, kms.KeyRef{Name: a.root, Version: version}, []byte(AnchorLabel), []byte(anchorContext), 256)
	if err != nil {
		return nil, fmt.Errorf("auditlog: deriving the anchor key under %s@%d: %w", a.root, version, err)
	}
	m, err := audit.NewHMAC(key)
	clear(key)
	if err != nil {
		return nil, err
	}
	a.macs[version] = m
	return m, nil
}

// RootVersion is the meter-root version new anchors are made under.
func (a *KMSAnchors) RootVersion() int { return a.signVer }

// SignAnchor implements audit.Signer.
func (a *KMSAnchors) SignAnchor(msg []byte) ([]byte, error) {
	m, err := a.mac(a.signVer)
	if err != nil {
		return nil, err
	}
	tag, err := m.SignAnchor(msg)
	if err != nil {
		return nil, err
	}
	return append(binary.BigEndian.AppendUint32(make([]byte, 0, 4+len(tag)), uint32(a.signVer)), tag...), nil
}

// VerifyAnchor implements audit.AnchorVerifier.
func (a *KMSAnchors) VerifyAnchor(msg, sig []byte) error {
	if len(sig) != 4+32 {
		return fmt.Errorf("%w: %d bytes, want 36", ErrAnchorFormat, len(sig))
	}
	v := binary.BigEndian.Uint32(sig)
	if v == 0 || v > 1<<20 {
		return fmt.Errorf("%w: meter-root version %d", ErrAnchorFormat, v)
	}
	m, err := a.mac(int(v))
	if err != nil {
		return err
	}
	return m.VerifyAnchor(msg, sig[4:])
}
