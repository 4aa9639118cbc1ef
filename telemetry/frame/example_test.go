package frame_test

import (
	"fmt"
	"time"

	"sluice/telemetry/frame"
	"sluice/telemetry/replay"
)

// A meter seals a reading; the head-end opens it and checks its counter.
func Example() {
	key, _ := frame.NewKey([]byte("0123456789abcdef")) // per meter, from the KMS
	msg, err := frame.Seal(nil, key, &frame.Frame{
		Kind: frame.KindReading, Meter: 4710001, Counter: 1,
		Time: time.Date(2026, 11, 25, 8, 0, 0, 0, time.UTC),
		Reading: frame.Reading{Forward: 123456, Credit: 8500, Loaded: 20000,
			Unit: frame.UnitLitres, Status: frame.LowCredit},
	})
	if err != nil {
		panic(err)
	}

	var f frame.Frame
	if err := frame.Open(key, msg, &f); err != nil {
		panic(err)
	}
	var w replay.Window // loaded from the store in practice
	verdict, w := w.Observe(f.Counter, frame.Tag(msg))
	fmt.Println(len(msg), f.Meter, f.Reading.Forward, verdict)
	verdict, _ = w.Observe(f.Counter, frame.Tag(msg)) // QoS 1 retransmission
	fmt.Println(verdict)
	// Output:
	// 64 4710001 123456 new
	// duplicate
}
