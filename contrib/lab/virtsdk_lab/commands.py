"""Run commands for the lab through oslo.concurrency.

``processutils.execute`` returns ``(stdout, stderr)`` and raises on a bad exit code;
the lab wants a :class:`subprocess.CompletedProcess` it can inspect, so this module
adapts one to the other.  Every command the lab runs goes through :func:`run`.
"""

from __future__ import annotations

import subprocess
from collections.abc import Sequence

from oslo_concurrency import processutils

from virtsdk_lab.errors import LabError


def run(
    cmd: Sequence[str],
    *,
    check: bool = True,
    timeout: float | None = None,
    input_data: str | None = None,
    cwd: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``cmd`` (no shell) and return its exit code and output.

    Called by the lab on the root namespace of the test host.  With ``check`` a
    non-zero exit raises :class:`LabError` carrying the command and its stderr;
    without it the exit code is returned in the result.  ``timeout`` (seconds) kills
    the command and raises :class:`LabError` when exceeded; ``cwd`` is its working
    directory.
    """
    args = [str(c) for c in cmd]
    try:
        out, err = processutils.execute(
            *args,
            check_exit_code=[0],
            process_input=input_data,
            cwd=cwd,
            timeout=None if timeout is None else max(1, int(timeout)),
        )
    except processutils.ProcessExecutionError as exc:
        code = exc.exit_code if isinstance(exc.exit_code, int) else -1
        if check or code == -1:
            raise LabError(
                f"command failed ({code}): {' '.join(args)}\n{(exc.stderr or '').strip()}"
            ) from exc
        return subprocess.CompletedProcess(args, code, exc.stdout or "", exc.stderr or "")
    except subprocess.TimeoutExpired as exc:
        raise LabError(f"command timed out after {timeout} s: {' '.join(args)}") from exc
    except OSError as exc:
        if check:
            raise LabError(f"cannot run {' '.join(args)}: {exc}") from exc
        return subprocess.CompletedProcess(args, 127, "", str(exc))
    return subprocess.CompletedProcess(args, 0, out, err)
