package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"sluice/sts"
)

// cmdSTS groups the STS token tools. Each reads one JSON object on stdin and
// writes one JSON object on stdout; bad input exits 1 with {"error": "..."}
// naming the field.
func cmdSTS(ctx context.Context, sio stdio, args []string) error {
	return subcommands(ctx, sio, "sts", args, []command{
		{"decoder-key", "derive a meter's decoder key (DKGA02 or DKGA04)", cmdSTSDecoderKey},
		{"encode", "encode credit, management, test or key change tokens", cmdSTSEncode},
		{"decode", "decrypt and decode one 20-digit token", cmdSTSDecode},
	})
}

// stsDigits is a field given as a digit string ("01") or a JSON number (1).
type stsDigits struct {
	s   string
	set bool
}

// UnmarshalJSON keeps the text of a string or a number; digits checks it,
// so that the error can name the field.
func (d *stsDigits) UnmarshalJSON(b []byte) error {
	d.set = true
	if len(b) > 0 && b[0] == '"' {
		return json.Unmarshal(b, &d.s)
	}
	d.s = string(b)
	return nil
}

// digits returns the value as exactly n digits, zero-padding numbers.
func (d stsDigits) digits(field string, n int) (string, error) {
	if !d.set {
		return "", fmt.Errorf("%s: required", field)
	}
	s := d.s
	if len(s) < n && !strings.HasPrefix(s, "-") {
		s = strings.Repeat("0", n-len(s)) + s
	}
	if len(s) != n || strings.Trim(s, "0123456789") != "" {
		return "", fmt.Errorf("%s: %q is not %d digits", field, d.s, n)
	}
	return s, nil
}

// stsRun reads the request, runs fn and writes its answer or the error.
func stsRun[Req any](sio stdio, fs interface{ NArg() int }, fn func(*Req) (any, error)) error {
	var req Req
	resp, err := func() (any, error) {
		if fs.NArg() != 0 {
			return nil, fmt.Errorf("arguments: the request is read from stdin, not the command line")
		}
		data, err := io.ReadAll(sio.in)
		if err != nil {
			return nil, fmt.Errorf("stdin: %v", err)
		}
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.UseNumber()
		if err := dec.Decode(&req); err != nil {
			var te *json.UnmarshalTypeError
			if errors.As(err, &te) && te.Field != "" {
				return nil, fmt.Errorf("%s: a JSON %s is not a valid %s", te.Field, te.Value, te.Type)
			}
			return nil, fmt.Errorf("request: %v", err)
		}
		return fn(&req)
	}()
	enc := json.NewEncoder(sio.out)
	if err != nil {
		enc.Encode(map[string]string{"error": err.Error()})
		return exitError{1}
	}
	return enc.Encode(resp)
}

func stsHex(field, s string, sizes ...int) ([]byte, error) {
	if s == "" {
		return nil, fmt.Errorf("%s: required", field)
	}
	b, err := hex.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("%s: not hex: %v", field, err)
	}
	for _, n := range sizes {
		if len(b) == n {
			return b, nil
		}
	}
	var want []string
	for _, n := range sizes {
		want = append(want, strconv.Itoa(2*n))
	}
	return nil, fmt.Errorf("%s: %d hex digits, want %s", field, 2*len(b), strings.Join(want, " or "))
}

func stsBase(field string, v *int) (sts.BaseDate, error) {
	if v == nil {
		return 0, fmt.Errorf("%s: required", field)
	}
	b := sts.BaseDate(*v)
	if !b.Valid() {
		return 0, fmt.Errorf("%s: %d is not 1993, 2014 or 2035", field, *v)
	}
	return b, nil
}

func stsEA(field, s string) (sts.EA, error) {
	if s == "" {
		return 0, fmt.Errorf("%s: required (\"07\" or \"11\")", field)
	}
	ea, err := sts.ParseEA(s)
	if err != nil {
		return 0, fmt.Errorf("%s: %q is not \"07\" or \"11\"", field, s)
	}
	return ea, nil
}

func stsInt(field string, v *int, lo, hi int) (int, error) {
	if v == nil {
		return 0, fmt.Errorf("%s: required", field)
	}
	if *v < lo || *v > hi {
		return 0, fmt.Errorf("%s: %d is not %d..%d", field, *v, lo, hi)
	}
	return *v, nil
}

// stsTables loads the STA tables an EA07 request needs.
func stsTables(ea sts.EA, path string) (*sts.STATables, error) {
	if ea != sts.EA07 {
		return nil, nil
	}
	if path == "" {
		return nil, fmt.Errorf("--sta-tables: EA07 needs the STA tables file")
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--sta-tables: %v", err)
	}
	t, err := sts.ParseSTATables(data)
	if err != nil {
		return nil, fmt.Errorf("--sta-tables: %v", err)
	}
	return t, nil
}

