"""A keyhole listener in Python: reads SLACK_TOKEN through get-secret and
reports what it found, without the token ever being in code or config.

Build:  componentize-py -d ../../wit -w listener componentize app -o listener.wasm
"""
import json

import wit_world
from wit_world.imports import secrets
from componentize_py_types import Err


class WitWorld(wit_world.WitWorld):
    def handle(self, event) -> str:
        try:
            token = secrets.get_secret("SLACK_TOKEN", None)
        except Err as e:
            # e.value is a SecretError variant: NotFound, AccessDenied, ...
            raise Err(f"cannot read SLACK_TOKEN: {type(e.value).__name__}")
        # Another environment needs a grant at deploy time (--grant-env).
        try:
            secrets.get_secret("SLACK_TOKEN", secrets.Scope(environment="staging", space=None))
            staging = "readable"
        except Err as e:
            staging = type(e.value).__name__
        payload = json.loads(event.payload)
        # No print() here: with --stub-wasi there is no stdout, and writing
        # to it traps. Return what you want recorded instead.
        return json.dumps({
            "language": "python",
            "topic": event.topic,
            "space": event.space,
            "token_length": len(token),
            "staging": staging,
            "payload_keys": sorted(payload.keys()),
        }, sort_keys=True)
