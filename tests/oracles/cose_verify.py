"""Independent check of p2ptchap account certificates with pycose.

Runs in its own virtual environment (pycose 1.1 needs cbor2 < 6, the project
needs cbor2 >= 6).  Reads JSON lines on stdin: {"message": hex, "key": hex},
where key is the issuer's Ed25519 public key; writes one JSON line per input
with whether pycose verified the signature and, if so, the CWT claims it
decoded (text keys for text claims, stringified integers otherwise).
"""

import json
import sys

import cbor2
from pycose.keys import OKPKey
from pycose.keys.curves import Ed25519
from pycose.messages import CoseMessage


def plain(value):
    if isinstance(value, bytes):
        return {"hex": value.hex()}
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


for line in sys.stdin:
    request = json.loads(line)
    result = {"verified": False}
    try:
        message = CoseMessage.decode(bytes.fromhex(request["message"]))
        message.key = OKPKey(crv=Ed25519, x=bytes.fromhex(request["key"]))
        result["verified"] = bool(message.verify_signature())
        result["type"] = type(message).__name__
        if result["verified"]:
            result["claims"] = plain(cbor2.loads(message.payload))
    except Exception as exc:  # the oracle reports, the test decides
        result["error"] = f"{type(exc).__name__}: {exc}"
    print(json.dumps(result), flush=True)
