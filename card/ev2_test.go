package card

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"os"
	"testing"

	"sluice/cmac"
	"sluice/kdf"
)

// vectors mirrors testdata/vectors.json, copied from the project's shared
// published vectors (RFC 4493, NXP AN10922, NXP AN12196).
type vectors struct {
	CMAC struct {
		Key   string `json:"key"`
		Cases []struct {
			Message, MAC string
		} `json:"cases"`
	} `json:"aes_cmac_rfc4493"`
	AN10922 struct {
		Key            string `json:"key"`
		M              string `json:"m"`
		DiversifiedKey string `json:"diversified_key"`
	} `json:"key_diversification_an10922"`
	EV2 struct {
		Key       string `json:"key"`
		ERndB     string `json:"e_rndb_from_card"`
		RndB      string `json:"rndb"`
		RndA      string `json:"rnda"`
		Part2     string `json:"e_rnda_rndb_rotated"`
		CardPart2 string `json:"card_response_part2"`
		TI        string `json:"ti"`
		SV1       string `json:"sv1"`
		SesEnc    string `json:"ses_auth_enc_key"`
		SesMAC    string `json:"ses_auth_mac_key"`
		Command   struct {
			CmdCtr    string `json:"cmd_ctr"`
			IV        string `json:"iv_command"`
			Plain     string `json:"plain_data"`
			Encrypted string `json:"encrypted_data"`
			MACInput  string `json:"mac_input"`
			MAC       string `json:"mac_truncated"`
		} `json:"command"`
	} `json:"ev2_mutual_authentication_an12196"`
}

func loadVectors(t testing.TB) vectors {
	t.Helper()
	b, err := os.ReadFile("testdata/vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	var v vectors
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	return v
}

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatalf("bad hex %q: %v", s, err)
	}
	return b
}

func TestRFC4493(t *testing.T) {
	v := loadVectors(t)
	for _, c := range v.CMAC.Cases {
		got, err := cmac.Sum(unhex(t, v.CMAC.Key), unhex(t, c.Message))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, unhex(t, c.MAC)) {
			t.Errorf("CMAC(%s) = %X, want %s", c.Message, got, c.MAC)
		}
	}
}

func TestAN10922(t *testing.T) {
	v := loadVectors(t).AN10922
	got, err := kdf.DiversifyAN10922(unhex(t, v.Key), unhex(t, v.M))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, unhex(t, v.DiversifiedKey)) {
		t.Fatalf("K_div = %X, want %s", got, v.DiversifiedKey)
	}
}

