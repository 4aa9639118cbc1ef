// Package telemetry is the Sluice meter telemetry scheme over MQTT, version 1
// (docs/telemetry.md). Its pure parts live in sub-packages, one concept each:
//
//   - topic: the MQTT topic tree (sluice/v1/m/{meter}/up/reading ...) and
//     its parser;
//   - frame: the compact binary frames meters send (readings, events,
//     acknowledgements), sealed with a truncated AES-CMAC under the meter's
//     telemetry key;
//   - replay: the per-meter replay window that tells new frames from
//     retransmissions, reused counters and frames too old to judge.
//
// The adapters build on these and keep all I/O out of them:
//
//   - broker: one small interface over the embedded MQTT broker (per-meter
//     credentials, ACLs) and a client of an external broker;
//   - ingest: verification, replay classification, batched idempotent
//     storage acknowledged after commit, back-pressure, counters; wM-Bus
//     gateway telegrams;
//   - mqttlink: the meter's side (frames sealed and published; the fleet
//     emulator's uplink);
//   - mqttload: a lean MQTT publisher for benchmarks (pre-encoded QoS 1
//     packets, every PUBACK awaited), so the load costs the shared cores
//     next to nothing;
//   - service: all of it wired for the head-end, with revenue protection
//     (package protect) and remote top-up delivery.
package telemetry
