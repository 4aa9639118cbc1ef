package main

import (
	"flag"
	"fmt"
	"io"
	"log/slog"

	"sluice/config"
)

// configFlags are the flags every command that reaches the head-end's
// database takes. Only flags given on the command line override the
// configuration file and the environment.
type configFlags struct {
	file string
	fs   *flag.FlagSet
	// flagKeys maps a flag name to the configuration key it sets.
	flagKeys map[string]string
}

func addConfigFlags(fs *flag.FlagSet, withListeners bool) *configFlags {
	cf := &configFlags{fs: fs, flagKeys: map[string]string{}}
	fs.StringVar(&cf.file, "config", "", "TOML configuration `file` (optional; every key has a default)")
	add := func(name, key, usage string) {
		fs.String(name, "", usage+" (config key "+key+", env "+config.EnvName(key)+")")
		cf.flagKeys[name] = key
	}
	add("data", "data_dir", "data `directory` (default ./sluice-data)")
	add("db-driver", "database.driver", "database `driver`: sqlite or postgres")
	add("db-url", "database.url", "SQLite file or postgres:// `URL`")
	add("log-level", "log.level", "log `level`: debug, info, warn, error")
	if withListeners {
		add("listen", "listen", "HTTP listen `address` (default 127.0.0.1:8080)")
		add("mqtt-listen", "mqtt.listen", "embedded MQTT broker listen `address` (default 127.0.0.1:1884)")
	}
	return cf
}

// load reads the configuration: file, then environment, then flags.
func (cf *configFlags) load(sio stdio) (config.Config, error) {
	var overrides []config.Override
	cf.fs.Visit(func(f *flag.Flag) {
		if key, ok := cf.flagKeys[f.Name]; ok {
			overrides = append(overrides, config.Override{Key: key, Value: f.Value.String(), Source: "--" + f.Name})
		}
	})
	return config.Load(cf.file, sio.getenv, overrides)
}

// newLogger builds the structured log on w.
func newLogger(w io.Writer, c config.Config) *slog.Logger {
	var level slog.Level
	if err := level.UnmarshalText([]byte(c.Log.Level)); err != nil {
		level = slog.LevelInfo
	}
	opts := &slog.HandlerOptions{Level: level}
	if c.Log.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// configError prints a configuration error as the one line it is.
func configError(sio stdio, name string, err error) error {
	fmt.Fprintf(sio.err, "sluice %s: %v\n", name, err)
	return exitError{2}
}
