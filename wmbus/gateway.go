package wmbus

import (
	"bytes"
	"encoding/hex"
	"fmt"
)

// MaxTelegram bounds one telegram: the L-field allows 256 bytes, plus the
// DLL CRCs of frame format A.
const MaxTelegram = 256 + 2*17

// SplitGatewayPayload splits the payload of a gateway's MQTT message
// (topic sluice/v1/wmbus/{gateway}: ASCII hex, one telegram per line) into
// raw telegrams for Decode. Blank lines and spaces are ignored; a line that
// is not hex or is longer than any telegram fails the whole payload, naming
// the line, so a broken gateway is noticed rather than half-read.
func SplitGatewayPayload(p []byte) ([][]byte, error) {
	var out [][]byte
	for n, line := range bytes.Split(p, []byte{'\n'}) {
		line = bytes.ReplaceAll(bytes.TrimSpace(line), []byte{' '}, nil)
		if len(line) == 0 {
			continue
		}
		if len(line) > 2*MaxTelegram {
			return nil, fmt.Errorf("wmbus: gateway payload line %d: %d hex digits: %w", n+1, len(line), ErrLength)
		}
		b := make([]byte, hex.DecodedLen(len(line)))
		if _, err := hex.Decode(b, line); err != nil {
			return nil, fmt.Errorf("wmbus: gateway payload line %d: %w: %w", n+1, ErrRecord, err)
		}
		out = append(out, b)
	}
	return out, nil
}
