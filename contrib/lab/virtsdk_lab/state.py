"""The on-disk record of a running lab: ``/run/virtsdk-lab/<index>.json``.

Written by :meth:`Lab.up` before the first resource is created and updated as hosts
come up, so a lab that crashed half-way can still be torn down by another process.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from virtsdk_lab.host import LabHost


@dataclass
class LabState:
    """Everything needed to find, show and tear down lab ``index``."""

    name: str
    index: int
    root: Path
    persistent: bool = False
    owner_pid: int = field(default_factory=os.getpid)
    hosts: list[LabHost] = field(default_factory=list)

    @property
    def lab_dir(self) -> Path:
        return self.root / f"{self.name}-{self.index}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "index": self.index,
            "root": str(self.root),
            "persistent": self.persistent,
            "owner_pid": self.owner_pid,
            "hosts": [h.to_dict() for h in self.hosts],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LabState:
        return cls(
            name=str(data["name"]),
            index=int(data["index"]),
            root=Path(data["root"]),
            persistent=bool(data.get("persistent", False)),
            owner_pid=int(data.get("owner_pid", 0)),
            hosts=[LabHost.from_dict(h) for h in data.get("hosts", [])],
        )


def state_path(run_dir: Path, index: int) -> Path:
    return run_dir / f"{index}.json"


def save(run_dir: Path, state: LabState) -> None:
    """Atomically write ``state`` (write + rename)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    target = state_path(run_dir, state.index)
    tmp = target.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(state.to_dict(), indent=2))
    tmp.replace(target)


def load(run_dir: Path, index: int) -> LabState | None:
    """The recorded state of lab ``index``, or ``None`` if there is none (or it is corrupt)."""
    try:
        return LabState.from_dict(json.loads(state_path(run_dir, index).read_text()))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def remove(run_dir: Path, index: int) -> None:
    state_path(run_dir, index).unlink(missing_ok=True)


def recorded_indexes(run_dir: Path) -> list[int]:
    """Indexes that have a state file."""
    if not run_dir.is_dir():
        return []
    return sorted(int(p.stem) for p in run_dir.glob("*.json") if p.stem.isdigit())
