-- The vending head-end: vending points and their floats, supply groups,
-- tariffs, customers, meters, purchases and the tokens they issued, the
-- double-entry ledger, the audit log, sessions and API keys, and engineering
-- requests under dual control. Money is in cents, water in litres, times in
-- microseconds since the Unix epoch.

CREATE TABLE vendors (
	id                INTEGER PRIMARY KEY,
	code              TEXT    NOT NULL UNIQUE CHECK (length(code) BETWEEN 1 AND 32),
	name              TEXT    NOT NULL,
	-- The float is prepaid: a vend never takes it below zero.
	float_cents       INTEGER NOT NULL DEFAULT 0 CHECK (float_cents >= 0),
	daily_limit_cents INTEGER NOT NULL CHECK (daily_limit_cents >= 0),
	disabled          INTEGER NOT NULL DEFAULT 0 CHECK (disabled IN (0, 1)),
	created_at        INTEGER NOT NULL
) STRICT;

-- What each vendor sold each day, against its daily limit.
CREATE TABLE vendor_days (
	vendor_id  INTEGER NOT NULL REFERENCES vendors (id),
	day        TEXT    NOT NULL,
	sold_cents INTEGER NOT NULL CHECK (sold_cents >= 0),
	PRIMARY KEY (vendor_id, day)
) STRICT;

ALTER TABLE operators ADD COLUMN vendor_id INTEGER REFERENCES vendors (id);

CREATE TABLE supply_groups (
	code           TEXT    PRIMARY KEY CHECK (length(code) = 6),
	name           TEXT    NOT NULL,
	dkga           TEXT    NOT NULL CHECK (dkga IN ('02', '04')),
	ea             TEXT    NOT NULL CHECK (ea IN ('07', '11')),
	base_date      INTEGER NOT NULL CHECK (base_date IN (1993, 2014, 2035)),
	-- The key revision and tariff index new tokens are made under; a meter
	-- behind them gets key-change tokens with its next purchase. The vending
	-- key of revision krn is the KMS key sts/<code>/krn<krn>.
	krn            INTEGER NOT NULL CHECK (krn BETWEEN 1 AND 9),
	ti             INTEGER NOT NULL CHECK (ti BETWEEN 0 AND 99),
	created_at     INTEGER NOT NULL
) STRICT;

CREATE TABLE tariffs (
	code       TEXT    PRIMARY KEY,
	definition TEXT    NOT NULL,
	updated_at INTEGER NOT NULL
) STRICT;

CREATE TABLE customers (
	id         INTEGER PRIMARY KEY,
	account    TEXT    NOT NULL UNIQUE CHECK (length(account) BETWEEN 1 AND 32),
	name       TEXT    NOT NULL,
	address    TEXT    NOT NULL DEFAULT '',
	phone      TEXT    NOT NULL DEFAULT '',
	area       TEXT    NOT NULL DEFAULT '',
	debt_cents INTEGER NOT NULL DEFAULT 0 CHECK (debt_cents >= 0),
	created_at INTEGER NOT NULL
) STRICT;
CREATE INDEX customers_name ON customers (name);

CREATE TABLE meters (
	id            INTEGER PRIMARY KEY,
	-- STS meters: the 18-digit PAN (IIN + DRN + Luhn); others: the serial.
	number        TEXT    NOT NULL UNIQUE CHECK (length(number) BETWEEN 1 AND 32),
	kind          TEXT    NOT NULL CHECK (kind IN ('sts', 'card', 'ami')),
	customer_id   INTEGER REFERENCES customers (id),
	tariff_code   TEXT    NOT NULL REFERENCES tariffs (code),
	area          TEXT    NOT NULL DEFAULT '',
	-- STS key parameters as programmed into the meter.
	sgc           TEXT    REFERENCES supply_groups (code),
	krn           INTEGER NOT NULL DEFAULT 1,
	ti            INTEGER NOT NULL DEFAULT 1,
	kt            INTEGER NOT NULL DEFAULT 2,
	base_date     INTEGER NOT NULL DEFAULT 2014,
	-- Highest TID and voucher sequence issued; tokens enforce uniqueness.
	last_tid      INTEGER NOT NULL DEFAULT 0 CHECK (last_tid >= 0),
	voucher_seq   INTEGER NOT NULL DEFAULT 0 CHECK (voucher_seq >= 0),
	key_version   INTEGER NOT NULL DEFAULT 1,
	status        TEXT    NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'blocked', 'removed')),
	created_at    INTEGER NOT NULL,
	CHECK (kind <> 'sts' OR sgc IS NOT NULL)
) STRICT;
CREATE INDEX meters_customer ON meters (customer_id);

-- A household's position on the month's block ladder.
CREATE TABLE meter_months (
	meter_id        INTEGER NOT NULL REFERENCES meters (id),
	month           TEXT    NOT NULL,
	paid_litres     INTEGER NOT NULL CHECK (paid_litres >= 0),
	free_issued     INTEGER NOT NULL CHECK (free_issued IN (0, 1)),
	fixed_collected INTEGER NOT NULL CHECK (fixed_collected >= 0),
	PRIMARY KEY (meter_id, month)
) STRICT;

