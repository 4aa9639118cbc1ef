#!/usr/bin/env python3
"""Builds compact.json: a Kamstrup Multical 21 compact frame (CI 79) on air.

The plaintext is the decrypted compact telegram of meter 76348799 published
in the wmbusmeters multical21 driver tests (ELL SN D19EAD21, payload CRC
7F17, format signature A8ED, records CRC B66A, 6.408 m3); the meter's key
is the one of the full-frame vector in telegrams.json. This script puts the
ELL AES-128-CTR encryption back (IV: M A CC SN 00 00 00), independently of
the Go decoder.
"""
import json
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

key = bytes.fromhex('28F64A24988064A079AA2C807D6102AE')
head = bytes.fromhex('23442D2C998734761B168D2087D19EAD21')
plain = bytes.fromhex('7F1779EDA86AB6710008190000081900007F13')
iv = head[2:10] + bytes([head[11] & 0xEF]) + head[13:17] + b'\0\0\0'
ct = Cipher(algorithms.AES(key), modes.CTR(iv)).encryptor().update(plain)
print(json.dumps({"about": __doc__.strip().splitlines()[0], "telegrams": [{
    "meter": "Kamstrup Multical 21 compact frame", "id": "76348799", "key": key.hex().upper(),
    "telegram": (head + ct).hex().upper(), "total_m3": 6.408}]}, indent=1))
