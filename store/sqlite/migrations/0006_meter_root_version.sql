-- The meter-root version a meter's symmetric keys (card, telemetry, wM-Bus)
-- were derived under when it was provisioned. Rotating the root makes new
-- meters use the new version; meters already in the field keep theirs until
-- a campaign re-keys them, so the head-end must derive each meter's keys
-- under its own version, never simply the newest (docs/keys.md). Meters
-- registered before this column existed were derived under version 1, the
-- only version a root has until it is first rotated.
ALTER TABLE meters ADD COLUMN key_root_version INTEGER NOT NULL DEFAULT 1 CHECK (key_root_version BETWEEN 1 AND 65535);

-- The counter of the last provisioning record issued to the meter: a meter
-- takes a record only if its counter is above every earlier one, so the
-- head-end hands out each counter once (docs/provisioning.md).
ALTER TABLE meters ADD COLUMN provision_counter INTEGER NOT NULL DEFAULT 0 CHECK (provision_counter BETWEEN 0 AND 4294967295);
