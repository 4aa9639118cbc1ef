package vpcd

import (
	"net"
	"syscall"
)

// quickAck turns off delayed ACKs on the card's socket until the next
// read. vpcd writes each message's length and payload separately; with
// Nagle's algorithm on its side and delayed ACKs on ours, every APDU would
// wait 40 ms for the ACK of the length bytes. Linux resets TCP_QUICKACK
// after some reads, so it is set again before each one. Best effort.
func quickAck(c net.Conn) {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		return
	}
	raw.Control(func(fd uintptr) {
		syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_QUICKACK, 1)
	})
}
