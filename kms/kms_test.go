package kms

import (
	"errors"
	"testing"
)

func TestCheckName(t *testing.T) {
	for _, ok := range []string{"a", "meter-root", "sts/600727/krn1", "x.y_z", "0"} {
		if err := CheckName(ok); err != nil {
			t.Errorf("CheckName(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"", "-a", "/a", "A", "a b", "a@1", "é", string(make([]byte, 65))} {
		if err := CheckName(bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("CheckName(%q) = %v, want ErrInvalid", bad, err)
		}
	}
}

func TestParseRef(t *testing.T) {
	for in, want := range map[string]KeyRef{
		"credit-signing":   {Name: "credit-signing"},
		"credit-signing@3": {Name: "credit-signing", Version: 3},
	} {
		got, err := ParseRef(in)
		if err != nil || got != want || got.String() != in {
			t.Errorf("ParseRef(%q) = %+v, %v", in, got, err)
		}
	}
	for _, bad := range []string{"", "a@", "a@0", "a@-1", "a@01", "a@x", "A@1", "a@1@2"} {
		if _, err := ParseRef(bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("ParseRef(%q) = %v, want ErrInvalid", bad, err)
		}
	}
}

func TestKinds(t *testing.T) {
	for _, k := range Kinds {
		if !k.Valid() {
			t.Errorf("%s not valid", k)
		}
		if k.Signing() == (k.SecretSize() != 0) {
			t.Errorf("%s: signing %v but secret size %d", k, k.Signing(), k.SecretSize())
		}
	}
	if Kind("rsa").Valid() {
		t.Error("rsa is valid")
	}
}
