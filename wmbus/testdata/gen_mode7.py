#!/usr/bin/env python3
"""Builds the security mode 7 test telegrams in mode7.json.

Written independently of the Go decoder (Python `cryptography` for AES and
AES-CMAC) from the OMS volume 2 / EN 13757-7 description: per-message keys
Kenc/Kmac = CMAC(K, DC || MCR || ID || 07*7), DC 00/01; AES-128-CBC with a
zero IV under Kenc; AFL MAC = CMAC(Kmac, MCL || MCR || TPL CI .. end)[:8].
Run: python3 gen_mode7.py > mode7.json
"""
import json, struct
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.cmac import CMAC

def cmac(k, m):
    c = CMAC(algorithms.AES(k)); c.update(m); return c.finalize()

def mfield(code):
    m = 0
    for ch in code: m = m << 5 | (ord(ch) - 64)
    return m

def build(key, code, ident, ver, typ, counter, acc, plain, long_header):
    m = struct.pack('<H', mfield(code))
    a = bytes.fromhex(ident)[::-1] + bytes([ver, typ])
    idb = bytes.fromhex(ident)[::-1]
    kin = lambda dc: bytes([dc]) + struct.pack('<I', counter) + idb + b'\x07' * 7
    kenc, kmac = cmac(key, kin(0)), cmac(key, kin(1))
    assert len(plain) % 16 == 0
    enc = Cipher(algorithms.AES(kenc), modes.CBC(b'\0' * 16)).encryptor()
    ct = enc.update(plain) + enc.finalize()
    cf = struct.pack('<H', 0x0700 | (len(plain) // 16) << 4)
    if long_header:
        tpl = bytes([0x72]) + idb + m + bytes([ver, typ, acc, 0x00]) + cf + b'\x10'
    else:
        tpl = bytes([0x7A, acc, 0x00]) + cf + b'\x10'
    mcl = 0x25
    mcr = struct.pack('<I', counter)
    mac = cmac(kmac, bytes([mcl]) + mcr + tpl + ct)[:8]
    afl = bytes([0x90, 15]) + struct.pack('<H', 0x2C00) + bytes([mcl]) + mcr + mac
    body = bytes([0x44]) + m + a + afl + tpl + ct
    return (bytes([len(body)]) + body).hex().upper(), kenc.hex().upper(), kmac.hex().upper()

key = bytes.fromhex('2B7E151628AED2A6ABF7158809CF4F3C')
out = []
# 04 13: volume in litres (12.345 m3); 02 FD 17: error flags; 04 6D: type F 2026-11-25 08:30
plain = bytes.fromhex('2F2F' '0413' '39300000' '02FD17' '0000' '046D' '1E0859B5')
plain += b'\x2F' * (-len(plain) % 16)
t, ke, km = build(key, 'SLU', '12345678', 0x01, 0x07, 0x00000123, 0x5A, plain, False)
out.append({"name": "short header", "key": key.hex().upper(), "telegram": t, "kenc": ke, "kmac": km,
            "id": "12345678", "manufacturer": "SLU", "counter": 0x123, "total_m3": 12.345})
plain = bytes.fromhex('2F2F' '0C13' '91724300' '2F2F2F2F2F2F2F2F')
t, ke, km = build(key, 'DME', '87654321', 0x70, 0x07, 0x01020304, 0x11, plain, True)
out.append({"name": "long header BCD", "key": key.hex().upper(), "telegram": t, "kenc": ke, "kmac": km,
            "id": "87654321", "manufacturer": "DME", "counter": 0x01020304, "total_m3": 437.291})
print(json.dumps({"about": "Security mode 7 telegrams built by gen_mode7.py, an implementation independent of the Go decoder.", "telegrams": out}, indent=1))