// stsCoder is where encode and decode both start: the request's EA and
// decoder key, and for EA07 the STA tables of --sta-tables.
func stsCoder(eaField, keyHex, tablesPath string) (sts.EA, *sts.STATables, *sts.Coder, error) {
	ea, err := stsEA("ea", eaField)
	if err != nil {
		return ea, nil, nil, err
	}
	key, err := stsHex("decoder_key", keyHex, ea.KeySize())
	if err != nil {
		return ea, nil, nil, err
	}
	tables, err := stsTables(ea, tablesPath)
	if err != nil {
		return ea, nil, nil, err
	}
	c, err := sts.NewCoder(ea, key, tables)
	return ea, tables, c, err
}

type stsKeyRequest struct {
	DKGA       string    `json:"dkga"`
	VendingKey string    `json:"vending_key"`
	KT         *int      `json:"kt"`
	SGC        stsDigits `json:"sgc"`
	TI         stsDigits `json:"ti"`
	KRN        *int      `json:"krn"`
	PAN        string    `json:"pan"`
	BaseDate   *int      `json:"base_date"`
	EA         string    `json:"ea"`
}

func cmdSTSDecoderKey(_ context.Context, sio stdio, args []string) error {
	fs := newFlags(sio, "sts decoder-key", "< {\"dkga\":\"02\"|\"04\",\"vending_key\":HEX,\"kt\":N,\"sgc\":\"6 digits\",\"ti\":\"2 digits\",\"krn\":N,\"pan\":\"18 digits\"[,\"base_date\":Y,\"ea\":\"07\"|\"11\"]}")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	return stsRun(sio, fs, func(r *stsKeyRequest) (any, error) {
		id, err := stsKeyID(r.KT, r.SGC, r.TI, r.KRN)
		if err != nil {
			return nil, err
		}
		if r.PAN == "" {
			return nil, fmt.Errorf("pan: required")
		}
		pan, err := sts.ParsePAN(r.PAN)
		if err != nil {
			return nil, fmt.Errorf("pan: %v", err)
		}
		var dk []byte
		switch r.DKGA {
		case "02":
			vk, err := stsHex("vending_key", r.VendingKey, 8)
			if err != nil {
				return nil, err
			}
			if dk, err = sts.DKGA02(vk, id, pan); err != nil {
				return nil, err
			}
		case "04":
			vk, err := stsHex("vending_key", r.VendingKey, 20)
			if err != nil {
				return nil, err
			}
			base, err := stsBase("base_date", r.BaseDate)
			if err != nil {
				return nil, err
			}
			ea, err := stsEA("ea", r.EA)
			if err != nil {
				return nil, err
			}
			if dk, err = sts.DKGA04(vk, id, pan, base, ea); err != nil {
				return nil, err
			}
		default:
			return nil, fmt.Errorf("dkga: %q is not \"02\" or \"04\"", r.DKGA)
		}
		return map[string]string{"decoder_key": hex.EncodeToString(dk)}, nil
	})
}

func stsKeyID(kt *int, sgc, ti stsDigits, krn *int) (sts.KeyID, error) {
	var id sts.KeyID
	var err error
	if id.KT, err = stsInt("kt", kt, 0, 3); err != nil {
		return id, err
	}
	s, err := sgc.digits("sgc", 6)
	if err != nil {
		return id, err
	}
	v, _ := strconv.Atoi(s)
	id.SGC = uint32(v)
	t, err := ti.digits("ti", 2)
	if err != nil {
		return id, err
	}
	id.TI, _ = strconv.Atoi(t)
	if id.KRN, err = stsInt("krn", krn, 1, 9); err != nil {
		return id, err
	}
	return id, nil
}

type stsKeyChangeJSON struct {
	NewKey string    `json:"new_key"`
	KEN    *int      `json:"ken"`
	KRN    *int      `json:"krn"`
	RO     *int      `json:"ro"`
	KT     *int      `json:"kt"`
	TI     *int      `json:"ti"`
	SGC    stsDigits `json:"sgc"`
}

type stsEncodeRequest struct {
	DecoderKey string            `json:"decoder_key"`
	EA         string            `json:"ea"`
	Class      *int              `json:"class"`
	Subclass   *int              `json:"subclass"`
	BaseDate   *int              `json:"base_date"`
	Issued     string            `json:"issued"`
	TID        *int              `json:"tid"`
	RND        *int              `json:"rnd"`
	Tenths     *uint64           `json:"tenths"`
	Value      *int              `json:"value"`
	Control    *uint64           `json:"control"`
	Mfr        *int              `json:"mfr"`
	KeyChange  *stsKeyChangeJSON `json:"key_change"`
}

