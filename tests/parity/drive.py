"""Runs a JSON list of calls with the published Python SDK (platos-client).

usage: PLATOS_SESSION_TOKEN=<jwt> python drive.py <base-url> < calls.json

Each call is {"call": "threads.get", "args": [...], "kwargs": {...}}. A string
argument "$N.field" is replaced by field `field` of call N's result, so calls can
use ids the server created earlier in the run. One JSON line per call on stdout:
{"ok": <returned value>} or {"error": {"type": <class name>, "status": <int|null>}}.
"""

import asyncio
import json
import os
import sys

from platos_client import PlatosClient


def resolve(value, results):
    if isinstance(value, str) and value.startswith("$"):
        index, field = value[1:].split(".", 1)
        return (results[int(index)].get("ok") or {}).get(field)
    if isinstance(value, list):
        return [resolve(v, results) for v in value]
    if isinstance(value, dict):
        return {k: resolve(v, results) for k, v in value.items()}
    return value


async def main() -> None:
    calls = json.load(sys.stdin)
    results = []
    async with PlatosClient(
        base_url=sys.argv[1], session_token=os.environ["PLATOS_SESSION_TOKEN"]
    ) as client:
        for call in calls:
            try:
                target = client
                for part in call["call"].split("."):
                    target = getattr(target, part)
                args = resolve(call.get("args", []), results)
                kwargs = resolve(call.get("kwargs", {}), results)
                result = {"ok": await target(*args, **kwargs)}
            except Exception as e:  # every failure is data for the comparison
                result = {"error": {"type": type(e).__name__, "status": getattr(e, "status", None)}}
            results.append(result)
            print(json.dumps(result), flush=True)


asyncio.run(main())
