package config

import (
	"errors"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

func noEnv(string) string { return "" }

func TestDefaultsRunEmbedded(t *testing.T) {
	c, err := Load("", noEnv, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Database.Driver != "sqlite" || c.Database.URL != filepath.Join("sluice-data", "sluice.db") {
		t.Errorf("database = %+v, want sqlite in the data directory", c.Database)
	}
	if c.MQTT.Mode != "embedded" || c.KMS.Backend != "file" || c.Listen != "127.0.0.1:8080" {
		t.Errorf("defaults are not the embedded ones: %+v", c)
	}
	if c.KMS.File != filepath.Join("sluice-data", "keys.sealed") {
		t.Errorf("kms.file = %q", c.KMS.File)
	}
}

// The default pool follows the machine: four connections per CPU, between
// 4 and 16, and a loaded configuration gets it unless it names its own.
func TestDefaultMaxConns(t *testing.T) {
	for cpus, want := range map[int]int{1: 4, 2: 8, 3: 12, 4: 16, 64: 16} {
		if got := DefaultMaxConns(cpus); got != want {
			t.Errorf("DefaultMaxConns(%d) = %d, want %d", cpus, got, want)
		}
	}
	c, err := Load("", noEnv, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Database.MaxConns != DefaultMaxConns(runtime.NumCPU()) {
		t.Errorf("database.max_conns = %d on %d CPUs, want %d", c.Database.MaxConns, runtime.NumCPU(), DefaultMaxConns(runtime.NumCPU()))
	}
}

func TestGoodFile(t *testing.T) {
	c, err := Load("testdata/good_postgres.toml", noEnv, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Database.Driver != "postgres" || c.Database.MaxConns != 40 || c.ShutdownTimeout.Seconds() != 30 {
		t.Errorf("file not applied: %+v", c)
	}
	if c.KMS.PKCS11.Token != "sluice" {
		t.Errorf("nested table not applied: %+v", c.KMS)
	}
}

func TestLayers(t *testing.T) {
	env := map[string]string{"SLUICE_LISTEN": "127.0.0.1:9000", "SLUICE_LOG_LEVEL": "debug"}
	c, err := Load("testdata/good_postgres.toml", func(k string) string { return env[k] }, []Override{
		{Key: "listen", Value: "127.0.0.1:9100", Source: "--listen"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if c.Listen != "127.0.0.1:9100" {
		t.Errorf("flag did not win over env: %s", c.Listen)
	}
	if c.Log.Level != "debug" {
		t.Errorf("env did not win over file: %s", c.Log.Level)
	}
}

func TestBadConfigNamesTheKey(t *testing.T) {
	cases := []struct {
		name      string
		file      string
		env       map[string]string
		overrides []Override
		wantKey   string
	}{
		{name: "unknown key", file: "testdata/fail_unknown_key.toml", wantKey: "database.urll"},
		{name: "bad driver", file: "testdata/fail_bad_driver.toml", wantKey: "database.driver"},
		{name: "bad duration", file: "testdata/fail_bad_duration.toml", wantKey: "shutdown_timeout"},
		{name: "wrong type", file: "testdata/fail_wrong_type.toml", wantKey: "max_conns"},
		{name: "syntax", file: "testdata/fail_syntax.toml", wantKey: "listen"},
		{name: "env int", env: map[string]string{"SLUICE_DATABASE_MAX_CONNS": "lots"}, wantKey: "database.max_conns"},
		{name: "env addr", env: map[string]string{"SLUICE_LISTEN": "8080"}, wantKey: "listen"},
		{name: "flag addr", overrides: []Override{{Key: "mqtt.listen", Value: "nohost", Source: "--mqtt-listen"}}, wantKey: "mqtt.listen"},
		{name: "postgres without url", env: map[string]string{"SLUICE_DATABASE_DRIVER": "postgres"}, wantKey: "database.url"},
		{name: "pkcs11 without module", env: map[string]string{"SLUICE_KMS_BACKEND": "pkcs11"}, wantKey: "kms.pkcs11.module"},
		{name: "external mqtt without url", env: map[string]string{"SLUICE_MQTT_MODE": "external"}, wantKey: "mqtt.url"},
		{name: "log format", env: map[string]string{"SLUICE_LOG_FORMAT": "xml"}, wantKey: "log.format"},
		{name: "time zone", env: map[string]string{"SLUICE_TIMEZONE": "Mars/Olympus_Mons"}, wantKey: "timezone"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load(tc.file, func(k string) string { return tc.env[k] }, tc.overrides)
			if err == nil {
				t.Fatal("accepted")
			}
			msg := err.Error()
			if !strings.Contains(msg, tc.wantKey) {
				t.Errorf("error %q does not name %q", msg, tc.wantKey)
			}
			if strings.Contains(msg, "\n") {
				t.Errorf("error is not one line: %q", msg)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("error %v is not ErrInvalid", err)
			}
		})
	}
}

func TestEveryKeyHasAnEnvName(t *testing.T) {
	for _, k := range Keys() {
		if n := EnvName(k); !strings.HasPrefix(n, "SLUICE_") || strings.ContainsAny(n, ". ") {
			t.Errorf("%s -> %s", k, n)
		}
	}
}

func FuzzLoadFile(f *testing.F) {
	f.Add("listen = \"127.0.0.1:1\"")
	f.Add("[database]\ndriver=\"postgres\"\nurl=\"postgres://x\"")
	f.Fuzz(func(t *testing.T, s string) {
		p := filepath.Join(t.TempDir(), "c.toml")
		if err := writeFile(p, s); err != nil {
			t.Skip()
		}
		c, err := Load(p, noEnv, nil)
		if err == nil {
			if verr := c.Validate(); verr != nil {
				t.Fatalf("Load accepted what Validate refuses: %v", verr)
			}
		}
	})
}
