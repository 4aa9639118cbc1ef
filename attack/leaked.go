package attack

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ed25519"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strconv"
	"time"

	"sluice/card"
	"sluice/keys"
	"sluice/kms"
	"sluice/meter"
	"sluice/meter/cardport"
	"sluice/provision"
	"sluice/store"
	"sluice/store/sqlite"
	"sluice/voucher"
)

// identityCard is an attacker's card emulator that answers GET IDENTITY
// with crafted bytes (any kind, any meter, a "universal" card) and passes
// everything else to a card holding a key the attacker chose.
type identityCard struct {
	identity []byte
	c        *card.Card
}

func (f *identityCard) Transmit(apdu []byte) ([]byte, error) {
	if len(apdu) >= 2 && apdu[0] == 0x90 && apdu[1] == 0x60 {
		return append(append([]byte(nil), f.identity...), 0x91, 0x00), nil
	}
	return f.c.Transmit(apdu)
}

// meterState is what a leaked-format attack could change: keys, trust,
// settings, credit, tamper.
func meterState(m *LabMeter) ([]byte, meter.Snapshot, error) {
	d, err := meter.Dump(m.EEPROM)
	if err != nil {
		return nil, meter.Snapshot{}, err
	}
	im, err := meter.ParseImage(d, m.EEPROM.PageSize())
	if err != nil {
		return nil, meter.Snapshot{}, err
	}
	var b bytes.Buffer
	b.Write(im.Keys.MeterKey[:])
	b.Write(im.Keys.TelemetryKey[:])
	for _, k := range im.Keys.Trusted {
		b.WriteByte(byte(k.Role))
		b.Write(k.Public)
	}
	fmt.Fprintf(&b, "%+v", im.Params)
	b.Write(im.Tokens)
	return b.Bytes(), m.Snapshot(), nil
}

