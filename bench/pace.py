"""One paced publisher for bench.latency: readings stamped with the moment they are sent.

python -m bench.pace --port P --prefix X --rate 4000 --seconds 20 --offset 0
"""

from __future__ import annotations

import argparse
import json
import time
from datetime import UTC, datetime

from ingest import Publisher, TopicScheme

# Messages sent back to back before the pacer checks the clock; 1 ms at 4,000/s.
BURST = 4


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--rate", type=float, required=True)
    parser.add_argument("--seconds", type=float, required=True)
    parser.add_argument("--devices", type=int, default=300)
    parser.add_argument("--offset", type=int, default=0, help="first device number")
    args = parser.parse_args()
    scheme = TopicScheme(args.prefix)
    topics = [
        scheme.telemetry("smart_meter", f"lat-{args.offset + n:05d}") for n in range(args.devices)
    ]
    total = int(args.rate * args.seconds)
    with Publisher("127.0.0.1", args.port, max_inflight=1000) as publisher:
        started = time.monotonic()
        for seq in range(total):
            if seq % BURST == 0:
                due = started + seq / args.rate
                if (wait := due - time.monotonic()) > 0:
                    time.sleep(wait)
            # Stamped now: the daemon's lag histogram (commit time minus ts) is then the
            # publish-to-commit latency, to the millisecond the payload carries.
            body = {
                "ts": datetime.now(UTC).isoformat(timespec="milliseconds"),
                "energy_kwh": 0.001,
                "power_kw": 0.5,
                "seq": seq,
            }
            publisher.publish(topics[seq % args.devices], json.dumps(body).encode())
        publisher.wait_acknowledged(timeout=120)
        elapsed = time.monotonic() - started
    print(f"sent {total} in {elapsed:.3f}", flush=True)


if __name__ == "__main__":
    main()
