-- Engineering requests issue their tokens once, and key-rotation campaigns.
--
-- An approved engineering request's tokens are written in the approving
-- transaction; (request_id, ordinal) is unique so a request can never get a
-- second set, as (purchase_id, ordinal) does for purchases.
--
-- A campaign moves a set of meters to new keys (STS key change or TID
-- rollover, a voucher-key change, a per-meter key version). Each enrolled
-- meter has one row that only moves forward: pending -> issued -> delivered
-- -> confirmed (or failed, with its reason). The pending -> issued step is a
-- conditional UPDATE in the transaction that stores the meter's tokens and
-- its new key state, and (campaign_id, meter_id, ordinal) is unique on
-- tokens, so a crashed or concurrent run can never issue a meter two sets.

CREATE TABLE key_campaigns (
	id          INTEGER PRIMARY KEY,
	name        TEXT    NOT NULL UNIQUE CHECK (length(name) BETWEEN 1 AND 64),
	kind        TEXT    NOT NULL CHECK (kind IN ('sts', 'voucher-key', 'meter-key')),
	-- The target, as JSON (package campaign's Params).
	params      TEXT    NOT NULL,
	state       TEXT    NOT NULL CHECK (state IN ('running', 'done', 'cancelled')),
	created_by  TEXT    NOT NULL,
	created_at  INTEGER NOT NULL,
	finished_at INTEGER
) STRICT;

CREATE TABLE key_campaign_meters (
	campaign_id  INTEGER NOT NULL REFERENCES key_campaigns (id),
	meter_id     INTEGER NOT NULL REFERENCES meters (id),
	state        TEXT    NOT NULL CHECK (state IN ('pending', 'issued', 'delivered', 'confirmed', 'failed')),
	-- How many tokens or vouchers were issued (0: none were needed).
	tokens       INTEGER NOT NULL DEFAULT 0 CHECK (tokens >= 0),
	detail       TEXT    NOT NULL DEFAULT '',
	evidence     TEXT    NOT NULL DEFAULT '',
	issued_at    INTEGER,
	delivered_at INTEGER,
	confirmed_at INTEGER,
	PRIMARY KEY (campaign_id, meter_id)
) STRICT;
CREATE INDEX key_campaign_meters_state ON key_campaign_meters (campaign_id, state, meter_id);
CREATE INDEX key_campaign_meters_meter ON key_campaign_meters (meter_id);

ALTER TABLE tokens ADD COLUMN campaign_id INTEGER REFERENCES key_campaigns (id);
CREATE UNIQUE INDEX tokens_campaign_ordinal ON tokens (campaign_id, meter_id, ordinal);
CREATE UNIQUE INDEX tokens_request_ordinal ON tokens (request_id, ordinal);