CREATE TABLE purchases (
	id              INTEGER PRIMARY KEY,
	vendor_id       INTEGER NOT NULL REFERENCES vendors (id),
	idempotency_key TEXT    NOT NULL CHECK (length(idempotency_key) BETWEEN 1 AND 128),
	-- SHA-256 of the canonical request: a retry must match it.
	request_hash    BLOB    NOT NULL,
	operator_id     INTEGER NOT NULL REFERENCES operators (id),
	meter_id        INTEGER NOT NULL REFERENCES meters (id),
	customer_id     INTEGER REFERENCES customers (id),
	tendered_cents  INTEGER NOT NULL CHECK (tendered_cents > 0),
	paid_cents      INTEGER NOT NULL CHECK (paid_cents >= 0),
	litres          INTEGER NOT NULL CHECK (litres >= 0),
	state           TEXT    NOT NULL CHECK (state IN ('completed', 'reversed')),
	response        TEXT    NOT NULL,
	created_at      INTEGER NOT NULL,
	-- One purchase, one result: the same key twice is a retry.
	UNIQUE (vendor_id, idempotency_key)
) STRICT;
CREATE INDEX purchases_meter ON purchases (meter_id, created_at);
CREATE INDEX purchases_created ON purchases (created_at);

-- Every token or voucher issued. A purchase's set is written once, in the
-- transaction that made the purchase.
CREATE TABLE tokens (
	id          INTEGER PRIMARY KEY,
	meter_id    INTEGER NOT NULL REFERENCES meters (id),
	purchase_id INTEGER REFERENCES purchases (id),
	request_id  INTEGER,
	ordinal     INTEGER NOT NULL CHECK (ordinal >= 0),
	kind        TEXT    NOT NULL CHECK (kind IN ('key_change', 'free_water', 'credit', 'engineering')),
	class       INTEGER NOT NULL,
	subclass    INTEGER NOT NULL,
	tid         INTEGER,
	digits      TEXT,
	voucher     BLOB,
	voucher_seq INTEGER,
	litres      INTEGER NOT NULL DEFAULT 0,
	created_at  INTEGER NOT NULL,
	-- When the meter acknowledged a remote voucher (AMI downlink).
	delivered_at INTEGER,
	UNIQUE (meter_id, tid),
	UNIQUE (meter_id, voucher_seq),
	UNIQUE (purchase_id, ordinal),
	CHECK ((digits IS NULL) <> (voucher IS NULL))
) STRICT;
CREATE INDEX tokens_purchase ON tokens (purchase_id);
CREATE INDEX tokens_meter ON tokens (meter_id, created_at);

-- The double-entry ledger (package ledger): entries in commit order, each
-- balanced per unit. Entry IDs are unique ("purchase:<id>"), so a purchase
-- can never be posted, and its tokens issued, twice.
CREATE TABLE ledger_entries (
	seq         INTEGER PRIMARY KEY,
	entry_id    TEXT    NOT NULL UNIQUE,
	type        TEXT    NOT NULL,
	purchase    TEXT    NOT NULL DEFAULT '',
	reverses    TEXT    NOT NULL DEFAULT '',
	at          INTEGER NOT NULL,
	tokens      TEXT    NOT NULL DEFAULT '[]'
) STRICT;
CREATE INDEX ledger_entries_at ON ledger_entries (at);

CREATE TABLE ledger_postings (
	id        INTEGER PRIMARY KEY,
	entry_seq INTEGER NOT NULL REFERENCES ledger_entries (seq),
	account   TEXT    NOT NULL,
	unit      TEXT    NOT NULL,
	amount    INTEGER NOT NULL
) STRICT;
CREATE INDEX ledger_postings_entry ON ledger_postings (entry_seq);
CREATE INDEX ledger_postings_account ON ledger_postings (account, entry_seq);

-- Append-only, hash-chained. A row is written pending (seq NULL) in the
-- transaction of the change it records, then sealed into the chain in
-- commit order by the head-end's sealer.
CREATE TABLE audit_log (
	id        INTEGER PRIMARY KEY,
	at        INTEGER NOT NULL,
	actor     TEXT    NOT NULL,
	action    TEXT    NOT NULL,
	object    TEXT    NOT NULL,
	details   BLOB    NOT NULL,
	seq       INTEGER UNIQUE,
	prev_hash BLOB,
	hash      BLOB,
	anchor    BLOB
) STRICT;
CREATE INDEX audit_pending ON audit_log (id) WHERE seq IS NULL;

CREATE TABLE sessions (
	token_hash  BLOB    PRIMARY KEY,
	operator_id INTEGER NOT NULL REFERENCES operators (id),
	created_at  INTEGER NOT NULL,
	expires_at  INTEGER NOT NULL
) STRICT;

CREATE TABLE api_keys (
	id          INTEGER PRIMARY KEY,
	key_hash    BLOB    NOT NULL UNIQUE,
	prefix      TEXT    NOT NULL,
	operator_id INTEGER NOT NULL REFERENCES operators (id),
	label       TEXT    NOT NULL,
	created_at  INTEGER NOT NULL,
	revoked_at  INTEGER
) STRICT;

CREATE TABLE login_failures (
	id       INTEGER PRIMARY KEY,
	username TEXT    NOT NULL,
	remote   TEXT    NOT NULL,
	at       INTEGER NOT NULL
) STRICT;
CREATE INDEX login_failures_user ON login_failures (username, at);
CREATE INDEX login_failures_remote ON login_failures (remote, at);

-- Engineering tokens and key changes need a second operator (dual control),
-- enforced here as well as in the service.
CREATE TABLE engineering_requests (
	id           INTEGER PRIMARY KEY,
	meter_id     INTEGER NOT NULL REFERENCES meters (id),
	action       TEXT    NOT NULL,
	params       TEXT    NOT NULL,
	reason       TEXT    NOT NULL,
	state        TEXT    NOT NULL CHECK (state IN ('pending', 'issued', 'rejected')),
	requested_by INTEGER NOT NULL REFERENCES operators (id),
	requested_at INTEGER NOT NULL,
	decided_by   INTEGER REFERENCES operators (id),
	decided_at   INTEGER,
	CHECK (decided_by IS NULL OR decided_by <> requested_by)
) STRICT;
