package kms

import (
	"context"
	"crypto"
	"fmt"
)

// Op names an operation in an audit Event.
type Op string

const (
	OpCreate Op = "create"
	OpImport Op = "import"
	OpRotate Op = "rotate"
	OpSign   Op = "sign"
	OpPRF    Op = "prf"
	OpWrap   Op = "wrap"
	OpUnwrap Op = "unwrap"
)

// Event is one use of a key, as handed to a Recorder. It never carries key
// material or the data operated on, only its size: an audit log readable by
// auditors must not become a second copy of the secrets.
type Event struct {
	Op    Op
	Key   KeyRef // as the caller named it (Version 0: newest)
	Kind  Kind   // for create and import
	Bytes int    // length of the message, plaintext or material
	Err   error  // the outcome; nil on success
}

// Recorder writes audit events, typically into the head-end's hash-chained
// audit log; who asked is read from ctx by the Recorder, which knows how the
// head-end stores the operator there.
type Recorder interface {
	Record(ctx context.Context, e Event) error
}

// WithAudit returns a KeyManager that records every key use and change with
// r after it happens. It fails closed: when the record cannot be written, the
// result (a signature, a derived block, an unwrapped secret) is withheld and
// the error returned, so nothing leaves the key manager unaccounted for.
// Reading key descriptions and public keys is not recorded.
func WithAudit(km KeyManager, r Recorder) KeyManager { return &audited{km, r} }

type audited struct {
	km KeyManager
	r  Recorder
}

func (a *audited) record(ctx context.Context, e Event) error {
	if err := a.r.Record(ctx, e); err != nil {
		return fmt.Errorf("kms: audit record for %s %s not written, result withheld: %w", e.Op, e.Key, err)
	}
	return e.Err
}

func (a *audited) CreateKey(ctx context.Context, name string, kind Kind) (KeyInfo, error) {
	info, err := a.km.CreateKey(ctx, name, kind)
	if err := a.record(ctx, Event{Op: OpCreate, Key: KeyRef{name, info.Version}, Kind: kind, Err: err}); err != nil {
		return KeyInfo{}, err
	}
	return info, nil
}

func (a *audited) ImportKey(ctx context.Context, name string, kind Kind, material []byte) (KeyInfo, error) {
	info, err := a.km.ImportKey(ctx, name, kind, material)
	if err := a.record(ctx, Event{Op: OpImport, Key: KeyRef{name, info.Version}, Kind: kind, Bytes: len(material), Err: err}); err != nil {
		return KeyInfo{}, err
	}
	return info, nil
}

func (a *audited) Rotate(ctx context.Context, name string) (KeyInfo, error) {
	info, err := a.km.Rotate(ctx, name)
	if err := a.record(ctx, Event{Op: OpRotate, Key: KeyRef{name, info.Version}, Kind: info.Kind, Err: err}); err != nil {
		return KeyInfo{}, err
	}
	return info, nil
}

func (a *audited) Keys(ctx context.Context) ([]KeyInfo, error) { return a.km.Keys(ctx) }

func (a *audited) Key(ctx context.Context, ref KeyRef) (KeyInfo, error) { return a.km.Key(ctx, ref) }

func (a *audited) PublicKey(ctx context.Context, ref KeyRef) (crypto.PublicKey, error) {
	return a.km.PublicKey(ctx, ref)
}

func (a *audited) Sign(ctx context.Context, ref KeyRef, msg []byte) ([]byte, error) {
	sig, err := a.km.Sign(ctx, ref, msg)
	if err := a.record(ctx, Event{Op: OpSign, Key: ref, Bytes: len(msg), Err: err}); err != nil {
		return nil, err
	}
	return sig, nil
}

func (a *audited) PRF(ctx context.Context, ref KeyRef, msg []byte) ([]byte, error) {
	out, err := a.km.PRF(ctx, ref, msg)
	if err := a.record(ctx, Event{Op: OpPRF, Key: ref, Bytes: len(msg), Err: err}); err != nil {
		return nil, err
	}
	return out, nil
}

func (a *audited) Wrap(ctx context.Context, ref KeyRef, plaintext, aad []byte) ([]byte, error) {
	out, err := a.km.Wrap(ctx, ref, plaintext, aad)
	if err := a.record(ctx, Event{Op: OpWrap, Key: ref, Bytes: len(plaintext), Err: err}); err != nil {
		return nil, err
	}
	return out, nil
}

func (a *audited) Unwrap(ctx context.Context, ref KeyRef, wrapped, aad []byte) ([]byte, error) {
	out, err := a.km.Unwrap(ctx, ref, wrapped, aad)
	if err := a.record(ctx, Event{Op: OpUnwrap, Key: ref, Bytes: len(wrapped), Err: err}); err != nil {
		return nil, err
	}
	return out, nil
}

func (a *audited) Close() error { return a.km.Close() }
