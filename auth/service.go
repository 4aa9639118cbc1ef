package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"sluice/store"
)

// Roles. Every API route names the roles allowed to call it.
const (
	Admin      = "admin"      // operators, keys, supply groups, tariffs, vending points
	Supervisor = "supervisor" // deposits, reversals, approvals (dual control), reports
	Vendor     = "vendor"     // a cashier or vending terminal: sells and reprints
	Engineer   = "engineer"   // requests engineering tokens and key changes
	Auditor    = "auditor"    // reads the audit log, the ledger and reports
)

// Roles lists every role.
var Roles = []string{Admin, Supervisor, Vendor, Engineer, Auditor}

// ValidRole reports whether r is a role.
func ValidRole(r string) bool {
	for _, x := range Roles {
		if r == x {
			return true
		}
	}
	return false
}

// Sentinel errors the API maps to status codes.
var (
	ErrUnauthenticated = errors.New("not authenticated")
	ErrBadCredentials  = errors.New("wrong user name or password")
	ErrRateLimited     = errors.New("too many failed logins; try again later")
	ErrDisabled        = errors.New("operator disabled")
	ErrInvalid         = errors.New("invalid request")
)

// FieldError names the field at fault.
type FieldError struct{ Field, Msg string }

func (e *FieldError) Error() string { return e.Field + ": " + e.Msg }
func (e *FieldError) Unwrap() error { return ErrInvalid }

// Principal is an authenticated caller.
type Principal struct {
	Operator store.Operator
	// Via is "session" or "api-key:<id>".
	Via string
}

// Actor names the principal in the audit log.
func (p Principal) Actor() string { return "operator:" + p.Operator.Username }

// Limits on logins: a username or a remote address with this many failures
// in the window is refused until the window slides past them. The counts
// live in the database, so every replica enforces the same limit.
const (
	LoginWindow          = 15 * time.Minute
	MaxFailuresPerUser   = 5
	MaxFailuresPerRemote = 20
	SessionTTL           = 12 * time.Hour
)

// Service authenticates operators and manages them.
type Service struct {
	st     store.Store
	params Params
	now    func() time.Time

	dummyOnce sync.Once
	dummy     string
}

// NewService returns a Service hashing new passwords with p.
func NewService(st store.Store, p Params, now func() time.Time) *Service {
	if now == nil {
		now = time.Now
	}
	return &Service{st: st, params: p, now: now}
}

func tokenHash(tok string) []byte {
	h := sha256.Sum256([]byte(tok))
	return h[:]
}

func randomToken(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// Login checks a password and opens a session. It returns the session token
// (to set as a cookie) and the operator.
func (s *Service) Login(ctx context.Context, username, password, remote string) (string, store.Operator, error) {
	now := s.now().UTC()
	var byUser, byRemote int
	if err := s.st.Read(ctx, func(tx store.Tx) error {
		var err error
		byUser, byRemote, err = tx.Credentials().LoginFailures(ctx, username, remote, now.Add(-LoginWindow))
		return err
	}); err != nil {
		return "", store.Operator{}, err
	}
	if byUser >= MaxFailuresPerUser || byRemote >= MaxFailuresPerRemote {
		return "", store.Operator{}, ErrRateLimited
	}
	var op store.Operator
	err := s.st.Read(ctx, func(tx store.Tx) error {
		var err error
		op, err = tx.Operators().ByUsername(ctx, username)
		return err
	})
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return "", store.Operator{}, err
	}
	// Hash even for an unknown user, so timing does not reveal which
	// user names exist.
	hash := op.PasswordHash
	if hash == "" {
		hash = s.dummyHash()
	}
	verr := Verify(hash, password)
	if err != nil || verr != nil || op.Disabled {
		ferr := s.st.Tx(ctx, func(tx store.Tx) error {
			if err := tx.Credentials().RecordLoginFailure(ctx, username, remote, now); err != nil {
				return err
			}
			return store.AppendAudit(ctx, tx, now, "anonymous", "auth.login_failed", "operator/"+username, map[string]string{"remote": remote})
		})
		if ferr != nil {
			return "", store.Operator{}, ferr
		}
		if op.Disabled && verr == nil {
			return "", store.Operator{}, ErrDisabled
		}
		return "", store.Operator{}, ErrBadCredentials
	}
	tok := randomToken(32)
	err = s.st.Tx(ctx, func(tx store.Tx) error {
		if err := tx.Credentials().CreateSession(ctx, store.Session{TokenHash: tokenHash(tok), OperatorID: op.ID, CreatedAt: now, ExpiresAt: now.Add(SessionTTL)}); err != nil {
			return err
		}
		if err := tx.Credentials().ClearLoginFailures(ctx, username); err != nil {
			return err
		}
		if NeedsRehash(op.PasswordHash, s.params) {
			if h, err := Hash(password, s.params); err == nil {
				op.PasswordHash = h
				if err := tx.Operators().Update(ctx, op); err != nil {
					return err
				}
			}
		}
		return store.AppendAudit(ctx, tx, now, "operator:"+op.Username, "auth.login", "operator/"+op.Username, map[string]string{"remote": remote})
	})
	if err != nil {
		return "", store.Operator{}, err
	}
	return tok, op, nil
}

