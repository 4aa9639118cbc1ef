package attack

import (
	"context"
	"crypto/ed25519"
	"encoding/binary"
	"errors"
	"fmt"

	"sluice/firmware"
	"sluice/firmware/boot"
	"sluice/keys"
	"sluice/kms"
)

// appendTLV adds a TLV at the end of an image's unprotected area and fixes
// the area's length, as an attacker editing a signed image would.
func appendTLV(img []byte, typ uint16, val []byte) ([]byte, error) {
	im, err := firmware.Parse(img)
	if err != nil {
		return nil, err
	}
	u := len(im.SignedBytes()) // the unprotected area starts where the signed bytes end
	out := append([]byte(nil), img...)
	tot := binary.LittleEndian.Uint16(out[u+2:])
	binary.LittleEndian.PutUint16(out[u+2:], tot+uint16(4+len(val)))
	out = binary.LittleEndian.AppendUint16(out, typ)
	out = binary.LittleEndian.AppendUint16(out, uint16(len(val)))
	return append(out, val...), nil
}

// replaceTLV overwrites the value of the first TLV of type typ.
func replaceTLV(img []byte, typ uint16, val []byte) ([]byte, error) {
	im, err := firmware.Parse(img)
	if err != nil {
		return nil, err
	}
	out := append([]byte(nil), img...)
	for _, t := range append(im.Protected, im.Unprotected...) {
		if t.Type == typ && len(t.Value) == len(val) {
			copy(out[t.Offset+4:], val)
			return out, nil
		}
	}
	return nil, fmt.Errorf("no TLV %#x of %d bytes", typ, len(val))
}

func firmwareAttack() Attack {
	return Attack{
		ID:       "10",
		Name:     "unsigned, re-signed, downgraded and TLV-injected firmware",
		Weakness: "meters that run any image, or an old signed image with a known hole, or accept TLVs outside the signed area (MCUboot CVE-2024-32883)",
		Defence:  "MCUboot-format images signed by the KMS firmware key; allow-listed TLVs per area; mandatory security counter under the signature; A/B slots verified at install and at every boot",
		Play: func(ctx context.Context, lab *Lab, r *Recorder) error {
			s, err := kms.Signer(ctx, lab.KM, kms.Ref(keys.FirmwareSigning))
			if err != nil {
				return err
			}
			v, err := firmware.NewVerifier(s.Public())
			if err != nil {
				return err
			}
			app := make([]byte, 2048)
			lab.Rand("firmware app").Read(app)
			mk := func(ver string, ctr uint32) ([]byte, error) {
				vv, err := firmware.ParseVersion(ver)
				if err != nil {
					return nil, err
				}
				return firmware.Sign(app, s, firmware.SignOptions{Version: vv, SecurityCounter: ctr})
			}
			old, err := mk("1.1.0", 4)
			if err != nil {
				return err
			}
			cur, err := mk("1.2.0", 5)
			if err != nil {
				return err
			}
			flash := boot.NewMemFlash(16<<10, 256)
			ld := boot.New(flash, v)
			if _, err := ld.Install(cur); err != nil {
				return fmt.Errorf("genuine image refused: %w", err)
			}
			if _, err := ld.Boot(); err != nil {
				return fmt.Errorf("genuine image does not boot: %w", err)
			}

			type try struct {
				what string
				img  []byte
			}
			var tries []try
			// Unsigned: the signature zeroed; and the bare application.
			sig := make([]byte, ed25519.SignatureSize)
			uns, err := replaceTLV(cur, firmware.TLVEd25519, sig)
			if err != nil {
				return err
			}
			tries = append(tries, try{"signature zeroed", uns}, try{"bare application, no header", app})
			// Re-signed with the attacker's key, counter raised; and the
			// same claiming the trusted key's hash.
			ak := attackerKey(lab)
			evil := append([]byte(nil), app...)
			copy(evil, "attacker payload")
			vv, _ := firmware.ParseVersion("9.9.9")
			resigned, err := firmware.Sign(evil, ak, firmware.SignOptions{Version: vv, SecurityCounter: 99})
			if err != nil {
				return err
			}
			kh, err := firmware.KeyHash(s.Public())
			if err != nil {
				return err
			}
			claimed, err := replaceTLV(resigned, firmware.TLVKeyHash, kh[:])
			if err != nil {
				return err
			}
			tries = append(tries, try{"re-signed by the attacker", resigned}, try{"attacker signature under the trusted key hash", claimed})
			// TLV injection into the unprotected area.
			for _, inj := range []struct {
				what string
				typ  uint16
				val  []byte
			}{
				{"SEC_CNT injected unprotected", firmware.TLVSecCnt, []byte{0xFF, 0xFF, 0xFF, 0xFF}},
				{"second SHA256 injected", firmware.TLVSHA256, make([]byte, 32)},
				{"unknown TLV injected", 0x00E0, []byte("boot args: debug=1")},
				{"encryption key TLV injected", 0x0030, make([]byte, 16)},
			} {
				b, err := appendTLV(cur, inj.typ, inj.val)
				if err != nil {
					return err
				}
				tries = append(tries, try{inj.what, b})
			}
			// Every byte of the genuine image flipped.
			for i := range cur {
				b := append([]byte(nil), cur...)
				b[i] ^= 0x01
				tries = append(tries, try{fmt.Sprintf("byte %d flipped", i), b})
			}
			installed := 0
			var accepted []string
			for _, t := range tries {
				if _, err := ld.Install(t.img); err == nil {
					installed++
					accepted = append(accepted, t.what)
				}
			}
			// Downgrade: the older genuine image, at install; then written
			// straight into the other slot with a programmer while the
			// active image is damaged.
			_, derr := ld.Install(old)
			prog := flash.Clone()
			pl := boot.New(prog, v)
			st, err := pl.State()
			if err != nil {
				return err
			}
			other := boot.SlotB
			if st.Active == boot.SlotB {
				other = boot.SlotA
			}
			raw := prog.Raw(other)
			for i := range raw {
				raw[i] = 0xFF
			}
			copy(raw, old)
			prog.Corrupt(st.Active, 100)
			_, perr := pl.Boot()

			booted, err := ld.Boot()
			if err != nil {
				return fmt.Errorf("meter no longer boots: %w", err)
			}
			stillCurrent := booted.Image.Header.Version.String() == "1.2.0" && booted.Image.SecurityCounter == 5
			r.Measure("firmware_images_tried", float64(len(tries)+1))
			r.Observe("unsigned, re-signed, injected, byte-flipped", installed == 0 && stillCurrent,
				"%d images offered to the A/B bootloader (zeroed signature, bare application, attacker-signed with counter 99, attacker signature under the trusted key hash, 4 TLV injections, and the genuine %d-byte image with each of its bytes flipped): %d installed %v; the meter boots %s, counter %d",
				len(tries), len(cur), installed, accepted, booted.Image.Header.Version, booted.Image.SecurityCounter)
			r.Observe("downgrade", errors.Is(derr, boot.ErrDowngrade) && errors.Is(perr, boot.ErrNoBootable) && stillCurrent,
				"the genuine, KMS-signed 1.1.0 (counter 4) over 1.2.0 (counter 5): refused at install (%v); written into the other slot with a programmer and the active image damaged: the meter stays down rather than boot it (%v)",
				derr, perr)
			return nil
		},
	}
}
