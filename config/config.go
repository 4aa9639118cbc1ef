// Package config holds the configuration of `sluice serve` and the other
// commands that reach the head-end's database, broker and key store.
//
// Configuration comes from three layers, each overriding the one before:
// a TOML file, environment variables (SLUICE_ followed by the key path in
// upper case with dots as underscores: database.url is SLUICE_DATABASE_URL),
// and command-line flags. With no file at all every key has a default that
// runs Sluice on its embedded parts (SQLite, the embedded MQTT broker and the
// sealed file key store) in one data directory, so a first run needs nothing.
//
// Every error names the key at fault and says why, in one line, because the
// person reading it is starting a service and wants to fix it at once.
package config

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// Config is the whole configuration. The toml tags are the key names used in
// the file, in environment variables and in error messages.
type Config struct {
	// DataDir holds the SQLite database, the sealed key store, generated
	// secrets and the bootstrap credential.
	DataDir string `toml:"data_dir"`
	// Listen is the HTTP address of the API, console, metrics and probes.
	Listen string `toml:"listen"`
	// PublicURL is the URL operators reach the console at, when it differs
	// from http://Listen (behind a reverse proxy).
	PublicURL string `toml:"public_url"`
	// ShutdownTimeout bounds how long in-flight requests may take to finish
	// after SIGTERM.
	ShutdownTimeout Duration `toml:"shutdown_timeout"`
	// Timezone is the utility's IANA time zone: block ladders reset on the
	// first of its months and daily limits and reports count its days.
	Timezone string `toml:"timezone"`

	Log      Log      `toml:"log"`
	Database Database `toml:"database"`
	MQTT     MQTT     `toml:"mqtt"`
	KMS      KMS      `toml:"kms"`
}

// Log configures the structured log on standard error.
type Log struct {
	Level  string `toml:"level"`  // debug, info, warn, error
	Format string `toml:"format"` // text or json
}

// Database selects the store.
type Database struct {
	// Driver is sqlite (embedded, the default) or postgres.
	Driver string `toml:"driver"`
	// URL is the SQLite file path (default DataDir/sluice.db) or a
	// PostgreSQL connection URL (postgres://user@host:5432/db?sslmode=...).
	URL string `toml:"url"`
	// MaxConns caps the connection pool (PostgreSQL).
	MaxConns int `toml:"max_conns"`
}

// MQTT selects the telemetry broker.
type MQTT struct {
	// Mode is embedded (the head-end runs the broker), external (it connects
	// as a client to Mosquitto, EMQX...) or off.
	Mode string `toml:"mode"`
	// Listen is the embedded broker's TCP address. The default avoids 1883,
	// where a system broker often runs already.
	Listen string `toml:"listen"`
	// URL is the external broker, tcp://host:port or tls://host:port.
	URL      string `toml:"url"`
	Username string `toml:"username"`
	Password string `toml:"password"`
	ClientID string `toml:"client_id"`
}

// KMS selects where root and signing keys live.
type KMS struct {
	// Backend is file (a passphrase-sealed key store, the default) or pkcs11.
	Backend string `toml:"backend"`
	// File is the sealed key store (default DataDir/keys.sealed).
	File string `toml:"file"`
	// PassphraseFile holds the sealing passphrase. On a first run with the
	// default path Sluice generates one (mode 0600); production keeps it
	// elsewhere, or sets SLUICE_KMS_PASSPHRASE instead.
	PassphraseFile string `toml:"passphrase_file"`
	Passphrase     string `toml:"passphrase"`
	PKCS11         PKCS11 `toml:"pkcs11"`
}

// PKCS11 locates an HSM token.
type PKCS11 struct {
	Module  string `toml:"module"` // path of the PKCS#11 library
	Token   string `toml:"token"`  // token label
	PIN     string `toml:"pin"`
	PINFile string `toml:"pin_file"`
}

// Duration is a time.Duration written as "30s" or "5m".
type Duration struct{ time.Duration }

// UnmarshalText parses a Go duration string.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("not a duration like 30s or 5m: %q", b)
	}
	d.Duration = v
	return nil
}

// MarshalText writes the duration as Go does.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// DefaultMaxConns is the PostgreSQL pool a replica opens unless told
// otherwise: four connections per CPU, at least 4 and at most 16. More
// connections than the cores can serve do not add throughput on a small
// machine; they add backends competing for the same cores and transactions
// that hold a hot row's lock (a vending point's float) while they wait for
// one. On two cores, 8 connections against 16 sold 1.25-1.7x more
// purchases/s from 16 tills of one vending point and no fewer elsewhere
// (docs/performance.md).
func DefaultMaxConns(cpus int) int { return min(16, max(4, 4*cpus)) }

// Default returns the configuration of a first run: everything embedded in
// ./sluice-data.
func Default() Config {
	return Config{
		DataDir:         "./sluice-data",
		Listen:          "127.0.0.1:8080",
		ShutdownTimeout: Duration{15 * time.Second},
		Timezone:        "UTC",
		Log:             Log{Level: "info", Format: "text"},
		Database:        Database{Driver: "sqlite", MaxConns: DefaultMaxConns(runtime.NumCPU())},
		MQTT:            MQTT{Mode: "embedded", Listen: "127.0.0.1:1884", ClientID: "sluice-headend"},
		KMS:             KMS{Backend: "file"},
	}
}