// dummyHash is a hash of nothing in particular, computed once.
func (s *Service) dummyHash() string {
	s.dummyOnce.Do(func() { s.dummy, _ = Hash("sluice-no-such-user", s.params) })
	return s.dummy
}

// APIKeyPrefix starts every API key, so leaked keys are easy to scan for.
const APIKeyPrefix = "slk_"

// Authenticate resolves a session token or an API key.
func (s *Service) Authenticate(ctx context.Context, sessionToken, apiKey string) (Principal, error) {
	now := s.now().UTC()
	var p Principal
	if apiKey != "" {
		// Every request of a terminal comes here: the key and its
		// operator are one statement, and one statement needs no
		// transaction around it. Nothing is cached, so a revoked key or a
		// disabled operator is refused from the next request on.
		err := s.st.Lookup(ctx, func(tx store.Tx) error {
			k, op, err := tx.Credentials().APIKeyOperator(ctx, tokenHash(apiKey))
			if err != nil || !k.RevokedAt.IsZero() {
				return ErrUnauthenticated
			}
			if op.Disabled {
				return ErrDisabled
			}
			p.Operator, p.Via = op, fmt.Sprintf("api-key:%d", k.ID)
			return nil
		})
		return p, err
	}
	err := s.st.Read(ctx, func(tx store.Tx) error {
		var opID int64
		switch {
		case sessionToken != "":
			sess, err := tx.Credentials().Session(ctx, tokenHash(sessionToken))
			if err != nil || !now.Before(sess.ExpiresAt) {
				return ErrUnauthenticated
			}
			opID, p.Via = sess.OperatorID, "session"
		default:
			return ErrUnauthenticated
		}
		op, err := tx.Operators().ByID(ctx, opID)
		if err != nil {
			return ErrUnauthenticated
		}
		if op.Disabled {
			return ErrDisabled
		}
		p.Operator = op
		return nil
	})
	return p, err
}

// Logout ends a session.
func (s *Service) Logout(ctx context.Context, p Principal, sessionToken string) error {
	return s.st.Tx(ctx, func(tx store.Tx) error {
		if err := tx.Credentials().DeleteSession(ctx, tokenHash(sessionToken)); err != nil {
			return err
		}
		return store.AppendAudit(ctx, tx, s.now().UTC(), p.Actor(), "auth.logout", "operator/"+p.Operator.Username, map[string]any{})
	})
}

// MinPasswordLength is enforced on every password an operator chooses.
const MinPasswordLength = 12

func checkPassword(field, pw string) error {
	if len(pw) < MinPasswordLength {
		return &FieldError{field, fmt.Sprintf("must be at least %d characters", MinPasswordLength)}
	}
	if len(pw) > 256 {
		return &FieldError{field, "must be at most 256 characters"}
	}
	return nil
}

