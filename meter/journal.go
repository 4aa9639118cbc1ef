package meter

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

// The journal keeps the meter's whole persistent state as one record in one
// of two banks of the EEPROM. A commit writes the new record, sequence number
// one higher, into the bank that does not hold the current one; boot takes
// the valid record with the higher sequence number. Because the banks share
// no page, a power cut during a commit can tear only the bank being written,
// and its CRC then fails, so the meter boots on the previous record: every
// change is all-or-nothing, and the commit point is the last byte written.
//
// Record layout (big-endian):
//
//	0  2  magic "SJ"
//	2  1  format version (1)
//	3  1  reserved, 0
//	4  4  sequence number
//	8  2  payload length n
//	10 n  payload (the encoded state)
//	10+n 4 CRC-32C over bytes 0 .. 10+n-1
const (
	journalHeader  = 10
	journalTrailer = 4
	journalVersion = 1
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ErrBlank is returned by Boot when the storage holds no record at all: the
// meter was never provisioned.
var ErrBlank = errors.New("meter: storage is blank (not provisioned)")

// ErrCorrupt is returned by Boot when neither bank holds a valid record.
var ErrCorrupt = errors.New("meter: no valid journal record")

type journal struct {
	dev      Storage
	bankSize int
	cur      int    // bank holding the current record, or -1
	seq      uint32 // its sequence number

	committed func(payload []byte) // test hook: called after each commit
}

func newJournal(dev Storage) (*journal, error) {
	ps := dev.PageSize()
	if ps <= 0 || dev.Size() < 2*ps {
		return nil, fmt.Errorf("meter: storage of %d bytes is too small for two banks", dev.Size())
	}
	return &journal{dev: dev, bankSize: dev.Size() / 2 / ps * ps, cur: -1}, nil
}

// maxPayload is the largest state a bank holds.
func (j *journal) maxPayload() int { return j.bankSize - journalHeader - journalTrailer }

// load finds the current record and returns its payload.
func (j *journal) load() ([]byte, error) {
	var best []byte
	blank := true
	for b := 0; b < 2; b++ {
		raw := make([]byte, j.bankSize)
		if err := j.dev.ReadAt(raw, b*j.bankSize); err != nil {
			return nil, fmt.Errorf("meter: reading bank %d: %w", b, err)
		}
		if !allErased(raw) {
			blank = false
		}
		seq, payload, ok := parseRecord(raw)
		if ok && (j.cur < 0 || seq > j.seq) {
			j.cur, j.seq, best = b, seq, payload
		}
	}
	switch {
	case j.cur >= 0:
		return best, nil
	case blank:
		return nil, ErrBlank
	}
	return nil, ErrCorrupt
}

func allErased(b []byte) bool {
	for _, c := range b {
		if c != 0xFF {
			return false
		}
	}
	return true
}

func parseRecord(raw []byte) (seq uint32, payload []byte, ok bool) {
	if len(raw) < journalHeader+journalTrailer || raw[0] != 'S' || raw[1] != 'J' || raw[2] != journalVersion {
		return 0, nil, false
	}
	n := int(binary.BigEndian.Uint16(raw[8:]))
	end := journalHeader + n
	if end+journalTrailer > len(raw) {
		return 0, nil, false
	}
	if crc32.Checksum(raw[:end], castagnoli) != binary.BigEndian.Uint32(raw[end:]) {
		return 0, nil, false
	}
	return binary.BigEndian.Uint32(raw[4:]), raw[journalHeader:end], true
}

// commit makes payload the current record. It returns only when the record
// is complete; on error the previous record is still the one Boot will find.
func (j *journal) commit(payload []byte) error {
	if len(payload) > j.maxPayload() {
		return fmt.Errorf("meter: state of %d bytes exceeds the %d-byte bank", len(payload), j.maxPayload())
	}
	seq := j.seq + 1
	if j.cur < 0 {
		seq = 1
	}
	if j.cur >= 0 && j.seq == 1<<32-1 {
		// A wrapped sequence number would make boot prefer the older
		// record. At one commit a second this is 136 years away.
		return errors.New("meter: journal sequence numbers exhausted")
	}
	rec := make([]byte, 0, journalHeader+len(payload)+journalTrailer)
	rec = append(rec, 'S', 'J', journalVersion, 0)
	rec = binary.BigEndian.AppendUint32(rec, seq)
	rec = binary.BigEndian.AppendUint16(rec, uint16(len(payload)))
	rec = append(rec, payload...)
	rec = binary.BigEndian.AppendUint32(rec, crc32.Checksum(rec, castagnoli))

	bank := 1 - j.cur
	if j.cur < 0 {
		bank = 0
	}
	base := bank * j.bankSize
	ps := j.dev.PageSize()
	old := make([]byte, ps)
	// Pages that already hold the right bytes are skipped: it saves EEPROM
	// wear and write time, and cannot weaken atomicity because the CRC is
	// checked over the bytes as they end up, whoever wrote them.
	for off := 0; off < len(rec); off += ps {
		chunk := rec[off:min(off+ps, len(rec))]
		if err := j.dev.ReadAt(old[:len(chunk)], base+off); err != nil {
			return fmt.Errorf("meter: journal read: %w", err)
		}
		if bytes.Equal(old[:len(chunk)], chunk) {
			continue
		}
		if err := j.dev.WritePage(base+off, chunk); err != nil {
			return fmt.Errorf("meter: journal write: %w", err)
		}
	}
	j.cur, j.seq = bank, seq
	if j.committed != nil {
		j.committed(payload)
	}
	return nil
}
