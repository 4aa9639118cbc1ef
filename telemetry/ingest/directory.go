package ingest

import (
	"context"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"sluice/cmac"
	"sluice/keys"
	"sluice/kms"
	"sluice/store"
	"sluice/telemetry/broker"
	"sluice/telemetry/frame"
	"sluice/telemetry/topic"
)

// ErrUnknownMeter reports a meter number that is not registered.
var ErrUnknownMeter = errors.New("ingest: unknown meter")

// Meter is what the ingest needs to know about a registered meter.
type Meter struct {
	ID     int64 // store ID
	Number uint64
	Kind   string
	Key    *frame.Key
	// Password is the meter's MQTT password for the embedded broker.
	Password string
}

// Directory resolves meter numbers to registered meters and their keys.
type Directory interface {
	Meter(ctx context.Context, number uint64) (Meter, error)
}

// passwordLabel separates the MQTT password from every other use of the
// telemetry key (frames MAC "sluice telemetry" || ..., receipts "sluice
// receipt" || ...): a broker operator who sees passwords learns nothing
// about frame tags, and the reverse.
const passwordLabel = "sluice mqtt password"

// MQTTPassword is a meter's broker password: hex(AES-CMAC(telemetry key,
// "sluice mqtt password")). The meter computes it from the key it holds; the
// head-end from the KMS; nobody stores it.
func MQTTPassword(telemetryKey []byte) (string, error) {
	tag, err := cmac.Sum(telemetryKey, []byte(passwordLabel))
	if err != nil {
		return "", fmt.Errorf("ingest: MQTT password: %w", err)
	}
	return hex.EncodeToString(tag), nil
}

// KMSDirectory is the head-end's Directory: meters from the store,
// telemetry keys derived by the KMS (keys.MeterKey under the meter-root
// version the meter was provisioned under, at the meter's key version: a
// root rotation must not change the key of a meter already in the field),
// cached, since a derivation costs a
// KMS call (an HSM round trip) and a busy meter reports every few minutes.
// A key change must call Forget.
type KMSDirectory struct {
	st    store.Store
	km    kms.KeyManager
	root  kms.KeyRef
	cache sync.Map // uint64 -> Meter
	// unknown remembers numbers that are not registered, for a minute, so
	// a flood of frames or logins naming unregistered meters costs a map
	// lookup each rather than a database query.
	unknown sync.Map // uint64 -> time.Time
	now     func() time.Time
}

// unknownTTL is how long an unregistered number is remembered.
const unknownTTL = time.Minute

// NewKMSDirectory returns a directory over st and km.
func NewKMSDirectory(st store.Store, km kms.KeyManager) *KMSDirectory {
	return &KMSDirectory{st: st, km: km, root: kms.Ref(keys.MeterRoot), now: time.Now}
}

// Meter implements Directory.
func (d *KMSDirectory) Meter(ctx context.Context, number uint64) (Meter, error) {
	if v, ok := d.cache.Load(number); ok {
		return v.(Meter), nil
	}
	if v, ok := d.unknown.Load(number); ok && d.now().Sub(v.(time.Time)) < unknownTTL {
		return Meter{}, fmt.Errorf("meter %d: %w", number, ErrUnknownMeter)
	}
	var sm store.Meter
	err := d.st.Read(ctx, func(tx store.Tx) error {
		var err error
		sm, err = tx.Meters().ByNumber(ctx, strconv.FormatUint(number, 10))
		return err
	})
	if errors.Is(err, store.ErrNotFound) {
		d.unknown.Store(number, d.now())
		return Meter{}, fmt.Errorf("meter %d: %w", number, ErrUnknownMeter)
	}
	if err != nil {
		return Meter{}, fmt.Errorf("meter %d: %w", number, err)
	}
	if sm.Status != "" && sm.Status != "active" {
		return Meter{}, fmt.Errorf("meter %d is %s: %w", number, sm.Status, ErrUnknownMeter)
	}
	root := d.root
	var version uint16
	root.Version, version = sm.KeyVersions()
	k, _, err := keys.MeterKey(ctx, d.km, root, number, keys.Telemetry, version)
	if err != nil {
		return Meter{}, err
	}
	fk, err := frame.NewKey(k)
	if err != nil {
		return Meter{}, err
	}
	pw, err := MQTTPassword(k)
	if err != nil {
		return Meter{}, err
	}
	m := Meter{ID: sm.ID, Number: number, Kind: sm.Kind, Key: fk, Password: pw}
	d.cache.Store(number, m)
	return m, nil
}

// Forget drops a meter from the cache (after a key change or a status
// change), so the next frame derives its key again.
func (d *KMSDirectory) Forget(number uint64) {
	d.cache.Delete(number)
	d.unknown.Delete(number)
}

// Authenticate implements broker.Authenticator for the embedded broker:
// username = meter number (canonical decimal), password = MQTTPassword of
// its telemetry key; the ACL is topic.MeterACL (its own topics only).
func (d *KMSDirectory) Authenticate(ctx context.Context, username string, password []byte) (broker.ACL, error) {
	n, err := strconv.ParseUint(username, 10, 64)
	if err != nil || n == 0 || strconv.FormatUint(n, 10) != username {
		return broker.ACL{}, fmt.Errorf("username %q: %w", username, broker.ErrAuth)
	}
	m, err := d.Meter(ctx, n)
	if err != nil {
		return broker.ACL{}, fmt.Errorf("meter %d: %w: %v", n, broker.ErrAuth, err)
	}
	if subtle.ConstantTimeCompare([]byte(m.Password), password) != 1 {
		return broker.ACL{}, fmt.Errorf("meter %d: %w", n, broker.ErrAuth)
	}
	pub, sub := topic.MeterACL(n)
	return broker.ACL{Publish: pub, Subscribe: sub}, nil
}
