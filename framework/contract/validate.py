"""Validation of a set of files: load, parse, lint each one, then check the set as a whole."""

from __future__ import annotations

import gc
from collections import defaultdict
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from framework.contract.findings import Finding, Level
from framework.contract.lint import Linter
from framework.contract.loader import Document, FileCache, LoadError, display_path, iter_yaml_files, load_document
from framework.contract.parse import document_kind, parse_model
from framework.contract.spec import Contract
from framework.contract.subcontracts import (
    FSM,
    Aggregation,
    EventCatalog,
    NodeTarget,
    Spec,
    Workflow,
)


@dataclass
class Loaded:
    doc: Document
    model: Spec


@dataclass
class Report:
    files: int = 0
    findings: list[Finding] = field(default_factory=list)
    contracts: list[tuple[Document, Contract]] = field(default_factory=list)

    @property
    def errors(self) -> int:
        return sum(f.level is Level.ERROR for f in self.findings)

    @property
    def warnings(self) -> int:
        return sum(f.level is Level.WARNING for f in self.findings)


def load_contract(path: Path | str, *, import_implementation: bool = False) -> Contract:
    """Load and validate one contract for running it. Raises :class:`LoadError` carrying every error finding."""
    report = validate_paths([Path(path)], import_implementation=import_implementation, cross_check=False)
    errors = [f for f in report.findings if f.level is Level.ERROR]
    if errors:
        raise LoadError(errors)
    if not report.contracts:
        raise LoadError(
            [
                Finding(
                    display_path(Path(path)),
                    1,
                    1,
                    Level.ERROR,
                    "S005",
                    "this file is a subcontract, not a contract (it has no node_type)",
                )
            ]
        )
    return report.contracts[0][1]


def validate_file(
    path: Path, *, import_implementation: bool = True, files: FileCache | None = None
) -> tuple[Loaded | None, list[Finding]]:
    """Load, parse and lint one file. ``files``: the files already read in this run, shared by its documents."""
    try:
        doc = load_document(path) if files is None else files.load(path)
    except LoadError as exc:
        return None, exc.findings
    kind = document_kind(doc)
    if isinstance(kind, Finding):
        return None, [kind]
    model, findings = parse_model(doc, kind)
    if model is None:
        return None, findings
    linter = Linter(doc)
    if isinstance(model, Contract):
        linter.contract(model, import_implementation=import_implementation)
    elif isinstance(model, FSM):
        linter.fsm(model, ())
    elif isinstance(model, EventCatalog):
        linter.catalog(model, ())
    elif isinstance(model, Workflow):
        linter.workflow(model, ())
    elif isinstance(model, Aggregation):
        linter.aggregation(model, ())
    return Loaded(doc, model), linter.findings


@contextmanager
def _collector_paused() -> Iterator[None]:
    """The cyclic garbage collector off for one validation run. A run allocates hundreds of objects per file and
    keeps most of them (data, positions, parsed models), so the collector's passes find nothing to collect: they were
    a quarter of a first run. Reference counting still frees what a run discards; any cycles it makes wait for the
    collector's first pass after it."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def validate_paths(paths: Iterable[Path], *, import_implementation: bool = True, cross_check: bool = True) -> Report:
    """Validate the files that ``paths`` name (see :func:`~framework.contract.loader.iter_yaml_files` for how
    directories are searched). Every problem is a finding of the report, paths that cannot be used included: a
    missing path, a FIFO, a dangling ``.yaml`` link, a directory without any YAML file."""
    with _collector_paused():
        return _validate_paths(paths, import_implementation=import_implementation, cross_check=cross_check)


def _validate_paths(paths: Iterable[Path], *, import_implementation: bool, cross_check: bool) -> Report:
    report = Report()
    loaded: list[Loaded] = []
    seen: set[Path] = set()
    files = FileCache()  # the subcontracts that many contracts share are read once
    for root in paths:
        for path in iter_yaml_files(root):
            if isinstance(path, Finding):  # missing, unreadable, not a regular file, or a directory without YAML
                report.findings.append(path)
                continue
            resolved = path.resolve()
            if resolved in seen:
                continue
            seen.add(resolved)
            report.files += 1
            item, findings = validate_file(path, import_implementation=import_implementation, files=files)
            report.findings.extend(findings)
            if item is not None:
                loaded.append(item)
                if isinstance(item.model, Contract):
                    report.contracts.append((item.doc, item.model))
    if cross_check:
        report.findings.extend(cross_findings(report.contracts))
    unique = {(f.path, f.line, f.col, f.code, f.message): f for f in report.findings}
    report.findings = sorted(unique.values(), key=Finding.sort_key)
    return report


def cross_findings(contracts: list[tuple[Document, Contract]]) -> list[Finding]:
    """Checks across the validated set: unique node names, events that nobody consumes or produces."""
    findings: list[Finding] = []
    by_name: dict[str, Document] = {}
    produced: dict[str, list[tuple[Document, int]]] = defaultdict(list)
    consumed: dict[str, list[tuple[Document, int]]] = defaultdict(list)
    external_consumers: set[str] = set()
    external_producers: set[str] = set()
    for doc, c in contracts:
        if c.name in by_name:
            first = by_name[c.name].position(("name",))
            findings.append(
                Finding.at(
                    doc.position(("name",)),
                    Level.ERROR,
                    "N001",
                    f"node name '{c.name}' is already used by {first.path}:{first.line}",
                )
            )
        else:
            by_name[c.name] = doc
        for i, name in enumerate(c.publishes):
            produced[name].append((doc, i))
        for i, s in enumerate(c.subscriptions):
            consumed[s.event].append((doc, i))
        for catalog in c.subcontracts.events:
            for e in catalog.events:
                if e.external_consumers:
                    external_consumers.add(e.name)
                if e.external_producers:
                    external_producers.add(e.name)
    for name, places in produced.items():
        if name not in consumed and name not in external_consumers:
            for doc, i in places:
                findings.append(
                    Finding.at(
                        doc.position(("publishes", i)),
                        Level.WARNING,
                        "N002",
                        f"'{name}' is published but no validated contract subscribes to it",
                    )
                )
    for name, places in consumed.items():
        if name not in produced and name not in external_producers:
            for doc, i in places:
                findings.append(
                    Finding.at(
                        doc.position(("subscriptions", i, "event")),
                        Level.WARNING,
                        "N003",
                        f"'{name}' is consumed but no validated contract publishes it",
                    )
                )
    for doc, c in contracts:
        wf = c.subcontracts.workflow
        if wf is None:
            continue
        for i, step in enumerate(wf.steps):
            if isinstance(step.target, NodeTarget) and step.target.node not in by_name:
                findings.append(
                    Finding.at(
                        doc.position(("subcontracts", "workflow", "steps", i, "target", "node")),
                        Level.WARNING,
                        "W004",
                        f"step '{step.name}' calls node '{step.target.node}', which is not among "
                        f"the validated contracts",
                    )
                )
    return findings
