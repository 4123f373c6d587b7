"""Run one transport's ``send`` as a separate process (benchmark helper).

The disk-transfer benchmark starts this with a lab host's ``exec_prefix`` so the
sending side really runs on the source host (its network namespace).  Reads a JSON
job on stdin::

    {"transport": "stream", "ticket": {...}, "files": [[path, name], ...],
     "overrides": {"transport_stream": {"compression": "off"}}}

and prints one JSON line: the TransferResult primitive plus ``wall`` (seconds
spent in ``send``).
"""

from __future__ import annotations

import json
import sys
import time

from oslo_config import cfg

from virtsdk.transfer.base import SendFile, load_transport


def main() -> int:
    job = json.load(sys.stdin)
    conf = cfg.ConfigOpts()
    conf([], project="virtsdk-bench")
    transport = load_transport(job["transport"], conf)
    for group, values in job.get("overrides", {}).items():
        for key, value in values.items():
            conf.set_override(key, value, group=group)
    files = [SendFile(path, name) for path, name in job["files"]]
    started = time.perf_counter()
    result = transport.send(files, job["ticket"])
    wall = time.perf_counter() - started
    print(json.dumps({"wall": wall, "result": result.to_primitive()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
