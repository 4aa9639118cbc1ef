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
// The adapters (embedded broker, MQTT client, batched ingest into the store)
// build on these and keep all I/O out of them.
package telemetry