// ErrInvalid wraps every validation error, so callers can tell a bad
// configuration from a failure to read it.
var ErrInvalid = errors.New("invalid configuration")

// KeyError is a problem with one key.
type KeyError struct {
	Key    string // dotted path, e.g. database.url
	Source string // where the bad value came from: the file, $SLUICE_X or --flag
	Reason string
}

func (e *KeyError) Error() string {
	if e.Source != "" {
		return fmt.Sprintf("config: %s (from %s): %s", e.Key, e.Source, e.Reason)
	}
	return fmt.Sprintf("config: %s: %s", e.Key, e.Reason)
}

func (e *KeyError) Unwrap() error { return ErrInvalid }

// Override is one value given on the command line, by key path.
type Override struct {
	Key, Value, Source string
}

// Load builds the configuration: defaults, then the TOML file at path (if
// path is not empty), then environment variables read through getenv, then
// overrides. It validates the result and fills derived defaults.
func Load(path string, getenv func(string) string, overrides []Override) (Config, error) {
	c := Default()
	if path != "" {
		raw, err := os.ReadFile(path)
		if err != nil {
			return Config{}, fmt.Errorf("config: %w", err)
		}
		md, err := toml.Decode(string(raw), &c)
		if err != nil {
			return Config{}, fileError(path, err)
		}
		if und := md.Undecoded(); len(und) > 0 {
			return Config{}, &KeyError{Key: und[0].String(), Source: path, Reason: "unknown key"}
		}
	}
	if getenv != nil {
		for _, f := range fields(&c) {
			env := EnvName(f.key)
			if v := getenv(env); v != "" {
				if err := set(f.value, v); err != nil {
					return Config{}, &KeyError{Key: f.key, Source: "$" + env, Reason: err.Error()}
				}
			}
		}
	}
	byKey := map[string]reflect.Value{}
	for _, f := range fields(&c) {
		byKey[f.key] = f.value
	}
	for _, o := range overrides {
		v, ok := byKey[o.Key]
		if !ok {
			return Config{}, &KeyError{Key: o.Key, Source: o.Source, Reason: "unknown key"}
		}
		if err := set(v, o.Value); err != nil {
			return Config{}, &KeyError{Key: o.Key, Source: o.Source, Reason: err.Error()}
		}
	}
	c.fillDerived()
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}

// fileError turns a TOML syntax or type error into one line naming the key
// when the decoder knows it.
func fileError(path string, err error) error {
	var pe toml.ParseError
	if errors.As(err, &pe) {
		if pe.Position.Line > 0 {
			return &KeyError{Key: pe.LastKey, Source: fmt.Sprintf("%s line %d", path, pe.Position.Line), Reason: pe.Message}
		}
		return &KeyError{Key: pe.LastKey, Source: path, Reason: pe.Message}
	}
	// Type errors come as plain text: `toml: line N (last key "K"): why`.
	if m := typeErr.FindStringSubmatch(err.Error()); m != nil {
		return &KeyError{Key: m[2], Source: fmt.Sprintf("%s line %s", path, m[1]), Reason: m[3]}
	}
	return fmt.Errorf("config: %s: %w", path, err)
}

var typeErr = regexp.MustCompile(`^toml: line (\d+) \(last key "([^"]*)"\): (.*)$`)

// fillDerived sets the defaults that depend on other keys.
func (c *Config) fillDerived() {
	if c.Database.Driver == "sqlite" && c.Database.URL == "" {
		c.Database.URL = filepath.Join(c.DataDir, "sluice.db")
	}
	if c.KMS.Backend == "file" {
		if c.KMS.File == "" {
			c.KMS.File = filepath.Join(c.DataDir, "keys.sealed")
		}
		if c.KMS.PassphraseFile == "" && c.KMS.Passphrase == "" {
			c.KMS.PassphraseFile = filepath.Join(c.DataDir, "kms.passphrase")
		}
	}
}

