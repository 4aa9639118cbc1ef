package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"sluice/wmbus"
)

// cmdWmbus groups the wireless M-Bus tools.
func cmdWmbus(ctx context.Context, sio stdio, args []string) error {
	return subcommands(ctx, sio, "wmbus", args, []command{
		{"decode", "decrypt and decode one telegram given as hex", cmdWmbusDecode},
	})
}

// wmbusJSON is the --json output: id, manufacturer and total_m3 first, the
// fields scripts rely on, then the detail.
type wmbusJSON struct {
	ID           string          `json:"id"`
	Manufacturer string          `json:"manufacturer"`
	TotalM3      *float64        `json:"total_m3"`
	DeviceType   byte            `json:"device_type"`
	Security     string          `json:"security"`
	Status       []string        `json:"status,omitempty"`
	DefaultKey   string          `json:"default_key,omitempty"`
	Link         wmbus.Address   `json:"link"`
	Records      []wmbus.Record  `json:"records"`
	Telegram     *wmbus.Telegram `json:"-"`
}

func cmdWmbusDecode(_ context.Context, sio stdio, args []string) error {
	fs := newFlags(sio, "wmbus decode", "--key HEX TELEGRAM_HEX [--json]")
	keyHex := fs.String("key", "", "AES-128 key of the meter, 32 hex digits (omit for unencrypted telegrams)")
	asJSON := fs.Bool("json", false, "print a JSON object")
	// Flags may follow the telegram, as in the documented synopsis.
	var pos []string
	for {
		if err := parseFlags(fs, args); err != nil {
			return err
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if len(pos) != 1 {
		fs.Usage()
		return errUsage
	}
	var key []byte
	if *keyHex != "" {
		k, err := hex.DecodeString(strings.TrimSpace(*keyHex))
		if err != nil || len(k) != wmbus.KeySize {
			return fmt.Errorf("--key: want %d hex digits", 2*wmbus.KeySize)
		}
		key = k
	}
	t, err := wmbus.DecodeHex(pos[0], key)
	if err != nil {
		if errors.Is(err, wmbus.ErrNoKey) {
			return fmt.Errorf("%w (pass --key)", err)
		}
		return err
	}
	out := wmbusJSON{
		ID: t.ID(), Manufacturer: t.Meter.Manufacturer, DeviceType: t.Meter.DeviceType,
		Security: security(t), DefaultKey: t.DefaultKey, Link: t.Link, Records: t.Records,
	}
	if t.TPL != nil {
		out.Status = t.TPL.StatusFlags()
	}
	if m3, ok := t.TotalVolume(); ok {
		out.TotalM3 = &m3
	}
	if *asJSON {
		enc := json.NewEncoder(sio.out)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	fmt.Fprintf(sio.out, "id            %s\n", out.ID)
	fmt.Fprintf(sio.out, "manufacturer  %s\n", out.Manufacturer)
	if out.TotalM3 != nil {
		fmt.Fprintf(sio.out, "total_m3      %g\n", *out.TotalM3)
	} else {
		fmt.Fprintf(sio.out, "total_m3      (no volume register)\n")
	}
	fmt.Fprintf(sio.out, "security      %s\n", out.Security)
	if len(out.Status) > 0 {
		fmt.Fprintf(sio.out, "status        %s\n", strings.Join(out.Status, ", "))
	}
	if out.DefaultKey != "" {
		fmt.Fprintf(sio.err, "warning: the key is a published default key (%s): this meter's data is neither secret nor authentic; change its key\n", out.DefaultKey)
	}
	return nil
}

// security names the protection the telegram had.
func security(t *wmbus.Telegram) string {
	var s []string
	if t.ELL != nil && t.ELL.Encrypted {
		s = append(s, "ELL AES-128-CTR")
	}
	if t.TPL != nil {
		switch t.TPL.Mode {
		case wmbus.Mode5:
			s = append(s, "TPL mode 5 AES-128-CBC")
		case wmbus.Mode7:
			s = append(s, "TPL mode 7 AES-128-CBC + AES-CMAC")
		}
	}
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}
