package attack

func headendAttack() Attack   { return Attack{ID: "12"} }
