"""The sending side of the disk-transfer benchmark, run on the source lab host.

The benchmark starts it once with the source host's ``exec_prefix`` (so it sends from
that host's network namespace) and keeps it running, loaded, as a compute service
would be: every transport module is imported before it says ``ready``.  It then
reads one JSON job per line on stdin::

    {"transport": "stream", "ticket": {...}, "files": [[path, name], ...],
     "overrides": {"transport_stream": {"compression": "off"}}}

and answers each with one JSON line: the TransferResult primitive plus ``wall``
(seconds spent in ``send``).  End of input ends it.
"""

from __future__ import annotations

import json
import sys
import time

from oslo_config import cfg

from virtsdk.plugins import DISK_TRANSPORTS, names
from virtsdk.transfer.base import SendFile, load_transport


def _conf() -> cfg.ConfigOpts:
    conf = cfg.ConfigOpts()
    conf([], project="virtsdk-bench")
    return conf


def main() -> int:
    for name in names(DISK_TRANSPORTS):  # import every transport now, not during a job
        load_transport(name, _conf())
    print("ready", flush=True)
    for line in sys.stdin:
        job = json.loads(line)
        conf = _conf()
        transport = load_transport(job["transport"], conf)
        for group, values in job.get("overrides", {}).items():
            for key, value in values.items():
                conf.set_override(key, value, group=group)
        files = [SendFile(path, name) for path, name in job["files"]]
        started = time.perf_counter()
        result = transport.send(files, job["ticket"])
        wall = time.perf_counter() - started
        print(json.dumps({"wall": wall, "result": result.to_primitive()}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
