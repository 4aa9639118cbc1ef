package sqlstore

// SealStatement exposes the audit sealing statement to the tests.
var SealStatement = sealStatement