// ChangePassword replaces the caller's password after checking the current
// one, clears the must-change flag and ends the operator's other sessions.
func (s *Service) ChangePassword(ctx context.Context, p Principal, current, next string) error {
	if err := checkPassword("new_password", next); err != nil {
		return err
	}
	if Verify(p.Operator.PasswordHash, current) != nil {
		return &FieldError{"current_password", "is wrong"}
	}
	if current == next {
		return &FieldError{"new_password", "must differ from the current one"}
	}
	h, err := Hash(next, s.params)
	if err != nil {
		return err
	}
	return s.st.Tx(ctx, func(tx store.Tx) error {
		op, err := tx.Operators().ByID(ctx, p.Operator.ID)
		if err != nil {
			return err
		}
		op.PasswordHash, op.MustChangePassword = h, false
		if err := tx.Operators().Update(ctx, op); err != nil {
			return err
		}
		return store.AppendAudit(ctx, tx, s.now().UTC(), p.Actor(), "auth.password_changed", "operator/"+op.Username, map[string]any{})
	})
}

// NewOperator is what an administrator fills in.
type NewOperator struct {
	Username    string `json:"username"`
	DisplayName string `json:"display_name"`
	Role        string `json:"role"`
	Vendor      string `json:"vendor,omitempty"` // vending point code, for cashiers
}

func validUsername(u string) error {
	if len(u) < 1 || len(u) > 64 {
		return &FieldError{"username", "must be 1 to 64 characters"}
	}
	for _, r := range u {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '.' || r == '-' || r == '_') {
			return &FieldError{"username", "may contain only a-z, 0-9, '.', '-' and '_'"}
		}
	}
	return nil
}

// CreateOperator adds an operator with a generated one-time password, which
// it returns; the operator must change it at first login.
func (s *Service) CreateOperator(ctx context.Context, by Principal, n NewOperator) (store.Operator, string, error) {
	if err := validUsername(n.Username); err != nil {
		return store.Operator{}, "", err
	}
	if !ValidRole(n.Role) {
		return store.Operator{}, "", &FieldError{"role", "must be one of " + strings.Join(Roles, ", ")}
	}
	if n.DisplayName == "" || len(n.DisplayName) > 128 {
		return store.Operator{}, "", &FieldError{"display_name", "must be 1 to 128 characters"}
	}
	if n.Role == Vendor && n.Vendor == "" {
		return store.Operator{}, "", &FieldError{"vendor", "is required for the vendor role (the vending point the cashier sells for)"}
	}
	pw := GeneratePassword()
	h, err := Hash(pw, s.params)
	if err != nil {
		return store.Operator{}, "", err
	}
	var op store.Operator
	err = s.st.Tx(ctx, func(tx store.Tx) error {
		o := store.Operator{Username: n.Username, DisplayName: n.DisplayName, Role: n.Role, PasswordHash: h, MustChangePassword: true}
		if n.Vendor != "" {
			v, err := tx.Vendors().ByCode(ctx, n.Vendor)
			if errors.Is(err, store.ErrNotFound) {
				return &FieldError{"vendor", "no vending point " + n.Vendor}
			}
			if err != nil {
				return err
			}
			o.VendorID = v.ID
		}
		var err error
		if op, err = tx.Operators().Create(ctx, o); err != nil {
			if errors.Is(err, store.ErrConflict) {
				return &FieldError{"username", "is taken"}
			}
			return err
		}
		return store.AppendAudit(ctx, tx, s.now().UTC(), by.Actor(), "operator.create", "operator/"+op.Username, map[string]any{"role": op.Role, "vendor": n.Vendor})
	})
	return op, pw, err
}

// OperatorChange is a partial update by an administrator.
type OperatorChange struct {
	DisplayName *string `json:"display_name,omitempty"`
	Role        *string `json:"role,omitempty"`
	Disabled    *bool   `json:"disabled,omitempty"`
	Vendor      *string `json:"vendor,omitempty"`
}

