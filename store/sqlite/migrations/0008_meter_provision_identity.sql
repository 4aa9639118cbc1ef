-- The Ed25519 identity key of the board the meter's last provisioning record
-- was issued to (NULL: never provisioned). A later request naming the same
-- meter from another board (a cloned or swapped board) is refused unless an
-- operator replaces the board explicitly (docs/provisioning.md).
ALTER TABLE meters ADD COLUMN provision_identity BLOB CHECK (provision_identity IS NULL OR length(provision_identity) = 32);
