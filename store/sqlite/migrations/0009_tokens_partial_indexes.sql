-- A token belongs to a purchase, a key-change campaign or an engineering
-- request, so two of these three columns are NULL on every row. An index
-- entry for a NULL key serves no look-up (they all ask campaign_id = ? or
-- request_id = ?) and enforces nothing (NULLs are distinct), yet every token
-- a vend wrote paid for two of them, each at a place of the index chosen by
-- its meter. Only the rows that have the column are indexed now; uniqueness
-- among them is unchanged.
DROP INDEX tokens_campaign_ordinal;
CREATE UNIQUE INDEX tokens_campaign_ordinal ON tokens (campaign_id, meter_id, ordinal) WHERE campaign_id IS NOT NULL;
DROP INDEX tokens_request_ordinal;
CREATE UNIQUE INDEX tokens_request_ordinal ON tokens (request_id, ordinal) WHERE request_id IS NOT NULL;
