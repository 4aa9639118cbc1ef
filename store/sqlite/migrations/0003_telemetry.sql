-- Meter telemetry (docs/telemetry.md): the per-meter replay state, every
-- accepted frame's identity, the readings, events and acknowledgements they
-- carried, wireless M-Bus registrations, remote top-up delivery attempts and
-- revenue-protection alerts (docs/revenue-protection.md).

-- One row per meter that has reported: its replay window (package replay,
-- 20 bytes) and when it was last heard.
CREATE TABLE telemetry_meters (
	meter_id        INTEGER PRIMARY KEY REFERENCES meters (id),
	highest         INTEGER NOT NULL CHECK (highest >= 0),
	replay          BLOB    NOT NULL CHECK (length(replay) = 20),
	last_frame_at   INTEGER NOT NULL DEFAULT 0,
	last_reading_at INTEGER NOT NULL DEFAULT 0
) STRICT;
CREATE INDEX telemetry_meters_last ON telemetry_meters (last_frame_at);

-- Every accepted frame, by (meter, counter) with its tag: what makes storage
-- idempotent (a QoS 1 retransmission conflicts here and is stored once) and
-- what tells a retransmission from a reused counter below the window's top.
CREATE TABLE telemetry_frames (
	meter_id    INTEGER NOT NULL,
	counter     INTEGER NOT NULL CHECK (counter > 0),
	kind        INTEGER NOT NULL CHECK (kind BETWEEN 1 AND 3),
	tag         BLOB    NOT NULL CHECK (length(tag) = 8),
	received_at INTEGER NOT NULL,
	PRIMARY KEY (meter_id, counter)
) STRICT, WITHOUT ROWID;

-- Readings: from Sluice frames (counter > 0) and from wireless M-Bus
-- telegrams (counter 0). time is the meter's clock for frames and the
-- arrival time for telegrams. Intervals are n big-endian uint32 litres.
CREATE TABLE readings (
	meter_id    INTEGER NOT NULL,
	counter     INTEGER NOT NULL CHECK (counter >= 0),
	time        INTEGER NOT NULL,
	received_at INTEGER NOT NULL,
	forward     INTEGER NOT NULL,
	reverse     INTEGER NOT NULL,
	credit      INTEGER NOT NULL,
	loaded      INTEGER NOT NULL,
	unit        INTEGER NOT NULL,
	status      INTEGER NOT NULL,
	interval_s  INTEGER NOT NULL,
	intervals   BLOB
) STRICT;
CREATE INDEX readings_meter_time ON readings (meter_id, time);
CREATE INDEX readings_time ON readings (time);

CREATE TABLE telemetry_events (
	meter_id INTEGER NOT NULL,
	counter  INTEGER NOT NULL,
	idx      INTEGER NOT NULL,
	kind     INTEGER NOT NULL,
	reason   INTEGER NOT NULL,
	time     INTEGER NOT NULL,
	value    INTEGER NOT NULL,
	PRIMARY KEY (meter_id, counter, idx)
) STRICT, WITHOUT ROWID;
CREATE INDEX telemetry_events_time ON telemetry_events (meter_id, time);

CREATE TABLE telemetry_acks (
	meter_id INTEGER NOT NULL,
	counter  INTEGER NOT NULL,
	time     INTEGER NOT NULL,
	subject  INTEGER NOT NULL,
	result   INTEGER NOT NULL,
	reason   INTEGER NOT NULL,
	ref      INTEGER NOT NULL,
	amount   INTEGER NOT NULL,
	credit   INTEGER NOT NULL,
	loaded   INTEGER NOT NULL,
	PRIMARY KEY (meter_id, counter)
) STRICT, WITHOUT ROWID;

-- Wireless M-Bus meters: the telegram address (manufacturer + 8-digit id)
-- and the meter's AES key, wrapped by the KMS (never stored in clear).
CREATE TABLE wmbus_meters (
	meter_id    INTEGER PRIMARY KEY REFERENCES meters (id),
	address     TEXT    NOT NULL UNIQUE CHECK (length(address) = 11),
	wrapped_key BLOB    NOT NULL,
	key_name    TEXT    NOT NULL,
	key_version INTEGER NOT NULL,
	-- The name of the published default key it uses, '' when none.
	default_key TEXT    NOT NULL DEFAULT '',
	created_at  INTEGER NOT NULL
) STRICT;

-- Remote top-up delivery attempts of a voucher (tokens.voucher) to an AMI
-- meter; the voucher is delivered when tokens.delivered_at is set.
CREATE TABLE downlinks (
	token_id   INTEGER PRIMARY KEY REFERENCES tokens (id),
	attempts   INTEGER NOT NULL CHECK (attempts >= 0),
	last_at    INTEGER NOT NULL,
	next_at    INTEGER NOT NULL,
	last_error TEXT    NOT NULL DEFAULT '',
	-- Set when the meter rejected the voucher: retrying will not help.
	rejected   INTEGER NOT NULL DEFAULT 0 CHECK (rejected >= 0)
) STRICT;

-- Revenue-protection alerts. At most one alert per (subject, rule) is not
-- resolved: a rule firing again updates it (last_at, count).
CREATE TABLE alerts (
	id          INTEGER PRIMARY KEY,
	subject     TEXT    NOT NULL,
	meter_id    INTEGER REFERENCES meters (id),
	rule        TEXT    NOT NULL,
	severity    TEXT    NOT NULL CHECK (severity IN ('info', 'warning', 'critical')),
	state       TEXT    NOT NULL CHECK (state IN ('open', 'acknowledged', 'resolved')),
	summary     TEXT    NOT NULL,
	details     TEXT    NOT NULL,
	first_at    INTEGER NOT NULL,
	last_at     INTEGER NOT NULL,
	count       INTEGER NOT NULL CHECK (count >= 1),
	acked_by    TEXT    NOT NULL DEFAULT '',
	acked_at    INTEGER NOT NULL DEFAULT 0,
	resolved_by TEXT    NOT NULL DEFAULT '',
	resolved_at INTEGER NOT NULL DEFAULT 0,
	note        TEXT    NOT NULL DEFAULT ''
) STRICT;
CREATE UNIQUE INDEX alerts_live ON alerts (subject, rule) WHERE state <> 'resolved';
CREATE INDEX alerts_state ON alerts (state, last_at);
CREATE INDEX alerts_meter ON alerts (meter_id, last_at);