type stsEncodeResponse struct {
	Tokens []string `json:"tokens"`
	TID    uint32   `json:"tid"`
}

func cmdSTSEncode(_ context.Context, sio stdio, args []string) error {
	fs := newFlags(sio, "sts encode", "[--sta-tables FILE] < {\"decoder_key\":HEX,\"ea\":\"07\"|\"11\",\"class\":N,\"subclass\":N,\"base_date\":Y,\"issued\":RFC3339,\"rnd\":N,\"tenths\":N|\"value\":N[,\"key_change\":{...}]}")
	tablesPath := fs.String("sta-tables", "", "JSON file of the STA tables (EA07)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	return stsRun(sio, fs, func(r *stsEncodeRequest) (any, error) {
		ea, tables, c, err := stsCoder(r.EA, r.DecoderKey, *tablesPath)
		if err != nil {
			return nil, err
		}
		class := -1
		if r.Class != nil {
			if class, err = stsInt("class", r.Class, 0, 2); err != nil {
				return nil, err
			}
		}
		resp := stsEncodeResponse{Tokens: []string{}}
		base := sts.BaseDate(0)
		if r.KeyChange != nil {
			kc, err := stsKeyChange(r.KeyChange, ea)
			if err != nil {
				return nil, err
			}
			toks, err := c.KeyChange(kc)
			if err != nil {
				return nil, fmt.Errorf("key_change: %v", err)
			}
			for _, t := range toks {
				resp.Tokens = append(resp.Tokens, t.String())
			}
			// A purchase that needs a key change: the key change set
			// first, then the credit under the new key (and, after a
			// rollover, on the next base date).
			if class != int(sts.ClassCredit) {
				return resp, nil
			}
			if c, err = sts.NewCoder(ea, kc.NewKey, tables); err != nil {
				return nil, err
			}
			if base, err = stsBase("base_date", r.BaseDate); err != nil {
				return nil, err
			}
			if kc.RO {
				next, ok := base.Next()
				if !ok {
					return nil, fmt.Errorf("key_change.ro: no base date after %d", int(base))
				}
				base = next
			}
		}
		if class < 0 {
			return nil, fmt.Errorf("class: required (or key_change)")
		}
		maxSub := map[int]int{0: 7, 1: 1, 2: 9}[class]
		sub, err := stsInt("subclass", r.Subclass, 0, maxSub)
		if err != nil {
			return nil, err
		}
		if class == int(sts.ClassTest) {
			if r.Control == nil {
				return nil, fmt.Errorf("control: required for class 1")
			}
			mfr, err := stsInt("mfr", r.Mfr, 0, 9999)
			if err != nil {
				return nil, err
			}
			t, err := sts.TestToken(uint8(sub), *r.Control, uint16(mfr))
			if err != nil {
				return nil, fmt.Errorf("control/mfr: %v", err)
			}
			resp.Tokens = append(resp.Tokens, t.String())
			return resp, nil
		}
		if class == int(sts.ClassManagement) && (sub == 3 || sub == 4 || sub == 8 || sub == 9) {
			return nil, fmt.Errorf("subclass: %d is a key change section; give key_change", sub)
		}
		if base == 0 {
			if base, err = stsBase("base_date", r.BaseDate); err != nil {
				return nil, err
			}
		}
		var tid uint32
		switch {
		case r.TID != nil:
			v, err := stsInt("tid", r.TID, 0, sts.MaxTID)
			if err != nil {
				return nil, err
			}
			tid = uint32(v)
		case r.Issued != "":
			at, err := time.Parse(time.RFC3339, r.Issued)
			if err != nil {
				return nil, fmt.Errorf("issued: not an RFC 3339 time: %v", err)
			}
			if tid, err = sts.TIDAt(base, at); err != nil {
				return nil, fmt.Errorf("issued: %v", err)
			}
		default:
			return nil, fmt.Errorf("issued: required")
		}
		var rnd uint8
		if r.RND != nil {
			v, err := stsInt("rnd", r.RND, 0, 15)
			if err != nil {
				return nil, err
			}
			rnd = uint8(v)
		} else {
			var b [1]byte
			rand.Read(b[:])
			rnd = b[0] & 0xF
		}
		var t sts.Token
		if class == int(sts.ClassCredit) {
			if r.Tenths == nil {
				return nil, fmt.Errorf("tenths: required for class 0")
			}
			if t, err = c.Credit(uint8(sub), rnd, tid, *r.Tenths); err != nil {
				return nil, fmt.Errorf("tenths: %v", err)
			}
		} else {
			v, err := stsInt("value", r.Value, 0, 0xFFFF)
			if err != nil {
				return nil, err
			}
			if t, err = c.Management(uint8(sub), rnd, tid, uint16(v)); err != nil {
				return nil, err
			}
		}
		resp.Tokens = append(resp.Tokens, t.String())
		resp.TID = tid
		return resp, nil
	})
}

