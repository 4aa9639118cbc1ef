package headend

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"sluice/auth"
	"sluice/config"
	"sluice/keys"
	"sluice/kms"
	"sluice/kms/filekms"
	"sluice/kms/kmsconfig"
	"sluice/kms/pkcs11kms"
	"sluice/store"
)

// OpenKMS opens the configured key manager. On a first run with the default
// file backend it creates the sealed key store and a random passphrase in
// the data directory (mode 0600); production supplies the passphrase from a
// secret store instead (kms.passphrase_file outside the data directory, or
// SLUICE_KMS_PASSPHRASE). The standard key hierarchy is created if missing.
func OpenKMS(ctx context.Context, cfg config.Config, opts filekms.Options) (kms.KeyManager, error) {
	var kc kmsconfig.Config
	switch cfg.KMS.Backend {
	case "file":
		pass := []byte(cfg.KMS.Passphrase)
		if len(pass) == 0 {
			var err error
			pass, err = kmsconfig.ReadSecret(cfg.KMS.PassphraseFile)
			if errors.Is(err, os.ErrNotExist) && firstRun(cfg) {
				pass, err = generatePassphrase(cfg.KMS.PassphraseFile)
			}
			if err != nil {
				return nil, fmt.Errorf("kms.passphrase_file: %w", err)
			}
		}
		kc = kmsconfig.Config{Backend: kmsconfig.File, Path: cfg.KMS.File, Passphrase: pass, Create: true, Options: opts}
	case "pkcs11":
		pin := cfg.KMS.PKCS11.PIN
		if pin == "" {
			b, err := kmsconfig.ReadSecret(cfg.KMS.PKCS11.PINFile)
			if err != nil {
				return nil, fmt.Errorf("kms.pkcs11.pin_file: %w", err)
			}
			pin = string(b)
		}
		kc = kmsconfig.Config{Backend: kmsconfig.PKCS11, PKCS11: pkcs11kms.Config{Module: cfg.KMS.PKCS11.Module, Token: cfg.KMS.PKCS11.Token, PIN: pin}}
	default:
		return nil, fmt.Errorf("kms.backend %q is not supported", cfg.KMS.Backend)
	}
	km, err := kmsconfig.Open(ctx, kc)
	if err != nil {
		return nil, err
	}
	if _, err := keys.Init(ctx, km, kms.Ed25519); err != nil {
		km.Close()
		return nil, fmt.Errorf("key hierarchy: %w", err)
	}
	return km, nil
}

// firstRun reports whether neither the key store nor its passphrase exists
// yet and the passphrase lives in the data directory (the embedded default).
func firstRun(cfg config.Config) bool {
	if _, err := os.Stat(cfg.KMS.File); !errors.Is(err, os.ErrNotExist) {
		return false
	}
	dir, err1 := filepath.Abs(cfg.DataDir)
	pf, err2 := filepath.Abs(cfg.KMS.PassphraseFile)
	return err1 == nil && err2 == nil && filepath.Dir(pf) == dir
}

func generatePassphrase(path string) ([]byte, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return nil, err
	}
	pass := []byte(base64.RawStdEncoding.EncodeToString(b))
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, err
	}
	_, werr := f.Write(append(pass, '\n'))
	if err := errors.Join(werr, f.Sync(), f.Close()); err != nil {
		return nil, err
	}
	return pass, nil
}

// kmsRecorder writes every key use into the audit log. Key uses happen
// inside other transactions (a vend derives a decoder key while holding the
// database's only SQLite writer), so events are batched in memory and
// written by a background flush; Record fails, and the key manager withholds
// its result, when the batch cannot be written and the backlog is full.
type kmsRecorder struct {
	st      store.Store
	log     *slog.Logger
	mu      sync.Mutex
	pending []store.AuditRecord
	failing error
}

const maxKMSBacklog = 100_000

// KeyUseRecord is the audit record of one key use or change: the key, the
// size of what it worked on and the outcome, never key material or data.
func KeyUseRecord(e kms.Event, actor string, at time.Time) store.AuditRecord {
	details := map[string]any{"key": e.Key.String(), "bytes": e.Bytes}
	if e.Kind != "" {
		details["kind"] = e.Kind
	}
	if e.Err != nil {
		details["error"] = e.Err.Error()
	}
	js, _ := json.Marshal(details) // strings and numbers only: cannot fail
	return store.AuditRecord{At: at, Actor: actor, Action: "kms." + string(e.Op), Object: "key/" + e.Key.Name, Details: js}
}

func (r *kmsRecorder) Record(ctx context.Context, e kms.Event) error {
	rec := KeyUseRecord(e, auth.ActorFrom(ctx), time.Now().UTC())
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.pending) >= maxKMSBacklog {
		return fmt.Errorf("audit log unavailable (%v): key use refused", r.failing)
	}
	r.pending = append(r.pending, rec)
	return nil
}

// flush writes the batched events in one transaction.
func (r *kmsRecorder) flush(ctx context.Context) error {
	r.mu.Lock()
	batch := r.pending
	r.pending = nil
	r.mu.Unlock()
	if len(batch) == 0 {
		return nil
	}
	err := r.st.Tx(ctx, func(tx store.Tx) error {
		for _, rec := range batch {
			if err := tx.Audit().Append(ctx, rec); err != nil {
				return err
			}
		}
		return nil
	})
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		r.pending = append(batch, r.pending...)
		r.failing = err
		return err
	}
	r.failing = nil
	return nil
}

// run flushes every interval until ctx ends, then once more.
func (r *kmsRecorder) run(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			if err := r.flush(context.Background()); err != nil {
				r.log.Error("writing key-use audit records at shutdown", "err", err)
			}
			return
		case <-t.C:
			if err := r.flush(ctx); err != nil {
				r.log.Warn("writing key-use audit records", "err", err)
			}
		}
	}
}
