-- Operators (people and vending terminals) and installation settings.
CREATE TABLE operators (
	id                   INTEGER PRIMARY KEY,
	username             TEXT    NOT NULL UNIQUE CHECK (length(username) BETWEEN 1 AND 64),
	display_name         TEXT    NOT NULL,
	role                 TEXT    NOT NULL CHECK (role IN ('admin', 'supervisor', 'vendor', 'engineer', 'auditor')),
	password_hash        TEXT    NOT NULL,
	must_change_password INTEGER NOT NULL DEFAULT 0 CHECK (must_change_password IN (0, 1)),
	disabled             INTEGER NOT NULL DEFAULT 0 CHECK (disabled IN (0, 1)),
	created_at           INTEGER NOT NULL,
	updated_at           INTEGER NOT NULL
) STRICT;

CREATE TABLE settings (
	key   TEXT PRIMARY KEY,
	value TEXT NOT NULL
) STRICT;