// Validate checks every key and returns the first problem as a *KeyError.
func (c *Config) Validate() error {
	bad := func(key, format string, args ...any) error {
		return &KeyError{Key: key, Reason: fmt.Sprintf(format, args...)}
	}
	if strings.TrimSpace(c.DataDir) == "" {
		return bad("data_dir", "must not be empty")
	}
	if err := checkAddr(c.Listen); err != nil {
		return bad("listen", "%v", err)
	}
	if c.ShutdownTimeout.Duration <= 0 {
		return bad("shutdown_timeout", "must be positive, got %s", c.ShutdownTimeout)
	}
	if _, err := c.Location(); err != nil {
		return bad("timezone", "%q is not an IANA time zone such as Africa/Johannesburg", c.Timezone)
	}
	if !oneOf(c.Log.Level, "debug", "info", "warn", "error") {
		return bad("log.level", "%q is not one of debug, info, warn, error", c.Log.Level)
	}
	if !oneOf(c.Log.Format, "text", "json") {
		return bad("log.format", "%q is not one of text, json", c.Log.Format)
	}
	switch c.Database.Driver {
	case "sqlite":
		if c.Database.URL == "" {
			return bad("database.url", "must name the SQLite file")
		}
	case "postgres":
		if !strings.HasPrefix(c.Database.URL, "postgres://") && !strings.HasPrefix(c.Database.URL, "postgresql://") {
			return bad("database.url", "must be a postgres:// URL when database.driver is postgres")
		}
	default:
		return bad("database.driver", "%q is not one of sqlite, postgres", c.Database.Driver)
	}
	if c.Database.MaxConns < 1 || c.Database.MaxConns > 1000 {
		return bad("database.max_conns", "must be between 1 and 1000, got %d", c.Database.MaxConns)
	}
	switch c.MQTT.Mode {
	case "embedded":
		if err := checkAddr(c.MQTT.Listen); err != nil {
			return bad("mqtt.listen", "%v", err)
		}
	case "external":
		if !strings.HasPrefix(c.MQTT.URL, "tcp://") && !strings.HasPrefix(c.MQTT.URL, "tls://") &&
			!strings.HasPrefix(c.MQTT.URL, "mqtt://") && !strings.HasPrefix(c.MQTT.URL, "mqtts://") {
			return bad("mqtt.url", "must be tcp://, tls://, mqtt:// or mqtts:// host:port when mqtt.mode is external")
		}
	case "off":
	default:
		return bad("mqtt.mode", "%q is not one of embedded, external, off", c.MQTT.Mode)
	}
	switch c.KMS.Backend {
	case "file":
		if c.KMS.File == "" {
			return bad("kms.file", "must name the sealed key store file")
		}
		if c.KMS.Passphrase == "" && c.KMS.PassphraseFile == "" {
			return bad("kms.passphrase_file", "one of kms.passphrase or kms.passphrase_file is needed")
		}
	case "pkcs11":
		if c.KMS.PKCS11.Module == "" {
			return bad("kms.pkcs11.module", "must name the PKCS#11 library when kms.backend is pkcs11")
		}
		if c.KMS.PKCS11.Token == "" {
			return bad("kms.pkcs11.token", "must name the token label when kms.backend is pkcs11")
		}
		if c.KMS.PKCS11.PIN == "" && c.KMS.PKCS11.PINFile == "" {
			return bad("kms.pkcs11.pin_file", "one of kms.pkcs11.pin or kms.pkcs11.pin_file is needed")
		}
	default:
		return bad("kms.backend", "%q is not one of file, pkcs11", c.KMS.Backend)
	}
	return nil
}

// Location returns the utility's time zone.
func (c *Config) Location() (*time.Location, error) {
	if c.Timezone == "" {
		return nil, errors.New("empty time zone")
	}
	return time.LoadLocation(c.Timezone)
}

func checkAddr(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q is not host:port", addr)
	}
	if host != "" && net.ParseIP(host) == nil && strings.ContainsAny(host, " /") {
		return fmt.Errorf("%q has a bad host", addr)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 0 || p > 65535 {
		return fmt.Errorf("%q has a bad port", addr)
	}
	return nil
}

func oneOf(s string, set ...string) bool {
	for _, x := range set {
		if s == x {
			return true
		}
	}
	return false
}

// EnvName is the environment variable that overrides key.
func EnvName(key string) string {
	return "SLUICE_" + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
}

// Keys lists every configuration key, sorted, for documentation and help.
func Keys() []string {
	c := Default()
	var keys []string
	for _, f := range fields(&c) {
		keys = append(keys, f.key)
	}
	sort.Strings(keys)
	return keys
}

type field struct {
	key   string
	value reflect.Value
}

// fields walks the leaf keys of c by their toml tags.
func fields(c *Config) []field {
	var out []field
	var walk func(prefix string, v reflect.Value)
	durationType := reflect.TypeFor[Duration]()
	walk = func(prefix string, v reflect.Value) {
		t := v.Type()
		for i := 0; i < t.NumField(); i++ {
			tag := t.Field(i).Tag.Get("toml")
			if tag == "" {
				continue
			}
			key := tag
			if prefix != "" {
				key = prefix + "." + tag
			}
			fv := v.Field(i)
			if fv.Kind() == reflect.Struct && fv.Type() != durationType {
				walk(key, fv)
				continue
			}
			out = append(out, field{key, fv})
		}
	}
	walk("", reflect.ValueOf(c).Elem())
	return out
}

// set assigns the text s to a leaf value, converting it to the leaf's type.
func set(v reflect.Value, s string) error {
	if d, ok := v.Addr().Interface().(*Duration); ok {
		return d.UnmarshalText([]byte(s))
	}
	switch v.Kind() {
	case reflect.String:
		v.SetString(s)
	case reflect.Int, reflect.Int64:
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return fmt.Errorf("%q is not an integer", s)
		}
		v.SetInt(n)
	case reflect.Bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return fmt.Errorf("%q is not true or false", s)
		}
		v.SetBool(b)
	default:
		return fmt.Errorf("cannot be set from text")
	}
	return nil
}