func leakedFormat() Attack {
	return Attack{
		ID:       "4",
		Name:     "leaked card format: initialisation/production card, unsigned provisioning record",
		Weakness: "whoever knows the initialisation card's format re-keys or resets any meter: the card carries keys in clear and any card of the right shape is obeyed",
		Defence:  "no universal card exists: every card is bound to one meter and authenticated under its own key; engineering actions are vouchers signed by the management key only; keys arrive only in provisioning records signed by the management key, bound to one device, counter-protected",
		Play: func(ctx context.Context, lab *Lab, r *Recorder) error {
			w, err := newCardWorld(ctx, lab, "attack 4", 40_000_001)
			if err != nil {
				return err
			}
			m := w.m
			rnd := lab.Rand("attack 4 attacker")
			ref, sn0, err := meterState(m)
			if err != nil {
				return err
			}

			// (a) crafted "initialisation" cards: every kind byte, for no
			// meter, for this meter and for every meter.
			uid := card.UID{0x04, 0x1A, 0x17, 0x00, 0x00, 0x00, 0x04}
			k := make([]byte, card.KeySize)
			rnd.Read(k)
			img, _ := card.NewBlank(uid, k)
			img.Lifecycle, img.Kind, img.MeterID, img.KeyVersion = card.Personalized, card.KindEngineering, m.ID(), 1
			emu, err := card.New(img, rnd, nil)
			if err != nil {
				return err
			}
			tried, obeyed := 0, 0
			for kind := 0; kind < 256; kind++ {
				for _, target := range []uint64{0, m.ID(), ^uint64(0)} {
					for _, lc := range []byte{byte(card.Blank), byte(card.Personalized)} {
						id := make([]byte, 23)
						id[0], id[1] = 1, lc
						copy(id[2:9], uid[:])
						id[9] = byte(kind)
						binary.BigEndian.PutUint32(id[10:14], uint32(lab.Now.Unix()))
						binary.BigEndian.PutUint64(id[14:22], target)
						id[22] = 1
						emu.Reset()
						rs, err := cardport.Insert(m.Meter, lab.Now, &identityCard{identity: id, c: emu})
						tried++
						if err == nil || len(rs) > 0 {
							obeyed++
						}
					}
				}
			}
			st, sn, err := meterState(m)
			if err != nil {
				return err
			}
			r.Measure("crafted_identities", float64(tried))
			r.Observe("crafted initialisation cards", obeyed == 0 && bytes.Equal(st, ref) && sn.Credit == sn0.Credit,
				"%d insertions (256 kind bytes x meter 0 / this meter / all-ones x blank / personalized): %d opened a session, meter keys, trust, settings and STS state unchanged: %v, credit %d -> %d L, card-port tamper latched: %v",
				tried, obeyed, bytes.Equal(st, ref), sn0.Credit, sn.Credit, sn.Tamper&meter.TamperCardPort != 0)

			// (b) a "production card": the attacker's genuine engineering
			// card carrying engineering vouchers signed without the
			// management key (by the attacker; by the credit key, as an
			// insider at a vending point could).
			m2, err := newCardWorld(ctx, lab, "attack 4b", 40_000_002)
			if err != nil {
				return err
			}
			ec, err := m2.issue(card.UID{0x04, 0x1A, 0x17, 0x00, 0x00, 0x00, 0x05}, card.KindEngineering, nil)
			if err != nil {
				return fmt.Errorf("issue engineering card: %w", err)
			}
			creditSigner, err := keys.VoucherSigner(ctx, lab.KM, voucher.KindCredit)
			if err != nil {
				return err
			}
			ak := attackerKey(lab)
			eng := []voucher.Voucher{
				{Kind: voucher.KindKeyChange, Slot: voucher.RoleCredit, NewKey: ak.Public().(ed25519.PublicKey)},
				{Kind: voucher.KindClearTamper, TamperMask: 0xFF},
				{Kind: voucher.KindSetParameter, Param: meter.ParamClearCredit},
				{Kind: voucher.KindSetParameter, Param: meter.ParamResetLockout},
			}
			ref2, sn2, err := meterState(m2.m)
			if err != nil {
				return err
			}
			var forged [][]byte
			for i, v := range eng {
				for j, signer := range []crypto.Signer{ak, creditSigner} {
					v.MeterID, v.Sequence = m2.m.ID(), uint32(10+2*i+j)
					v.Issued, v.Expires = lab.Now.Add(-time.Hour), lab.Now.Add(time.Hour)
					b, err := voucher.Sign(&v, signer)
					if err != nil {
						return fmt.Errorf("forge %v: %w", v.Kind, err)
					}
					forged = append(forged, b)
				}
			}
			ci := ec.Image()
			for i, b := range forged {
				ci.Slots[i] = card.Slot{Index: i, State: card.SlotPending, MeterID: m2.m.ID(), Sequence: uint32(10 + i), Voucher: b}
			}
			c2, err := card.New(ci, rnd, nil)
			if err != nil {
				return err
			}
			rs, err := cardport.Insert(m2.m.Meter, lab.Now, c2)
			if err != nil && len(rs) == 0 {
				return fmt.Errorf("engineering card refused: %w", err)
			}
			rejected := 0
			for _, rc := range rs {
				if rc.Status == card.Rejected {
					rejected++
				}
			}
			st2, sa2, err := meterState(m2.m)
			if err != nil {
				return err
			}
			r.Observe("forged production card", rejected == len(forged) && bytes.Equal(st2, ref2) && sa2.Credit == sn2.Credit,
				"%d engineering vouchers (trust a new credit key, clear tamper, clear credit, set parameter) signed by the attacker's key and by the credit key, on a genuine engineering card: %d rejected, meter keyring and settings unchanged: %v",
				len(forged), rejected, bytes.Equal(st2, ref2))

			// (c) provisioning records.
			return provisioningRecords(ctx, lab, r)
		},
	}
}

