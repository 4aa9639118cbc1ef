package attack

import (
	"context"
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"fmt"

	"sluice/keys"
	"sluice/kms"
	"sluice/wmbus"
)

// Encrypted telegrams of real meters with their keys, as published in the
// test suites of wmbusmeters and jMBus (copied from wmbus/testdata); one of
// them runs on a manufacturer's fleet-wide default key.
//
//go:embed testdata/wmbus-telegrams.json
var wmbusTelegrams []byte

func wmbusDefaultKey() Attack {
	return Attack{
		ID:       "13",
		Name:     "wireless M-Bus meters on a manufacturer default key",
		Weakness: "meters shipped with a fleet-wide default AES key: anyone reads and forges their telegrams (no MAC in mode 5 or ELL)",
		Defence:  "the decoder names any published default key a telegram decrypts under, so the head-end flags the meter and distrusts its readings; Sluice's own wM-Bus keys are diversified per meter by the KMS",
		Play: func(ctx context.Context, lab *Lab, r *Recorder) error {
			var set struct {
				Telegrams []struct {
					Meter, ID, Key, Telegram string
				} `json:"telegrams"`
			}
			if err := json.Unmarshal(wmbusTelegrams, &set); err != nil {
				return err
			}
			defaults := wmbus.DefaultKeys()
			readable, flagged, falseFlags := 0, 0, 0
			var names []string
			for _, t := range set.Telegrams {
				raw, err := hex.DecodeString(t.Telegram)
				if err != nil {
					return fmt.Errorf("telegram of %s: %w", t.Meter, err)
				}
				// The attacker: every published default key on every
				// telegram heard over the air.
				onDefault := false
				for _, d := range defaults {
					if _, err := wmbus.Decode(raw, d.Key[:]); err == nil {
						onDefault = true
					}
				}
				// The head-end: the key the meter was registered with.
				key, err := hex.DecodeString(t.Key)
				if err != nil {
					return err
				}
				tg, err := wmbus.Decode(raw, key)
				if err != nil {
					return fmt.Errorf("telegram of %s does not decode under its key: %w", t.Meter, err)
				}
				if onDefault {
					readable++
					if tg.DefaultKey != "" {
						flagged++
						names = append(names, t.Meter+" ("+tg.DefaultKey+")")
					}
				} else if tg.DefaultKey != "" {
					falseFlags++
				}
			}
			r.Measure("telegrams", float64(len(set.Telegrams)))
			r.Measure("readable_with_default_keys", float64(readable))
			r.Measure("flagged", float64(flagged))
			r.Observe("default-key meters detected", readable > 0 && flagged == readable && falseFlags == 0,
				"%d published telegrams tried against the %d known default keys: %d readable by anyone; the decoder flagged %d of them %v, and %d meters on their own keys",
				len(set.Telegrams), len(defaults), readable, flagged, names, falseFlags)

			// Sluice's own keys: derived per meter, none a default, no two
			// alike.
			const n = 500
			seen := map[string]bool{}
			bad := 0
			for id := uint64(1); id <= n; id++ {
				k, _, err := keys.MeterKey(ctx, lab.KM, kms.Ref(keys.MeterRoot), 130_000_000+id, keys.WMBus, 1)
				if err != nil {
					return err
				}
				if wmbus.DefaultKeyName(k) != "" || seen[string(k)] {
					bad++
				}
				seen[string(k)] = true
			}
			r.Measure("derived_keys_checked", n)
			r.Observe("Sluice's own wM-Bus keys", bad == 0,
				"%d meters' wM-Bus keys derived through the KMS: %d equal a default key or another meter's key", n, bad)
			return nil
		},
	}
}
