package sts

import (
	"encoding/binary"
	"fmt"
)

// KeyChange is the content of a key change set: the new decoder key and
// the identifiers that go with it. The set is 2 tokens for a 64-bit key
// (EA07) and 4 tokens for a 128-bit key (EA11), each a class 2 token
// encrypted under the meter's current (old) key. The meter commits the new
// key only when it holds the whole set.
type KeyChange struct {
	NewKey []byte // 8 or 16 bytes
	KEN    uint8  // key expiry number: tokens with TID>>16 > KEN are refused
	KRN    int    // new key revision number 1..9
	RO     bool   // rollover: clear the TID memory and move to the next base date
	KT     int    // new key type 0..3
	TI     int    // new tariff index 0..99
	SGC    uint32 // new supply group code (carried by 4-token sets only)
}

func (kc KeyChange) validate() error {
	if n := len(kc.NewKey); n != 8 && n != 16 {
		return fmt.Errorf("%w: new_key is %d bytes, want 8 or 16", ErrFormat, n)
	}
	return KeyID{KT: kc.KT, SGC: kc.SGC, TI: kc.TI, KRN: kc.KRN}.Validate()
}

// Sections returns the plaintexts of the set, in the order they are
// entered: subclass 3, 4, then 8, 9 for a 128-bit key.
//
//	section 1 (3): KENHO (4) | KRN (4) | RO (1) | reserved (1) | KT (2) | key bits 127..96 (63..32)
//	section 2 (4): KENLO (4) | TI (8) | key bits 31..0
//	section 3 (8): SGC bits 11..0 (12) | key bits 95..64
//	section 4 (9): SGC bits 23..12 (12) | key bits 63..32
func (kc KeyChange) Sections() ([]Plain, error) {
	if err := kc.validate(); err != nil {
		return nil, err
	}
	var k1, k2, k3, k4 uint64 // key words in section order
	if len(kc.NewKey) == 8 {
		k1 = uint64(binary.BigEndian.Uint32(kc.NewKey[0:]))
		k2 = uint64(binary.BigEndian.Uint32(kc.NewKey[4:]))
	} else {
		k1 = uint64(binary.BigEndian.Uint32(kc.NewKey[0:]))
		k3 = uint64(binary.BigEndian.Uint32(kc.NewKey[4:]))
		k4 = uint64(binary.BigEndian.Uint32(kc.NewKey[8:]))
		k2 = uint64(binary.BigEndian.Uint32(kc.NewKey[12:]))
	}
	var ro uint64
	if kc.RO {
		ro = 1
	}
	ps := []Plain{
		{ClassManagement, SubKeyChange1, uint64(kc.KEN>>4)<<40 | uint64(kc.KRN)<<36 | ro<<35 | uint64(kc.KT)<<32 | k1},
		{ClassManagement, SubKeyChange2, uint64(kc.KEN&0xF)<<40 | uint64(kc.TI)<<32 | k2},
	}
	if len(kc.NewKey) == 16 {
		ps = append(ps,
			Plain{ClassManagement, SubKeyChange3, uint64(kc.SGC&0xFFF)<<32 | k3},
			Plain{ClassManagement, SubKeyChange4, uint64(kc.SGC>>12&0xFFF)<<32 | k4})
	}
	return ps, nil
}

// KeyChange seals a key change set under the Coder's (old) key.
func (c *Coder) KeyChange(kc KeyChange) ([]Token, error) {
	if want := c.ea.KeySize(); len(kc.NewKey) != want {
		return nil, fmt.Errorf("%w: new_key is %d bytes, EA%s keys are %d", ErrFormat, len(kc.NewKey), c.ea, want)
	}
	ps, err := kc.Sections()
	if err != nil {
		return nil, err
	}
	ts := make([]Token, len(ps))
	for i, p := range ps {
		if ts[i], err = c.Seal(p); err != nil {
			return nil, err
		}
	}
	return ts, nil
}

// sectionIndex maps a key change subclass to its section number - 1.
func sectionIndex(subclass uint8) int {
	switch subclass {
	case SubKeyChange1:
		return 0
	case SubKeyChange2:
		return 1
	case SubKeyChange3:
		return 2
	case SubKeyChange4:
		return 3
	}
	return -1
}

// assembleKeyChange rebuilds a KeyChange from complete section payloads
// (index = section - 1); keyLen is 8 or 16.
func assembleKeyChange(sec *[4]uint64, keyLen int, oldSGC uint32) KeyChange {
	s1, s2, s3, s4 := sec[0], sec[1], sec[2], sec[3]
	kc := KeyChange{
		KEN: uint8(s1>>40&0xF)<<4 | uint8(s2>>40&0xF),
		KRN: int(s1 >> 36 & 0xF),
		RO:  s1>>35&1 == 1,
		KT:  int(s1 >> 32 & 3),
		TI:  int(s2 >> 32 & 0xFF),
		SGC: oldSGC,
	}
	key := make([]byte, keyLen)
	if keyLen == 8 {
		binary.BigEndian.PutUint32(key[0:], uint32(s1))
		binary.BigEndian.PutUint32(key[4:], uint32(s2))
	} else {
		binary.BigEndian.PutUint32(key[0:], uint32(s1))
		binary.BigEndian.PutUint32(key[4:], uint32(s3))
		binary.BigEndian.PutUint32(key[8:], uint32(s4))
		binary.BigEndian.PutUint32(key[12:], uint32(s2))
		kc.SGC = uint32(s4>>32&0xFFF)<<12 | uint32(s3>>32&0xFFF)
	}
	kc.NewKey = key
	return kc
}