func provisioningRecords(ctx context.Context, lab *Lab, r *Recorder) error {
	rnd := lab.Rand("attack 4 provisioning")
	mgmt, err := kms.Signer(ctx, lab.KM, kms.Ref(keys.ManagementSigning))
	if err != nil {
		return err
	}
	trust, err := provision.KMSTrust(ctx, lab.KM)
	if err != nil {
		return err
	}
	derive := provision.KMSDerive(lab.KM, kms.Ref(keys.MeterRoot), func(uint64) uint16 { return 1 })
	svc, err := provision.NewService(mgmt, derive)
	if err != nil {
		return err
	}
	// A meter fresh from the factory station: its own device keys and the
	// management key its firmware trusts, no operational key yet.
	const id = 40_000_010
	dev, err := provision.NewDevice(rnd, id, "SLW-15")
	if err != nil {
		return err
	}
	ee := meter.NewEEPROM(meter.DefaultEEPROMSize, meter.DefaultPageSize)
	if err := meter.FormatFactory(ee, meter.Factory{Params: meter.DefaultParams(), Device: dev, Anchor: trust.Management}); err != nil {
		return fmt.Errorf("factory format: %w", err)
	}
	m, err := meter.Boot(ee, meter.Deps{Rand: rnd})
	if err != nil {
		return err
	}
	lm := &LabMeter{Meter: m, EEPROM: ee}
	rq, err := m.ProvisioningRequest()
	if err != nil {
		return err
	}
	req, err := provision.ParseRequest(rq)
	if err != nil {
		return err
	}
	devB, err := provision.NewDevice(rnd, id+1, "SLW-15")
	if err != nil {
		return err
	}
	reqB, err := provision.ParseRequest(devB.Request())
	if err != nil {
		return err
	}
	genuine, err := svc.Provision(ctx, req, provision.Params{Counter: 1, Trust: trust})
	if err != nil {
		return err
	}
	forB, err := svc.Provision(ctx, reqB, provision.Params{Counter: 1, Trust: trust})
	if err != nil {
		return err
	}

	// The attacker's own provisioning service: same format, own key, own
	// keys for the meter.
	ak := attackerKey(lab)
	evil, err := provision.NewService(ak, func(context.Context, uint64) ([]provision.Key, error) {
		return []provision.Key{{Kind: provision.KeyCard, RootVersion: 1, Version: 1, Secret: bytes.Repeat([]byte{0x41}, 16)},
			{Kind: provision.KeyTelemetry, RootVersion: 1, Version: 1, Secret: bytes.Repeat([]byte{0x42}, 16)}}, nil
	})
	if err != nil {
		return err
	}
	attTrust := trust
	attTrust.Management = ak.Public().(ed25519.PublicKey)
	attTrust.Credit = ak.Public().(ed25519.PublicKey)
	selfSigned, err := evil.Provision(ctx, req, provision.Params{Counter: 2, Trust: attTrust})
	if err != nil {
		return err
	}
	unsigned := append([]byte(nil), genuine...)
	for i := len(unsigned) - ed25519.SignatureSize; i < len(unsigned); i++ {
		unsigned[i] = 0
	}
	forgeries := [][]byte{selfSigned, unsigned, forB}
	for i := range genuine {
		b := append([]byte(nil), genuine...)
		b[i] ^= 0x01
		forgeries = append(forgeries, b)
	}
	before, _, err := meterState(lm)
	if err != nil {
		return err
	}
	accepted := 0
	for _, b := range forgeries {
		if err := m.Provision(lab.Now, b); err == nil {
			accepted++
		}
	}
	after, _, err := meterState(lm)
	if err != nil {
		return err
	}
	unchanged := bytes.Equal(before, after)
	// The genuine record works once and installs the KMS-derived keys;
	// its replay, and the attacker's record now, do not.
	if err := m.Provision(lab.Now, genuine); err != nil {
		return fmt.Errorf("genuine provisioning record refused: %w", err)
	}
	mk, err := keys.DeriveMeter(ctx, lab.KM, kms.Ref(keys.MeterRoot), id, 1)
	if err != nil {
		return err
	}
	installed := bytes.Equal(m.CardKey(), mk.Card[:])
	rerr := m.Provision(lab.Now, genuine)
	serr := m.Provision(lab.Now, selfSigned)
	ferr := meter.Format(ee, meter.Provision{ID: id, Params: meter.DefaultParams()})
	final, _, err := meterState(lm)
	if err != nil {
		return err
	}
	r.Measure("provisioning_records_tried", float64(len(forgeries)+2))
	r.Observe("forged provisioning records at a factory-fresh meter",
		accepted == 0 && unchanged && installed && rerr != nil && serr != nil && errors.Is(ferr, meter.ErrProvisioned) && bytes.Contains(final, mk.Card[:]),
		"%d records offered to meter.Provision (attacker-signed with the attacker's keys and trust, signature zeroed, another device's, and the genuine %d-byte record with each byte flipped): %d accepted, meter storage unchanged: %v; the genuine record then installed the KMS-derived keys: %v; replaying it: refused (%v); the attacker's record after it: refused (%v); re-formatting the meter: refused (%v)",
		len(forgeries), len(genuine), accepted, unchanged, installed, rerr != nil, serr != nil, errors.Is(ferr, meter.ErrProvisioned))
	return headEndProvisioning(ctx, lab, r, rnd)
}

