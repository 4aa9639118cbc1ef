package ingest

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"time"

	"sluice/keys"
	"sluice/kms"
	"sluice/store"
	"sluice/wmbus"
)

// WMBus ingests the telegrams wireless M-Bus gateways forward (topic
// sluice/v1/wmbus/{gateway}, ASCII hex, one per line) for meters registered
// with their key. Keys are stored wrapped by the KMS (AES-GCM under the
// meter root, bound to the telegram address), unwrapped once and cached.
//
// Telegrams are matched to meters by their link-layer address (manufacturer
// and identification number, in clear in every telegram), the address a
// gateway hears. Mode 5 and ELL telegrams carry no MAC and no counter the
// head-end could check, so a reading from one is as trustworthy as the key
// is secret: a meter on a published manufacturer default key raises an alert
// (OnDefaultKey) and should get a key change.
type WMBus struct {
	st   store.Store
	km   kms.KeyManager
	now  func() time.Time
	keys sync.Map // address -> cached

	// OnDefaultKey is called when a telegram decrypted under a published
	// default key; OnStored with each stored reading.
	OnDefaultKey func(ctx context.Context, meterID int64, address, keyName string)
	OnStored     func(ctx context.Context, r store.Reading)
}

type cached struct {
	meterID int64
	key     []byte
	dflt    string
}

// NewWMBus returns a wM-Bus ingest over st and km.
func NewWMBus(st store.Store, km kms.KeyManager, now func() time.Time) *WMBus {
	if now == nil {
		now = time.Now
	}
	return &WMBus{st: st, km: km, now: now}
}

func wrapAAD(address string) []byte { return []byte("sluice wmbus key " + address) }

// Register stores a meter's wM-Bus address ("KAM76348799") and key, wrapped
// by the KMS. It reports whether the key is a published default key.
func (w *WMBus) Register(ctx context.Context, meterID int64, address string, key []byte) (defaultKey string, err error) {
	if len(key) != wmbus.KeySize {
		return "", fmt.Errorf("ingest: wM-Bus key: %d bytes, want %d", len(key), wmbus.KeySize)
	}
	if len(address) != 11 {
		return "", fmt.Errorf("ingest: wM-Bus address %q: want manufacturer and 8 digits, e.g. KAM76348799", address)
	}
	if _, ok := wmbus.MField(address[:3]); !ok {
		return "", fmt.Errorf("ingest: wM-Bus address %q: manufacturer must be three letters A-Z", address)
	}
	for _, c := range address[3:] {
		if c < '0' || c > '9' {
			return "", fmt.Errorf("ingest: wM-Bus address %q: identification must be 8 digits", address)
		}
	}
	info, err := w.km.Key(ctx, kms.Ref(keys.MeterRoot))
	if err != nil {
		return "", fmt.Errorf("ingest: wrap wM-Bus key: %w", err)
	}
	wrapped, err := w.km.Wrap(ctx, info.Ref(), key, wrapAAD(address))
	if err != nil {
		return "", fmt.Errorf("ingest: wrap wM-Bus key: %w", err)
	}
	dk := wmbus.DefaultKeyName(key)
	err = w.st.Tx(ctx, func(tx store.Tx) error {
		return tx.Telemetry().PutWMBusMeter(ctx, store.WMBusMeter{MeterID: meterID, Address: address, WrappedKey: wrapped,
			KeyName: info.Name, KeyVersion: info.Version, DefaultKey: dk, CreatedAt: w.now().UTC()})
	})
	if err != nil {
		return "", err
	}
	w.keys.Delete(address)
	return dk, nil
}

// LinkAddress returns the manufacturer and identification number of a raw
// telegram's link layer ("KAM76348799"), which travel in clear.
func LinkAddress(raw []byte) (string, error) {
	b, err := wmbus.StripCRC(raw)
	if err != nil {
		return "", err
	}
	if len(b) < 10 {
		return "", wmbus.ErrShort
	}
	m := strings.ToUpper(wmbus.ManufacturerCode(uint16(b[2]) | uint16(b[3])<<8))
	if _, ok := wmbus.MField(m); !ok {
		return "", fmt.Errorf("link layer M-field %02x%02x: not a manufacturer code: %w", b[3], b[2], wmbus.ErrRecord)
	}
	id := fmt.Sprintf("%02x%02x%02x%02x", b[7], b[6], b[5], b[4])
	if strings.Trim(id, "0123456789") != "" {
		return "", fmt.Errorf("link layer identification %s: not BCD: %w", id, wmbus.ErrRecord)
	}
	return m + id, nil
}

func (w *WMBus) key(ctx context.Context, address string) (cached, error) {
	if v, ok := w.keys.Load(address); ok {
		return v.(cached), nil
	}
	var m store.WMBusMeter
	err := w.st.Read(ctx, func(tx store.Tx) error {
		var err error
		m, err = tx.Telemetry().WMBusMeter(ctx, address)
		return err
	})
	if errors.Is(err, store.ErrNotFound) {
		return cached{}, fmt.Errorf("wM-Bus meter %s: %w", address, ErrUnknownMeter)
	}
	if err != nil {
		return cached{}, err
	}
	k, err := w.km.Unwrap(ctx, kms.KeyRef{Name: m.KeyName, Version: m.KeyVersion}, m.WrappedKey, wrapAAD(address))
	if err != nil {
		return cached{}, fmt.Errorf("wM-Bus meter %s: unwrap key: %w", address, err)
	}
	c := cached{meterID: m.MeterID, key: k, dflt: wmbus.DefaultKeyName(k)}
	w.keys.Store(address, c)
	return c, nil
}

// handle ingests one gateway message. It returns an error only for
// failures a redelivery may cure (database, KMS); bad telegrams are counted.
func (w *WMBus) handle(ctx context.Context, gateway string, payload []byte, in *Ingest) error {
	tgs, err := wmbus.SplitGatewayPayload(payload)
	if err != nil {
		in.count(WMBusRejected, 1)
		return nil
	}
	now := w.now().UTC()
	var rs []store.Reading
	for _, raw := range tgs {
		addr, err := LinkAddress(raw)
		if err != nil {
			in.count(WMBusRejected, 1)
			continue
		}
		c, err := w.key(ctx, addr)
		if errors.Is(err, ErrUnknownMeter) {
			in.count(WMBusRejected, 1)
			continue
		}
		if err != nil {
			return err
		}
		t, err := wmbus.Decode(raw, c.key)
		if err != nil {
			in.count(WMBusRejected, 1)
			in.log.Info("wM-Bus telegram refused", "gateway", gateway, "address", addr, "err", err)
			continue
		}
		m3, ok := t.TotalVolume()
		if !ok {
			in.count(WMBusRejected, 1)
			continue
		}
		if c.dflt != "" && w.OnDefaultKey != nil {
			w.OnDefaultKey(ctx, c.meterID, addr, c.dflt)
		}
		rs = append(rs, store.Reading{MeterID: c.meterID, Time: now, ReceivedAt: now, Forward: int64(math.Round(m3 * 1000)), Unit: 1})
	}
	if len(rs) == 0 {
		return nil
	}
	if err := w.st.Tx(ctx, func(tx store.Tx) error { return tx.Telemetry().StoreReadings(ctx, rs) }); err != nil {
		return err
	}
	in.count(WMBusStored, len(rs))
	if w.OnStored != nil {
		for _, r := range rs {
			w.OnStored(ctx, r)
		}
	}
	return nil
}
