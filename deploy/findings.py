"""Rules as data, shared by the preflight checks (``deploy.ops.check``: rules over an
endpoint spec) and the diagnosis (``deploy.runpod.diagnosis``: rules over endpoint facts).

A rule has an id, a severity, a title, why it matters (what RunPod does when it is broken)
and an ``inspect`` function that yields ``(message, fix)`` pairs; each pair becomes a
``Finding``. A ``Rules`` registry keeps its rules in the order they were registered.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

ERROR, WARNING, INFO = "error", "warning", "info"
SEVERITY_ORDER = {ERROR: 0, WARNING: 1, INFO: 2}


@dataclass
class Finding:
    rule: str
    severity: str
    message: str
    fix: str
    why: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Rule:
    id: str
    severity: str
    title: str
    why: str
    inspect: Callable[..., Iterator[tuple[str, str]]]


class Rules(list[Rule]):
    """An ordered registry: ``@rules.rule(id, severity, title, why)`` registers a function;
    ``rules.findings(*facts)`` runs every rule over the same arguments."""

    def rule(self, id: str, severity: str, title: str, why: str):
        if severity not in SEVERITY_ORDER:
            raise ValueError(f"rule {id}: unknown severity {severity!r}")
        if any(r.id == id for r in self):
            raise ValueError(f"rule {id} is registered twice")

        def register(fn):
            self.append(Rule(id, severity, title, why, fn))
            return fn

        return register

    def findings(self, *facts: Any) -> list[Finding]:
        """Every finding, most serious first (rules in registration order within a severity)."""
        found = [
            Finding(r.id, r.severity, message, fix, r.why)
            for r in self
            for message, fix in r.inspect(*facts)
        ]
        found.sort(key=lambda f: SEVERITY_ORDER[f.severity])
        return found
