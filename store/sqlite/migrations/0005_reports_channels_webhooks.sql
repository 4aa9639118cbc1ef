-- Reports, payment channels and outbound webhooks (docs/reports.md,
-- docs/channels.md, docs/webhooks.md).

-- Reports walk a date range. Sales, settlement and debt start from the
-- ledger's entries in the range (ledger_entries_at) and reach postings by
-- entry (ledger_postings_entry) and purchases by key; opening floats read
-- one account prefix before the range, covered by this index so the
-- postings table itself is never read. Token reports need tokens by time.
CREATE INDEX ledger_postings_account_unit ON ledger_postings (account, unit, entry_seq, amount);
CREATE INDEX tokens_created ON tokens (created_at);

-- A payment channel is a vending point sold through by a third party (a
-- shop chain, a bank, a mobile-money operator) with its own fee and a cap
-- on one purchase; its terminals are operators of role vendor with API keys.
CREATE TABLE channels (
	vendor_id          INTEGER PRIMARY KEY REFERENCES vendors (id),
	fee_fixed_cents    INTEGER NOT NULL CHECK (fee_fixed_cents BETWEEN 0 AND 100000),
	fee_rate_bp        INTEGER NOT NULL CHECK (fee_rate_bp BETWEEN 0 AND 1000),
	max_purchase_cents INTEGER NOT NULL CHECK (max_purchase_cents > 0),
	disabled           INTEGER NOT NULL DEFAULT 0 CHECK (disabled IN (0, 1)),
	updated_at         INTEGER NOT NULL
) STRICT;

-- The one advice (confirmation or reversal) a channel delivered for a
-- purchase. The first advice decides; a repeated one is answered with the
-- stored response, byte for byte.
CREATE TABLE channel_advices (
	id                 INTEGER PRIMARY KEY,
	vendor_id          INTEGER NOT NULL REFERENCES vendors (id),
	client_purchase_id TEXT    NOT NULL,
	purchase_id        INTEGER NOT NULL REFERENCES purchases (id),
	kind               TEXT    NOT NULL CHECK (kind IN ('confirmation', 'reversal')),
	outcome            TEXT    NOT NULL CHECK (outcome IN ('confirmed', 'reversed', 'referred')),
	reason             TEXT    NOT NULL DEFAULT '',
	response           TEXT    NOT NULL,
	created_at         INTEGER NOT NULL,
	UNIQUE (vendor_id, client_purchase_id)
) STRICT;
CREATE INDEX channel_advices_outcome ON channel_advices (outcome, id);

-- Webhook subscribers: where to send which events, and the HMAC key that
-- signs them.
CREATE TABLE webhook_subscribers (
	id         INTEGER PRIMARY KEY,
	name       TEXT    NOT NULL UNIQUE CHECK (length(name) BETWEEN 1 AND 64),
	url        TEXT    NOT NULL CHECK (length(url) BETWEEN 1 AND 2048),
	secret     BLOB    NOT NULL CHECK (length(secret) >= 32),
	events     TEXT    NOT NULL,
	disabled   INTEGER NOT NULL DEFAULT 0 CHECK (disabled IN (0, 1)),
	created_at INTEGER NOT NULL
) STRICT;

-- The outbox: one row per (subscriber, event), written in the transaction
-- that took the event from its source; delivered, retried with back-off,
-- or dead after the last attempt.
CREATE TABLE webhook_outbox (
	id              INTEGER PRIMARY KEY,
	subscriber_id   INTEGER NOT NULL REFERENCES webhook_subscribers (id),
	event_id        TEXT    NOT NULL,
	event_type      TEXT    NOT NULL,
	payload         BLOB    NOT NULL,
	state           TEXT    NOT NULL CHECK (state IN ('pending', 'delivered', 'dead')),
	attempts        INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
	next_attempt_at INTEGER NOT NULL,
	last_error      TEXT    NOT NULL DEFAULT '',
	created_at      INTEGER NOT NULL,
	finished_at     INTEGER NOT NULL DEFAULT 0,
	UNIQUE (subscriber_id, event_id)
) STRICT;
CREATE INDEX webhook_outbox_due ON webhook_outbox (next_attempt_at) WHERE state = 'pending';
CREATE INDEX webhook_outbox_state ON webhook_outbox (state, id);

-- Every delivery attempt, for the delivery log.
CREATE TABLE webhook_deliveries (
	id          INTEGER PRIMARY KEY,
	outbox_id   INTEGER NOT NULL REFERENCES webhook_outbox (id),
	attempt     INTEGER NOT NULL,
	at          INTEGER NOT NULL,
	status      INTEGER NOT NULL,
	error       TEXT    NOT NULL,
	duration_us INTEGER NOT NULL
) STRICT;
CREATE INDEX webhook_deliveries_outbox ON webhook_deliveries (outbox_id, id);

-- The alerts report reads unresolved alerts by state (alerts_state) and
-- resolved ones by when they were resolved.
CREATE INDEX alerts_resolved ON alerts (state, resolved_at);