// UpdateOperator applies a change. Disabling an operator ends its sessions.
// An administrator cannot disable or demote itself, so an installation never
// locks out its last administrator by accident.
func (s *Service) UpdateOperator(ctx context.Context, by Principal, username string, c OperatorChange) (store.Operator, error) {
	var op store.Operator
	err := s.st.Tx(ctx, func(tx store.Tx) error {
		var err error
		op, err = tx.Operators().ByUsername(ctx, username)
		if err != nil {
			return err
		}
		if c.DisplayName != nil {
			if *c.DisplayName == "" || len(*c.DisplayName) > 128 {
				return &FieldError{"display_name", "must be 1 to 128 characters"}
			}
			op.DisplayName = *c.DisplayName
		}
		if c.Role != nil {
			if !ValidRole(*c.Role) {
				return &FieldError{"role", "must be one of " + strings.Join(Roles, ", ")}
			}
			if op.ID == by.Operator.ID && *c.Role != op.Role {
				return &FieldError{"role", "administrators cannot change their own role"}
			}
			op.Role = *c.Role
		}
		if c.Disabled != nil {
			if op.ID == by.Operator.ID && *c.Disabled {
				return &FieldError{"disabled", "administrators cannot disable themselves"}
			}
			op.Disabled = *c.Disabled
		}
		if c.Vendor != nil {
			op.VendorID = 0
			if *c.Vendor != "" {
				v, err := tx.Vendors().ByCode(ctx, *c.Vendor)
				if err != nil {
					return &FieldError{"vendor", "no vending point " + *c.Vendor}
				}
				op.VendorID = v.ID
			}
		}
		if op.Role == Vendor && op.VendorID == 0 {
			return &FieldError{"vendor", "is required for the vendor role"}
		}
		if err := tx.Operators().Update(ctx, op); err != nil {
			return err
		}
		if op.Disabled {
			if err := tx.Credentials().DeleteSessionsOf(ctx, op.ID); err != nil {
				return err
			}
		}
		return store.AppendAudit(ctx, tx, s.now().UTC(), by.Actor(), "operator.update", "operator/"+op.Username, c)
	})
	return op, err
}

// CreateAPIKey issues an API key for an operator (a vending terminal or a
// payment channel). The key is returned once; only its hash is stored.
func (s *Service) CreateAPIKey(ctx context.Context, by Principal, username, label string) (store.APIKey, string, error) {
	if label == "" || len(label) > 128 {
		return store.APIKey{}, "", &FieldError{"label", "must be 1 to 128 characters"}
	}
	var prefix [4]byte
	rand.Read(prefix[:])
	key := APIKeyPrefix + hex.EncodeToString(prefix[:]) + "_" + randomToken(32)
	var k store.APIKey
	err := s.st.Tx(ctx, func(tx store.Tx) error {
		op, err := tx.Operators().ByUsername(ctx, username)
		if errors.Is(err, store.ErrNotFound) {
			return &FieldError{"operator", "no operator " + username}
		}
		if err != nil {
			return err
		}
		if k, err = tx.Credentials().CreateAPIKey(ctx, store.APIKey{KeyHash: tokenHash(key), Prefix: key[:len(APIKeyPrefix)+8], OperatorID: op.ID, Label: label}); err != nil {
			return err
		}
		return store.AppendAudit(ctx, tx, s.now().UTC(), by.Actor(), "apikey.create", fmt.Sprintf("api-key/%d", k.ID), map[string]string{"operator": username, "label": label, "prefix": k.Prefix})
	})
	return k, key, err
}

// RevokeAPIKey stops a key from working.
func (s *Service) RevokeAPIKey(ctx context.Context, by Principal, id int64) error {
	return s.st.Tx(ctx, func(tx store.Tx) error {
		if err := tx.Credentials().RevokeAPIKey(ctx, id, s.now().UTC()); err != nil {
			return err
		}
		return store.AppendAudit(ctx, tx, s.now().UTC(), by.Actor(), "apikey.revoke", fmt.Sprintf("api-key/%d", id), map[string]any{})
	})
}

type principalKey struct{}

// WithPrincipal returns ctx carrying p, so code far from the HTTP layer
// (the key manager's audit recorder) can name who acted.
func WithPrincipal(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// ActorFrom names the principal in ctx for the audit log, or "system".
func ActorFrom(ctx context.Context) string {
	if p, ok := ctx.Value(principalKey{}).(Principal); ok {
		return p.Actor()
	}
	return "system"
}
