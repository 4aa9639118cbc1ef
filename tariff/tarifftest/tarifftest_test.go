package tarifftest_test

import (
	"bytes"
	"os"
	"testing"

	"sluice/tariff"
	"sluice/tariff/tarifftest"
)

// TestDomestic keeps the tariff the other packages' tests register valid
// and the same as the tariff package's good_domestic.json, whose worked
// examples in docs/tariffs.md those tests' amounts follow.
func TestDomestic(t *testing.T) {
	def := tarifftest.Domestic()
	tf, err := tariff.Parse(def)
	if err != nil {
		t.Fatal(err)
	}
	if tf.Code != "DOM-2026" {
		t.Errorf("code %q, want DOM-2026: the tests register and look it up by that code", tf.Code)
	}
	good, err := os.ReadFile("../testdata/good_domestic.json")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(def, good) {
		t.Error("tarifftest's domestic.json differs from tariff/testdata/good_domestic.json")
	}
	def[0] = 'x'
	if again := tarifftest.Domestic(); again[0] == 'x' {
		t.Error("Domestic returns its stored bytes: one test's edit reaches the next")
	}
}