// headEndProvisioning asks the head-end's provisioning (IssueRegistered,
// over the lab's KMS and a SQLite registry) for keys the attacker should not
// get: a cloned board built around a registered meter's ID, and a meter
// nobody registered.
func headEndProvisioning(ctx context.Context, lab *Lab, r *Recorder, rnd io.Reader) error {
	db, err := sqlite.Open(ctx, filepath.Join(lab.dir, "provisioning.db"))
	if err != nil {
		return err
	}
	defer db.Close()
	if _, err := db.Migrate(ctx); err != nil {
		return err
	}
	const id = 40_000_020
	err = db.Tx(ctx, func(tx store.Tx) error {
		if err := tx.Tariffs().Put(ctx, store.Tariff{Code: "DOM", Definition: []byte(`{}`)}); err != nil {
			return err
		}
		_, err := tx.Meters().Create(ctx, store.Meter{Number: strconv.Itoa(id), Kind: store.MeterAMI, TariffCode: "DOM"})
		return err
	})
	if err != nil {
		return err
	}
	request := func(meterID uint64) (*provision.Request, error) {
		d, err := provision.NewDevice(rnd, meterID, "SLW-15")
		if err != nil {
			return nil, err
		}
		return provision.ParseRequest(d.Request())
	}
	genuine, err := request(id)
	if err != nil {
		return err
	}
	clone, err := request(id)
	if err != nil {
		return err
	}
	stranger, err := request(id + 1)
	if err != nil {
		return err
	}
	opt := provision.IssueOptions{Actor: "attack-lab", Now: lab.Now}
	if _, err := provision.IssueRegistered(ctx, db, lab.KM, genuine, opt); err != nil {
		return fmt.Errorf("genuine request refused: %w", err)
	}
	_, cerr := provision.IssueRegistered(ctx, db, lab.KM, clone, opt)
	_, uerr := provision.IssueRegistered(ctx, db, lab.KM, stranger, opt)
	_, rerr := provision.IssueRegistered(ctx, db, lab.KM, genuine, opt)
	r.Observe("cloned board and unregistered meter at the head-end",
		errors.Is(cerr, provision.ErrOtherBoard) && errors.Is(uerr, provision.ErrNotRegistered) && rerr == nil,
		"registered meter %d provisioned on its board; a second board with the same meter ID asked for its keys: %v; a board naming meter %d, never registered: %v; the genuine board asking again (a lost record): served: %v",
		id, cerr, id+1, uerr, rerr == nil)
	return nil
}
