package attack

func telemetryFrames() Attack { return Attack{ID: "11"} }
func unsoldCredit() Attack    { return Attack{ID: "11b"} }
func headendAttack() Attack   { return Attack{ID: "12"} }
func wmbusDefaultKey() Attack { return Attack{ID: "13"} }
