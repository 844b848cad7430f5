#!/usr/bin/env python3
"""Independent implementation of the audit chain's canonical encoding, hash and
checkpoint message, to produce the known-answer vector in vector.json."""
import hashlib, hmac, json, struct, datetime

def s(x): b = x.encode(); return struct.pack(">I", len(b)) + b
def ss(xs): return struct.pack(">I", len(xs)) + b"".join(s(x) for x in xs)
def u64(n): return struct.pack(">Q", n & (2**64 - 1))
def u32(n): return struct.pack(">I", n)
# A key version is bound (4 bytes big-endian, at the end) only when above 1,
# so that logs from before audit keys could rotate keep their hashes.
def version(v): return u32(v) if v > 1 else b""

def genesis(node): return hashlib.sha256(b"coffer-audit-genesis-v1\x00" + node.encode()).hexdigest()

def fields(e):
    t = datetime.datetime.fromisoformat(e["time"].replace("Z", "+00:00"))
    micros = (t - datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)) // datetime.timedelta(microseconds=1)
    return (s(e["id"]) + u64(e["seq"]) + s(e["node"]) + u64(micros) +
            s(e["request_id"]) + s(e["principal_id"]) + s(e["principal_kind"]) + ss(e["roles"]) +
            s(e["source_ip"]) + s(e["action"]) + s(e["resource"]) + ss(e["fields"]) + s(e["decision"]) +
            s(e["rule"]) + s(e["reason"]) + u64(e["status"]) + u64(e["count"]) + ss(e["value_hmacs"]) +
            s(e["prev_hash"]))

# Form 1 (no targets): what every event before targets was. Form 2 (an event
# naming its targets): another label, the version always, then the targets.
def canonical(e):
    if e.get("targets"):
        return (b"coffer-audit-event-v2\x00" + fields(e) + u32(max(e.get("key_version", 0), 1)) +
                ss(e["targets"]))
    return b"coffer-audit-event-v1\x00" + fields(e) + version(e.get("key_version", 0))

key = bytes(range(32))
e = {"id": "n1:1", "seq": 1, "node": "n1", "time": "2024-05-01T12:00:00.123456Z", "request_id": "req-1",
     "principal_id": "client-1", "principal_kind": "client", "roles": ["support", "reader"],
     "source_ip": "192.0.2.1", "action": "read", "resource": "collections/customers",
     "fields": ["email", "ssn"], "decision": "allow", "rule": "support#0", "reason": "", "status": 200,
     "count": 1, "value_hmacs": ["ab12"], "prev_hash": genesis("n1")}
e2 = dict(e, id="n1:2", seq=2, decision="deny", rule="", reason="no rule grants read", status=403,
          count=0, roles=[], fields=[], value_hmacs=[], principal_id="", principal_kind="", request_id="req-é")
h1 = hmac.new(key, bytes.fromhex(e["prev_hash"]) + canonical(e), hashlib.sha256).hexdigest()
e2["prev_hash"] = h1
h2 = hmac.new(key, bytes.fromhex(h1) + canonical(e2), hashlib.sha256).hexdigest()
cp_msg = b"coffer-audit-checkpoint-v1\x00" + s("n1") + u64(2) + s(h2) + u64(1714564800123456)
# After a rotation: event 3 chained under version 2 of the HMAC key, and a
# checkpoint over it signed by version 2 of the signing key.
key2 = bytes(range(32, 64))
e3 = dict(e, id="n1:3", seq=3, prev_hash=h2, key_version=2)
h3 = hmac.new(key2, bytes.fromhex(h2) + canonical(e3), hashlib.sha256).hexdigest()
cp3_msg = b"coffer-audit-checkpoint-v1\x00" + s("n1") + u64(3) + s(h3) + u64(1714564800123456) + version(2)
# Events that name their targets: one under version 1 of the HMAC key, one
# under version 2.
e4 = dict(e, id="n1:4", seq=4, action="create", prev_hash=h3, key_version=2,
          targets=["collections/customers/records/0192f0c4-7d3a-7c1e-9b2a-5f4e3d2c1b0a", "subjects/s-é"])
h4 = hmac.new(key2, bytes.fromhex(h3) + canonical(e4), hashlib.sha256).hexdigest()
e5 = dict(e, id="n2:1", seq=1, node="n2", prev_hash=genesis("n2"), targets=["keys/orders/versions/3"])
h5 = hmac.new(key, bytes.fromhex(e5["prev_hash"]) + canonical(e5), hashlib.sha256).hexdigest()
print(json.dumps({"hmac_key_hex": key.hex(), "genesis_n1": genesis("n1"),
                  "events": [dict(e, hash=h1), dict(e2, hash=h2)],
                  "checkpoint_message_hex": cp_msg.hex(),
                  "checkpoint": {"node": "n1", "seq": 2, "hash": h2, "time": "2024-05-01T12:00:00.123456Z"},
                  "rotated": {"hmac_key_hex": key2.hex(), "event": dict(e3, hash=h3),
                              "checkpoint_message_hex": cp3_msg.hex(),
                              "checkpoint": {"node": "n1", "seq": 3, "hash": h3, "time": "2024-05-01T12:00:00.123456Z",
                                             "key_version": 2}},
                  "targeted": [{"hmac_key_hex": key2.hex(), "event": dict(e4, hash=h4)},
                               {"hmac_key_hex": key.hex(), "event": dict(e5, hash=h5)}]},
                 indent=2, ensure_ascii=False))
