#!/usr/bin/env python3
# Usage: mcuboot_sign.py OUT
# Builds the golden image of TestGoldenFile independently, following the
# steps of imgtool's Image.create (header, protected SEC_CNT, SHA256 over
# header + application + protected area, KEYHASH of the DER public key,
# Ed25519 over the digest) with the Python "cryptography" package. Ed25519
# is deterministic, so the output must equal good_ed25519.img byte for byte.
# Not run by go test: a one-off cross-check recorded in docs/firmware.md.
import hashlib, struct, sys
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

seed = hashlib.sha256(b"sluice firmware test key 1").digest()
key = ed25519.Ed25519PrivateKey.from_private_bytes(seed)
app = bytes((0xa0 + i) & 0xff for i in range(16))
sec_cnt = 7
prot = struct.pack('<HH', 0x50, 4) + struct.pack('<I', sec_cnt)
prot = struct.pack('<HH', 0x6908, 4 + len(prot)) + prot
hdr = struct.pack('<IIHHIIBBHII', 0x96f3b83d, 0, 32, len(prot), len(app), 0, 1, 2, 3, 4, 0)
payload = hdr + app + prot
digest = hashlib.sha256(payload).digest()
spki = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
tlvs = b''
for t, v in ((0x10, digest), (0x01, hashlib.sha256(spki).digest()), (0x24, key.sign(digest))):
    tlvs += struct.pack('<BBH', t, 0, len(v)) + v
open(sys.argv[1], 'wb').write(payload + struct.pack('<HH', 0x6907, 4 + len(tlvs)) + tlvs)
