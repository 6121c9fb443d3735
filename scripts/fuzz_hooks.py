"""schemathesis hooks for scripts/fuzz-api.sh: a serializer for the batch
endpoint's NDJSON body (one JSON document per line)."""
import json

import schemathesis


@schemathesis.serializer("application/x-ndjson")
def ndjson(ctx, value):
    if isinstance(value, list):
        return "\n".join(json.dumps(v) for v in value).encode()
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if isinstance(value, str):
        return value.encode()
    return json.dumps(value).encode()
