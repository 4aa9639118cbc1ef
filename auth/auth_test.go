package auth

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"sluice/store"
	"sluice/store/sqlstore"
	"sluice/store/storetest"
)

// cheap keeps tests fast; the format and logic are the same at any cost.
var cheap = Params{Memory: 64, Time: 1, Threads: 1}

func TestHashVerify(t *testing.T) {
	h, err := Hash("correct horse", cheap)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(h, "$argon2id$v=19$m=64,t=1,p=1$") {
		t.Fatalf("not a PHC argon2id string: %s", h)
	}
	if err := Verify(h, "correct horse"); err != nil {
		t.Fatal(err)
	}
	if err := Verify(h, "correct horsf"); !errors.Is(err, ErrMismatch) {
		t.Fatalf("wrong password: %v", err)
	}
	h2, _ := Hash("correct horse", cheap)
	if h == h2 {
		t.Fatal("two hashes of one password are equal: salt not random")
	}
	if !NeedsRehash(h, DefaultParams) || NeedsRehash(h, cheap) {
		t.Fatal("NeedsRehash wrong")
	}
}

func TestVerifyRejectsBadHashes(t *testing.T) {
	for _, bad := range []string{
		"", "plaintext", "$argon2i$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$a2V5a2V5a2V5a2V5a2V5aw",
		"$argon2id$v=18$m=64,t=1,p=1$c2FsdHNhbHQ$a2V5a2V5a2V5a2V5a2V5aw",
		"$argon2id$v=19$m=99999999,t=1,p=1$c2FsdHNhbHQ$a2V5a2V5a2V5a2V5a2V5aw",
		"$argon2id$v=19$m=64,t=1,p=1$!!$a2V5a2V5a2V5a2V5a2V5aw",
	} {
		if err := Verify(bad, "x"); !errors.Is(err, ErrBadHash) {
			t.Errorf("Verify(%q) = %v, want ErrBadHash", bad, err)
		}
	}
}

func FuzzVerify(f *testing.F) {
	h, _ := Hash("pw", cheap)
	f.Add(h, "pw")
	f.Add("$argon2id$v=19$m=8,t=1,p=1$AAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAA", "")
	f.Fuzz(func(t *testing.T, encoded, pw string) {
		_ = Verify(encoded, pw) // must not panic or allocate without bound
	})
}

func TestBootstrap(t *testing.T) {
	storetest.Each(t, func(t *testing.T, db *sqlstore.DB) {
		ctx := context.Background()
		cred := filepath.Join(t.TempDir(), "bootstrap-admin.txt")
		pw, err := Bootstrap(ctx, db, cred, cheap)
		if err != nil || pw == "" {
			t.Fatalf("first bootstrap: %q %v", pw, err)
		}
		fi, err := os.Stat(cred)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("credential file mode %v, want 0600", fi.Mode().Perm())
		}
		raw, _ := os.ReadFile(cred)
		if !strings.Contains(string(raw), pw) {
			t.Error("credential file lacks the password")
		}
		var admin store.Operator
		db.Read(ctx, func(tx store.Tx) error {
			admin, err = tx.Operators().ByUsername(ctx, BootstrapUsername)
			return err
		})
		if err != nil || admin.Role != "admin" || !admin.MustChangePassword {
			t.Fatalf("admin = %+v, %v", admin, err)
		}
		if err := Verify(admin.PasswordHash, pw); err != nil {
			t.Fatalf("stored hash does not verify the written password: %v", err)
		}
		again, err := Bootstrap(ctx, db, filepath.Join(t.TempDir(), "second.txt"), cheap)
		if err != nil || again != "" {
			t.Fatalf("second bootstrap created another admin: %q %v", again, err)
		}
	})
}
