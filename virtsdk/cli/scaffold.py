"""``virtsdk drivers new NAME``: write a ready driver distribution from Jinja2 templates.

The driver class is generated from :class:`virtsdk.driver.ComputeDriver` itself (every
lifecycle method, every feature method of the :class:`~virtsdk.driver.Capabilities`
declaration, every observation hook), so the scaffold never falls behind the interface.
"""

from __future__ import annotations

import inspect
import keyword
import re
from dataclasses import dataclass
from pathlib import Path

import jinja2

from virtsdk import driver as driver_module
from virtsdk import objects
from virtsdk.driver import OBSERVATION_HOOKS, OPTIONAL_METHODS, ComputeDriver
from virtsdk.exceptions import Invalid

_NAME = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
_LIFECYCLE = ("init_host", "cleanup_host", "spawn", "destroy", "power_off", "power_on",
              "get_info", "list_instances", "get_available_resource", "instance_exists",
              "plug_vifs", "unplug_vifs", "cleanup", "abort_migrate_disk_target",
              "list_instance_uuids_on_host")


@dataclass
class MethodStub:
    name: str
    params: str
    returns: str
    call: str
    doc: str
    abstract: bool


def _stub(name: str) -> MethodStub:
    fn = getattr(ComputeDriver, name)
    sig = inspect.signature(fn)
    params, call = [], []
    for p in sig.parameters.values():
        text = p.name
        if p.annotation is not inspect.Parameter.empty:
            text += f": {p.annotation}"
        if p.default is not inspect.Parameter.empty:
            text += f" = {p.default!r}" if p.annotation is not inspect.Parameter.empty \
                else f"={p.default!r}"
        params.append(text)
        if p.name != "self":
            call.append(p.name if p.kind != p.KEYWORD_ONLY else f"{p.name}={p.name}")
    returns = "" if sig.return_annotation is inspect.Signature.empty \
        else f" -> {sig.return_annotation}"
    doc = "\n".join(("        " + line) if line else ""
                    for line in (inspect.getdoc(fn) or name).splitlines()).strip()
    if "\n" in doc:
        doc += "\n        "
    joined = ", ".join(params)
    if len(f"    def {name}({joined}){returns}:") > 99:
        joined = "\n" + "".join(f"        {p},\n" for p in params) + "    "
    called = ", ".join(call)
    if len(f"        return super().{name}({called})") > 99:
        called = "\n" + "".join(f"            {c},\n" for c in call) + "        "
    return MethodStub(name, joined, returns, called, doc,
                      bool(getattr(fn, "__isabstractmethod__", False)))


def _imports(stubs: list[MethodStub]) -> list[str]:
    text = " ".join(f"{s.params} {s.returns}" for s in stubs)
    used = set(re.findall(r"[A-Za-z_]\w*", text))
    obj = sorted(n for n in used if isinstance(getattr(objects, n, None), type)
                 and getattr(objects, n).__module__ == objects.__name__)
    drv = sorted({"Capabilities", "ComputeDriver", "stub"}
                 | {n for n in used if n in vars(driver_module) and n not in obj
                    and n not in ("RequestContext", "PowerState")})
    lines = []
    if "RequestContext" in used:
        lines.append("from virtsdk.context import RequestContext")
    lines.append("from virtsdk.driver import " + ", ".join(drv))
    lines.append("from virtsdk.exceptions import NotSupported")
    lines.append("from virtsdk.objects import " + ", ".join(obj))
    if "PowerState" in used:
        lines.append("from virtsdk.states import PowerState")
    return [_wrap(line) for line in lines]


def _wrap(line: str) -> str:
    if len(line) <= 99:
        return line
    head, names = line.split(" import ")
    return head + " import (\n" + "".join(f"    {n},\n" for n in names.split(", ")) + ")"


def validate_name(name: str) -> str:
    if not _NAME.match(name) or keyword.iskeyword(name):
        raise Invalid(f"driver name {name!r}: use lower-case letters, digits and '_', "
                      "starting with a letter (at most 40 characters)")
    return name


def write_distribution(name: str, directory: Path) -> list[Path]:
    """Write the distribution of driver ``name`` into ``directory`` (which must not
    exist or be empty); return the files written."""
    validate_name(name)
    if directory.exists() and any(directory.iterdir()):
        raise Invalid(f"{directory} already exists and is not empty")
    package = f"virtsdk_{name}"
    cls = "".join(part.capitalize() for part in name.split("_")) + "Driver"
    names = list(dict.fromkeys((*_LIFECYCLE, *OPTIONAL_METHODS, *OBSERVATION_HOOKS)))
    stubs = [_stub(n) for n in names]
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("virtsdk.cli", "templates/driver"),
        keep_trailing_newline=True, undefined=jinja2.StrictUndefined, autoescape=False)
    values = {"name": name, "package": package, "cls": cls, "methods": stubs,
              "imports": _imports(stubs),
              "summary": f"The {name} hypervisor driver for virtsdk."}
    layout = {"setup.cfg": "setup.cfg.j2", "pyproject.toml": "pyproject.toml.j2",
              "README.md": "README.md.j2", f"{package}/__init__.py": "__init__.py.j2",
              f"{package}/driver.py": "driver.py.j2",
              "tests/test_conformance.py": "test_conformance.py.j2"}
    written = []
    for rel, template in layout.items():
        path = directory / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(env.get_template(template).render(**values))
        written.append(path)
    return written
