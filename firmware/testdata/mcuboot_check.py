#!/usr/bin/env python3
# Usage: mcuboot_check.py IMAGE PUBLIC.pem   (needs the Python "cryptography" package)
# Not run by go test: a one-off cross-check recorded in docs/firmware.md.
# Independent check of a Sluice image against the MCUboot layout, written
# from imgtool's Image.verify algorithm with the Python 'cryptography' library.
import hashlib, struct, sys
from cryptography.hazmat.primitives import serialization, hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

img = open(sys.argv[1], 'rb').read()
pub = serialization.load_pem_public_key(open(sys.argv[2], 'rb').read())
magic, load, hdr, ptlv, size = struct.unpack('<IIHHI', img[:16])
assert magic == 0x96f3b83d, 'magic'
flags, = struct.unpack('<I', img[16:20])
ver = struct.unpack('<BBHI', img[20:28])
off = hdr + size
m, tot = struct.unpack('<HH', img[off:off+4])
prot = {}
if m == 0x6908:
    assert tot == ptlv, 'protect size'
    p = off + 4
    while p < off + tot:
        t, l = struct.unpack('<HH', img[p:p+4]); prot[t] = img[p+4:p+4+l]; p += 4 + l
    off += tot
    m, tot = struct.unpack('<HH', img[off:off+4])
assert m == 0x6907, 'tlv magic'
digest = hashlib.sha256(img[:off]).digest()
p, tl = off + 4, {}
while p < off + tot:
    t, l = struct.unpack('<HH', img[p:p+4]); tl[t] = img[p+4:p+4+l]; p += 4 + l
assert p == len(img), 'length'
assert tl[0x10] == digest, 'sha256'
spki = pub.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
assert tl[0x01] == hashlib.sha256(spki).digest(), 'keyhash'
if isinstance(pub, ed25519.Ed25519PublicKey):
    pub.verify(tl[0x24], digest)           # imgtool: verify_digest(sig, digest)
else:
    pub.verify(tl[0x22], img[:off], ec.ECDSA(hashes.SHA256()))  # imgtool: verify(sig, payload)
print('OK version %d.%d.%d+%d sec_cnt %d flags %#x' % (ver + (struct.unpack('<I', prot[0x50])[0], flags)))
