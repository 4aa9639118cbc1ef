package auth

import (
	"context"
	"errors"
	"fmt"
	"os"

	"sluice/store"
)

// BootstrapUsername is the first administrator's user name.
const BootstrapUsername = "admin"

// Bootstrap creates the first administrator when the store has no operator
// at all, with a generated one-time password written to credPath (mode
// 0600, readable only by the owner). The password must be changed at first
// login. It returns the password it generated, or "" when operators existed
// already. Replicas starting together create one administrator: the
// username is unique, and a losing replica sees ErrConflict and does nothing.
func Bootstrap(ctx context.Context, st store.Store, credPath string, p Params) (string, error) {
	var n int
	if err := st.Read(ctx, func(tx store.Tx) error {
		var err error
		n, err = tx.Operators().Count(ctx)
		return err
	}); err != nil {
		return "", fmt.Errorf("bootstrap: %w", err)
	}
	if n > 0 {
		return "", nil
	}
	password := GeneratePassword()
	hash, err := Hash(password, p)
	if err != nil {
		return "", fmt.Errorf("bootstrap: %w", err)
	}
	// Write the credential before the operator exists, so a crash between
	// the two never leaves an administrator nobody can log in as.
	content := fmt.Sprintf("username: %s\npassword: %s\n\nThis one-time password must be changed at first login.\nDelete this file afterwards.\n", BootstrapUsername, password)
	if err := os.WriteFile(credPath, []byte(content), 0o600); err != nil {
		return "", fmt.Errorf("bootstrap: write credential: %w", err)
	}
	if err := os.Chmod(credPath, 0o600); err != nil {
		return "", fmt.Errorf("bootstrap: %w", err)
	}
	err = st.Tx(ctx, func(tx store.Tx) error {
		if n, err := tx.Operators().Count(ctx); err != nil || n > 0 {
			return errors.Join(err, store.ErrConflict)
		}
		_, err := tx.Operators().Create(ctx, store.Operator{
			Username: BootstrapUsername, DisplayName: "Bootstrap administrator", Role: "admin",
			PasswordHash: hash, MustChangePassword: true,
		})
		return err
	})
	if errors.Is(err, store.ErrConflict) {
		os.Remove(credPath)
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("bootstrap: %w", err)
	}
	return password, nil
}
