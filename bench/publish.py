"""Publishes the workload at QoS 1 and waits for every PUBACK; prints when it started."""

from __future__ import annotations

import argparse
import time

from bench.workload import workload
from meterflow.publisher import Publisher


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--readings", type=int, required=True)
    parser.add_argument("--devices", type=int, required=True)
    args = parser.parse_args()
    messages = list(workload(args.prefix, args.readings, args.devices))
    with Publisher("127.0.0.1", args.port, max_inflight=1000) as publisher:
        started = time.time()
        for topic, body in messages:
            publisher.publish(topic, body)
        publisher.wait_acknowledged(timeout=600)
        finished = time.time()
    print(f"started {started} finished {finished}", flush=True)


if __name__ == "__main__":
    main()
