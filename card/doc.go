// Package card is Sluice's prepaid CPU card: the ISO 7816-4 APDU codec, the
// EV2-style secure channel, the card application (as an emulator, Card) and
// the reader side that the meter and the vending office use (Session).
//
// # Why this design
//
// Cards in the field fail in two ways: a key or PIN crosses the contacts in
// clear (memory cards), or one card format opens every meter (shared keys,
// universal "init" cards). Here:
//
//   - Every card has its own AES-128 key, diversified with NXP AN10922 from
//     its meter's card key and the card's UID (CardKey). A card opens only its
//     own meter; a dumped card yields only its own key.
//   - Nothing reusable crosses the contacts. Reader and card run the public
//     NXP EV2 3-pass mutual authentication (AN12196): each proves it holds the
//     key by decrypting the other's fresh random number, and the reader
//     checks the card's RndA' as strictly as the card checks RndB'. All later
//     traffic is CommMode.Full: AES-CBC under session keys derived with
//     AES-CMAC from both random numbers, and an 8-byte CMAC bound to a
//     transaction identifier and a command counter, so a recorded session
//     can neither be read nor replayed.
//   - The card cannot mint credit and does not try to judge it: credit is an
//     Ed25519-signed voucher (package voucher) that the card stores as opaque
//     bytes. The meter verifies it and keeps its own sequence memory, the final
//     guard against a voucher loaded twice.
//   - Credit moves card to meter in two steps that survive a card pulled at
//     any byte: the meter commits the credit to its journal first, then
//     writes a receipt, which the card stores and with which it marks the
//     voucher consumed in one atomic update. A pull before the receipt leaves
//     the voucher pending; the meter sees the sequence it already holds, adds
//     nothing and writes the receipt again. See docs/card.md.
//
// The protocol core (apdu.go, ev2.go, the Card's command handler) is pure:
// randomness is an io.Reader passed in, there is no clock and no I/O. The
// transports are adapters: Card itself in-process, card/vpcd to put an
// emulated card into pcscd's virtual reader, card/pcsc to reach a reader
// through PC/SC.
package card
