package cmac

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"os"
	"testing"
)

type rfc4493 struct {
	AESCMAC struct {
		Key   string `json:"key"`
		Cases []struct {
			Message string `json:"message"`
			MAC     string `json:"mac"`
		} `json:"cases"`
	} `json:"aes_cmac_rfc4493"`
}

func loadVectors(t *testing.T) rfc4493 {
	t.Helper()
	raw, err := os.ReadFile("testdata/vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	var v rfc4493
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatal(err)
	}
	if len(v.AESCMAC.Cases) == 0 {
		t.Fatal("no RFC 4493 cases in testdata")
	}
	return v
}

func unhex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestRFC4493(t *testing.T) {
	v := loadVectors(t)
	key := unhex(t, v.AESCMAC.Key)
	for _, c := range v.AESCMAC.Cases {
		msg, want := unhex(t, c.Message), unhex(t, c.MAC)
		got, err := Sum(key, msg)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("len %d: got %x, want %x", len(msg), got, want)
		}
		// Streaming in every split must give the same tag.
		for split := 0; split <= len(msg); split++ {
			m, _ := New(key)
			m.Write(msg[:split])
			m.Write(msg[split:])
			if got := m.Sum(nil); !bytes.Equal(got, want) {
				t.Fatalf("len %d split %d: got %x, want %x", len(msg), split, got, want)
			}
		}
	}
}

func TestSumDoesNotDisturbState(t *testing.T) {
	v := loadVectors(t)
	key := unhex(t, v.AESCMAC.Key)
	msg := unhex(t, v.AESCMAC.Cases[3].Message)
	m, _ := New(key)
	m.Write(msg[:20])
	_ = m.Sum(nil)
	m.Write(msg[20:])
	if got := m.Sum(nil); !bytes.Equal(got, unhex(t, v.AESCMAC.Cases[3].MAC)) {
		t.Fatalf("Sum mutated the state: %x", got)
	}
	m.Reset()
	if got := m.Sum(nil); !bytes.Equal(got, unhex(t, v.AESCMAC.Cases[0].MAC)) {
		t.Fatalf("Reset did not clear: %x", got)
	}
}

func TestBadKey(t *testing.T) {
	if _, err := New(make([]byte, 15)); err == nil {
		t.Fatal("accepted a 15-byte key")
	}
}

func BenchmarkCMAC64(b *testing.B) {
	m, _ := New(make([]byte, 16))
	msg := make([]byte, 64)
	out := make([]byte, 0, Size)
	b.SetBytes(int64(len(msg)))
	for b.Loop() {
		m.Reset()
		m.Write(msg)
		out = m.Sum(out[:0])
	}
}
