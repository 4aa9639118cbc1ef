-- tokens_purchase (purchase_id) is a prefix of the unique (purchase_id,
-- ordinal) index, which serves the same look-ups (a purchase's tokens, in
-- order). Every token a vend writes paid for both; this one goes.
DROP INDEX tokens_purchase;
