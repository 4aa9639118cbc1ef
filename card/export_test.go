package card

// SessionKeys exposes a session's keys to the sniffing test, which must
// prove they never cross the wire.
func SessionKeys(s *Session) (enc, mac []byte) {
	return s.ch.encKey[:], s.ch.macKey[:]
}