func stsKeyChange(j *stsKeyChangeJSON, ea sts.EA) (sts.KeyChange, error) {
	var kc sts.KeyChange
	var err error
	if kc.NewKey, err = stsHex("key_change.new_key", j.NewKey, ea.KeySize()); err != nil {
		return kc, err
	}
	ken, err := stsInt("key_change.ken", j.KEN, 0, 255)
	if err != nil {
		return kc, err
	}
	kc.KEN = uint8(ken)
	if kc.KRN, err = stsInt("key_change.krn", j.KRN, 1, 9); err != nil {
		return kc, err
	}
	ro := 0
	if j.RO != nil {
		if ro, err = stsInt("key_change.ro", j.RO, 0, 1); err != nil {
			return kc, err
		}
	}
	kc.RO = ro == 1
	if kc.KT, err = stsInt("key_change.kt", j.KT, 0, 3); err != nil {
		return kc, err
	}
	if kc.TI, err = stsInt("key_change.ti", j.TI, 0, 99); err != nil {
		return kc, err
	}
	if ea == sts.EA11 || j.SGC.set {
		s, err := j.SGC.digits("key_change.sgc", 6)
		if err != nil {
			return kc, err
		}
		v, _ := strconv.Atoi(s)
		kc.SGC = uint32(v)
	}
	return kc, nil
}

type stsDecodeRequest struct {
	DecoderKey string `json:"decoder_key"`
	EA         string `json:"ea"`
	BaseDate   *int   `json:"base_date"`
	Token      string `json:"token"`
}

type stsDecodeResponse struct {
	Class       uint8   `json:"class"`
	Subclass    uint8   `json:"subclass"`
	RND         *uint8  `json:"rnd,omitempty"`
	TID         *uint32 `json:"tid,omitempty"`
	Issued      string  `json:"issued,omitempty"`
	AmountField string  `json:"amount_field,omitempty"`
	Tenths      *uint64 `json:"tenths,omitempty"`
	Value       *uint16 `json:"value,omitempty"`
	Section     int     `json:"section,omitempty"`
	Payload     string  `json:"payload,omitempty"`
	Control     *uint64 `json:"control,omitempty"`
	Mfr         *uint16 `json:"mfr,omitempty"`
	CRCOK       bool    `json:"crc_ok"`
}

func cmdSTSDecode(_ context.Context, sio stdio, args []string) error {
	fs := newFlags(sio, "sts decode", "[--sta-tables FILE] < {\"decoder_key\":HEX,\"ea\":\"07\"|\"11\",\"base_date\":Y,\"token\":\"20 digits\"}")
	tablesPath := fs.String("sta-tables", "", "JSON file of the STA tables (EA07)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	return stsRun(sio, fs, func(r *stsDecodeRequest) (any, error) {
		_, _, c, err := stsCoder(r.EA, r.DecoderKey, *tablesPath)
		if err != nil {
			return nil, err
		}
		base, err := stsBase("base_date", r.BaseDate)
		if err != nil {
			return nil, err
		}
		if r.Token == "" {
			return nil, fmt.Errorf("token: required")
		}
		tok, err := sts.ParseToken(r.Token)
		if err != nil {
			return nil, fmt.Errorf("token: %v", err)
		}
		if tok.Class() == 3 {
			return nil, fmt.Errorf("token: class 3 is reserved")
		}
		// A CRC failure is an answer, not bad input: the token is well
		// formed but not for this key (or mistyped).
		p, err := c.Open(tok)
		resp := stsDecodeResponse{Class: p.Class, Subclass: p.Subclass, CRCOK: err == nil}
		switch {
		case p.Class == sts.ClassTest:
			ctl, mfr := p.TestFields()
			resp.Control, resp.Mfr = &ctl, &mfr
		case p.HasTID():
			rnd, tid, f := p.RND(), p.TID(), p.Field()
			resp.RND, resp.TID = &rnd, &tid
			resp.Issued = sts.TIDTime(base, tid).Format(time.RFC3339)
			resp.AmountField = fmt.Sprintf("%04x", f)
			if p.Class == sts.ClassCredit {
				u := sts.DecodeAmount(f)
				resp.Tenths = &u
			} else {
				resp.Value = &f
			}
		default:
			resp.Section = map[uint8]int{3: 1, 4: 2, 8: 3, 9: 4}[p.Subclass]
			var b [8]byte
			binary.BigEndian.PutUint64(b[:], p.Payload)
			resp.Payload = hex.EncodeToString(b[2:]) // 44 bits in 6 bytes
		}
		return resp, nil
	})
}
