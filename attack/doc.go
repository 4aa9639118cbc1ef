// Package attack is Sluice's attack lab: every known attack on prepaid
// meters, played against the real components, with the outcome decided by
// what the code observed.
//
// # What "real" means here
//
// Each attack builds what it needs from the production packages: a sealed
// file KMS (kms/filekms) holding the key hierarchy of package keys, meters
// formatted and booted from an emulated EEPROM (package meter) with keys the
// KMS derived for them, cards run by the card emulator (package card) and
// inserted through the meter's own card reader (meter/cardport), firmware
// signed by the KMS and installed by the A/B bootloader (firmware/boot),
// and, for the head-end and telemetry attacks, a head-end started in-process
// (headend.Start) with a temporary data directory, SQLite, its HTTP server
// and its embedded MQTT broker on free ports of 127.0.0.1, spoken to over
// HTTP and over MQTT with meters' real credentials and frames sealed under
// the keys its KMS derived; what it did is read back from its API, its
// /metrics and its database. No
// component is mocked; an attacker's tools (a card emulator answering crafted
// bytes, a wiretap, a key search) are written here, in the open.
//
// # Verdicts are measurements
//
// An attack records cases. A case is "defeated" only when the code observed
// the defence working: credit registers compared before and after, every
// reply of the target counted, bytes searched, keys tried per second. It is
// "succeeded" when the observation shows the attacker gained what the case
// is after (credit added, a key found, a forged frame stored). Nothing is
// declared: a broken defence, or a broken harness that stops observing it,
// turns a case into "succeeded" or into an error, and the lab's own tests
// build deliberately weakened targets to prove that it does.
//
// An attack whose target is not built yet is "pending": shown in the table,
// never counted as defeated, and not a failure of the run. An attack that
// could not run (a component failed to start) is an "error" and fails the
// run. The run succeeds only when every attack that ran was defeated.
//
// # Determinism
//
// All randomness (keys in the KMS, card challenges, random tokens, crafted
// bytes) comes from ChaCha8 streams seeded from one seed and the attack's ID,
// printed with the results, so a run can be repeated exactly. What cannot be
// repeated exactly is timing: rates are measured on the machine at hand.
//
// docs/security-model.md maps each threat to its defence and to the attack
// here that tests it.
package attack
