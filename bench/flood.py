"""A flooding client against a calm one, with authentication and limits on.

One calm client (authenticated, admin) does sequential ping round trips:
first alone (the baseline), then while a separate process floods the
service: it authenticates with an API key, sends pings as fast as it can
until it is cut (4429), and reconnects, for the whole measurement. The
ratio is the calm client's p99 during the flood over its idle p99; the
issue's goal is <= 2x. Also reported: how many times the flooder was cut
and how many of its frames were refused.

Each figure is the median of ROUNDS rounds (1 in quick mode), each with a
fresh service.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import textwrap
import time

from websockets.sync.client import connect

from adwd.actors.auth import ApiKey, Limits, SecurityConfig, api_key_hash, api_key_proof
from adwd.service.app import Service
from adwd.service.config import Config
from bench.common import median, percentile, print_table, row, write_result
from bench.loadgen import quick

ROUNDS = 3
PINGS = 1000
CALM_KEY, FLOOD_KEY = "calm-" + "c" * 40, "flood-" + "f" * 40

FLOODER = textwrap.dedent(
    """
    import hashlib, hmac, json, sys, time
    from websockets.sync.client import connect
    from websockets.exceptions import ConnectionClosed, InvalidStatus
    url, key, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
    end = time.monotonic() + seconds
    cuts = sent = 0
    while time.monotonic() < end:
        try:
            with connect(url, max_queue=None) as ws:
                c = json.loads(ws.recv())["data"]
                k = hashlib.sha256(key.encode()).digest()
                sig = hmac.new(k, f"{c['challenge']}:{c['connection_id']}".encode(),
                               hashlib.sha256).hexdigest()
                ws.send(json.dumps({"type": "authenticate", "data": {
                    "method": "api_key", "key_id": "flood", "signature": sig}}))
                frame = json.dumps({"type": "ping"})
                while time.monotonic() < end:
                    ws.send(frame)
                    sent += 1
        except ConnectionClosed:
            cuts += 1
        except (InvalidStatus, OSError):
            time.sleep(0.05)  # refused before the upgrade (429): try again
    print(json.dumps({"cuts": cuts, "sent": sent}))
    """
)


def _login(url: str):  # type: ignore[no-untyped-def]
    ws = connect(url, max_queue=None)
    c = json.loads(ws.recv())["data"]
    proof = api_key_proof(CALM_KEY, c["challenge"], c["connection_id"])
    ws.send(
        json.dumps(
            {
                "type": "authenticate",
                "data": {"method": "api_key", "key_id": "calm", "signature": proof},
            }
        )
    )
    while json.loads(ws.recv())["type"] != "auth_response":
        pass
    return ws


def _rtts(ws, n: int) -> list[float]:  # type: ignore[no-untyped-def]
    times = []
    frame = json.dumps({"type": "ping"})
    for _ in range(n):
        start = time.perf_counter()
        ws.send(frame)
        while json.loads(ws.recv())["type"] != "pong":
            pass
        times.append(time.perf_counter() - start)
        time.sleep(0.005)  # calm: under 200/s, within the limits configured below
    return times


def run() -> list[dict[str, object]]:
    """Idle versus flooded ping round trips of the calm client."""
    rounds, pings = (1, 300) if quick() else (ROUNDS, PINGS)
    keys = [
        ApiKey(key_id="calm", sha256=api_key_hash(CALM_KEY), user_id="calm", permissions=["admin"]),
        ApiKey(
            key_id="flood",
            sha256=api_key_hash(FLOOD_KEY),
            user_id="flood",
            permissions=["monitor:read"],
        ),
    ]
    idle99, flood99, idle50, flood50, cuts = [], [], [], [], []
    for _ in range(rounds):
        tmp = tempfile.mkdtemp(prefix="adwd-bench-")
        # Limits raised so that the calm probe (under 200/s) never meets them; the
        # flooder sends thousands a second, far above them.
        limits = Limits(commands_per_s=500, commands_burst=500, principal_commands_per_s=1000)
        security = SecurityConfig(methods=["api_key"], api_keys=keys, limits=limits)
        config = Config(port=0, data_dir=tmp, security=security)
        service = Service(config)
        service.start()
        url = f"ws://127.0.0.1:{service.port}/ws/trigger"
        try:
            ws = _login(url)
            idle = _rtts(ws, pings)
            flooder = subprocess.Popen(
                [sys.executable, "-c", FLOODER, url, FLOOD_KEY, str(pings * 0.008 + 2)],
                stdout=subprocess.PIPE,
                text=True,
            )
            time.sleep(1.0)  # let the flood start before measuring
            flooded = _rtts(ws, pings)
            out, _ = flooder.communicate(timeout=120)
            ws.close()
        finally:
            service.stop()
        idle99.append(percentile(idle, 99))
        idle50.append(percentile(idle, 50))
        flood99.append(percentile(flooded, 99))
        flood50.append(percentile(flooded, 50))
        cuts.append(json.loads(out or '{"cuts": 0}')["cuts"])
    us = 1e6
    return [
        row(
            "ping->pong p50, flooded / idle",
            median(flood50) * us,
            median(idle50) * us,
            "us",
            cost=True,
        ),
        row(
            "ping->pong p99, flooded / idle",
            median(flood99) * us,
            median(idle99) * us,
            "us",
            cost=True,
            goal=2.0,
        ),
        row("flooder cut (4429) per round", median(cuts), 1.0, "times", cost=True),
    ]


def main() -> None:
    """Run, print and save."""
    rows = run()
    print_table(rows)
    print(f"saved {write_result('flood', rows)}")


if __name__ == "__main__":
    main()