// TestAN12196 walks AuthenticateEV2First and one CommMode.Full command of
// AN12196 byte by byte, from both the reader's and the card's side.
func TestAN12196(t *testing.T) {
	v := loadVectors(t).EV2
	key := unhex(t, v.Key)
	rndA, rndB, ti := unhex(t, v.RndA), unhex(t, v.RndB), unhex(t, v.TI)

	// Card, pass 1: E(K, RndB).
	eRndB, err := cardAuthPart1(key, rndB)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(eRndB, unhex(t, v.ERndB)) {
		t.Fatalf("E(RndB) = %X, want %s", eRndB, v.ERndB)
	}

	// Reader, pass 2: E(K, RndA || RndB').
	ra := &readerAuth{key: key, rndA: rndA}
	part2, err := ra.part2(eRndB)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ra.rndB, rndB) {
		t.Fatalf("reader decrypted RndB %X, want %s", ra.rndB, v.RndB)
	}
	if !bytes.Equal(part2, unhex(t, v.Part2)) {
		t.Fatalf("E(RndA||RndB') = %X, want %s", part2, v.Part2)
	}

	// Card, pass 2: checks RndB', answers E(K, TI || RndA' || caps).
	ans, cardCh, err := cardAuthPart2(key, rndB, part2, ti)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(ans, unhex(t, v.CardPart2)) {
		t.Fatalf("card answer = %X, want %s", ans, v.CardPart2)
	}

	// Reader: checks RndA', derives the session.
	ch, err := ra.finish(ans)
	if err != nil {
		t.Fatal(err)
	}
	if got := sessionVector(0xA5, 0x5A, rndA, rndB); !bytes.Equal(got, unhex(t, v.SV1)) {
		t.Fatalf("SV1 = %X, want %s", got, v.SV1)
	}
	for _, c := range []*channel{ch, cardCh} {
		if !bytes.Equal(c.encKey[:], unhex(t, v.SesEnc)) || !bytes.Equal(c.macKey[:], unhex(t, v.SesMAC)) {
			t.Fatalf("session keys %X %X, want %s %s", c.encKey, c.macKey, v.SesEnc, v.SesMAC)
		}
		if !bytes.Equal(c.ti[:], ti) {
			t.Fatalf("TI = %X, want %s", c.ti, v.TI)
		}
	}

	// The ChangeFileSettings command with CmdCtr = 1 (little-endian 0100).
	cmd := v.Command
	ch.ctr, cardCh.ctr = 1, 1
	if got := ch.iv(0xA5, 0x5A, 1); !bytes.Equal(got, unhex(t, cmd.IV)) {
		t.Fatalf("IV = %X, want %s", got, cmd.IV)
	}
	body, err := ch.sealCommand(0x5F, []byte{0x02}, unhex(t, cmd.Plain))
	if err != nil {
		t.Fatal(err)
	}
	want := append(append([]byte{0x02}, unhex(t, cmd.Encrypted)...), unhex(t, cmd.MAC)...)
	if !bytes.Equal(body, want) {
		t.Fatalf("sealed command = %X, want %X", body, want)
	}
	// The MAC input as AN12196 prints it.
	macIn := unhex(t, cmd.MACInput)
	full, _ := cmac.Sum(ch.macKey[:], macIn)
	if got := ch.macT(0x5F, 1, []byte{0x02}, unhex(t, cmd.Encrypted)); !bytes.Equal(got, unhex(t, cmd.MAC)) || got[0] != full[1] {
		t.Fatalf("MACt = %X, want %s", got, cmd.MAC)
	}

	// The card opens it.
	hdr, data, err := cardCh.openCommand(0x5F, 1, body)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(hdr, []byte{0x02}) || !bytes.Equal(data, unhex(t, cmd.Plain)) {
		t.Fatalf("card opened %X %X", hdr, data)
	}
	// And a flipped bit anywhere is refused.
	for i := range body {
		bad := clone(body)
		bad[i] ^= 0x01
		if _, _, err := cardCh.openCommand(0x5F, 1, bad); err == nil {
			t.Fatalf("card accepted a command with byte %d flipped", i)
		}
	}
}

func TestAuthRejectsWrongKey(t *testing.T) {
	key := bytes.Repeat([]byte{1}, 16)
	other := bytes.Repeat([]byte{2}, 16)
	rndA, rndB, ti := bytes.Repeat([]byte{0xA}, 16), bytes.Repeat([]byte{0xB}, 16), []byte{1, 2, 3, 4}

	// A reader with the wrong key: the card sees a bad RndB'.
	e, _ := cardAuthPart1(key, rndB)
	ra := &readerAuth{key: other, rndA: rndA}
	p2, err := ra.part2(e)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := cardAuthPart2(key, rndB, p2, ti); err == nil {
		t.Fatal("card accepted a reader without the key")
	}

	// A fake card that echoes whatever it gets without the key: the reader
	// sees a bad RndA'. The fake answers the reader's own part-2 bytes.
	ra = &readerAuth{key: key, rndA: rndA}
	p2, _ = ra.part2(e)
	if _, err := ra.finish(p2); err == nil {
		t.Fatal("reader accepted a card that does not hold the key")
	}
}

func TestResponseRoundTrip(t *testing.T) {
	key := bytes.Repeat([]byte{7}, 16)
	rndA, rndB, ti := bytes.Repeat([]byte{0xA}, 16), bytes.Repeat([]byte{0xB}, 16), []byte{1, 2, 3, 4}
	reader, _ := newChannel(key, rndA, rndB, ti)
	card, _ := newChannel(key, rndA, rndB, ti)
	for _, data := range [][]byte{nil, {1}, bytes.Repeat([]byte{9}, 16), bytes.Repeat([]byte{9}, 300)} {
		body, err := reader.sealCommand(0xBD, []byte{1}, data)
		if err != nil {
			t.Fatal(err)
		}
		if _, got, err := card.openCommand(0xBD, 1, body); err != nil || !bytes.Equal(got, data) {
			t.Fatalf("command %d bytes: got %X, %v", len(data), got, err)
		}
		resp := card.sealResponse(0x00, data)
		got, err := reader.openResponse(0x00, resp)
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("response %d bytes: got %X, %v", len(data), got, err)
		}
		// A replayed response fails: the counter has moved on.
		if _, err := reader.openResponse(0x00, resp); err == nil {
			t.Fatal("reader accepted a replayed response")
		}
	}
}
