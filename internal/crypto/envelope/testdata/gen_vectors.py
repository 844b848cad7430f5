#!/usr/bin/env python3
"""Writes vectors.json: envelopes made by an implementation independent of
the Go code (pyca/cryptography), straight from the format in doc.go.
Run from this folder: python3 gen_vectors.py > vectors.json"""
import json, struct
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

def uvarint(n):
    out = b""
    while n >= 0x80:
        out += bytes([(n & 0x7F) | 0x80]); n >>= 7
    return out + bytes([n])

def aad(*parts):
    return b"".join(uvarint(len(p.encode())) + p.encode() for p in parts)

def envelope(key, version, nonce, pt, ad):
    header = bytes([0x01]) + struct.pack(">I", version)
    return header + nonce + AESGCM(key).encrypt(nonce, pt, header + ad)

cases = [
    ("empty plaintext, no aad", bytes(range(32)), 1, bytes(12), b"", []),
    ("100-byte field bound to its place", bytes(range(0x40, 0x60)), 7, bytes(range(12)),
     bytes(i % 251 for i in range(100)), ["customers", "rec_01", "email", "7"]),
    ("highest key version, utf-8 aad", bytes([0xff] * 32), 0xFFFFFFFF, bytes([0xa5] * 12),
     "naïve café".encode(), ["", "a|b", "ü"]),
]
out = []
for name, key, ver, nonce, pt, parts in cases:
    out.append({"name": name, "key": key.hex(), "version": ver, "nonce": nonce.hex(),
                "plaintext": pt.hex(), "aad_parts": parts, "aad": aad(*parts).hex(),
                "envelope": envelope(key, ver, nonce, pt, aad(*parts)).hex()})
print(json.dumps(out, indent=1))
