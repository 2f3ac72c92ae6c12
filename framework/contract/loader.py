"""Safe, exact YAML loading: plain data plus the source position of every value and key.

Why not ``yaml.safe_load``: it turns ``on``/``off``/``yes``/``no`` into booleans, silently keeps the last of two
duplicate keys, expands aliases without bound and forgets where values came from. Here the composer (libyaml when
available) builds the node graph, and we construct plain Python data from it ourselves, with YAML 1.2 core scalars,
limits, ``$ref`` resolution and a position for every location in the document.

``$ref``: a mapping whose only key is ``$ref`` and whose value names a file (``other.yaml`` or
``other.yaml#/json/pointer``), relative to the referring file, is replaced by that file's (pointed-at) content.
``$ref`` values that start with ``#`` are left alone: they belong to JSON Schema.
"""

from __future__ import annotations

import errno
import os
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from framework.contract.findings import Finding, Level, Position
from framework.errors import ContractError

MAX_FILE_BYTES = 1024 * 1024
MAX_NODES = 100_000
MAX_DEPTH = 64
#: Python prints no int of more than 4300 digits; larger ones (from 0x... or 0o...) would break every message.
_MAX_INT_BITS = 14_000
REF_SUFFIXES = (".yaml", ".yml", ".json")

#: A location in a document: the keys and indexes from its root.
Loc = tuple[str | int, ...]

_BaseLoader: type[Any] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_BaseLoader):  # type: ignore[misc]
    """YAML 1.2 core schema resolution: only true/false are booleans; no timestamps, no merge keys."""

    yaml_implicit_resolvers: dict[str | None, list[tuple[str, re.Pattern[str]]]] = {}


_CORE_SCALARS = [
    ("tag:yaml.org,2002:bool", r"^(?:true|True|TRUE|false|False|FALSE)$", "tTfF"),
    ("tag:yaml.org,2002:int", r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$", "-+0123456789"),
    (
        "tag:yaml.org,2002:float",
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$",
        "-+0123456789.",
    ),
    ("tag:yaml.org,2002:null", r"^(?:~|null|Null|NULL|)$", ["~", "n", "N", ""]),
]
for _tag, _pattern, _first in _CORE_SCALARS:
    _Loader.add_implicit_resolver(_tag, re.compile(_pattern), list(_first))

_STR, _INT, _FLOAT, _BOOL, _NULL = (f"tag:yaml.org,2002:{t}" for t in ("str", "int", "float", "bool", "null"))
_MAP, _SEQ = "tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"


class LoadError(ContractError):
    """The file could not be turned into data. Carries the findings that say why and where."""

    def __init__(self, findings: list[Finding]) -> None:
        super().__init__("\n".join(f.format() for f in findings))
        self.findings = findings


@dataclass
class Document:
    """Loaded data with positions: ``positions[loc]`` is where the value at ``loc`` starts, ``key_positions[loc]``
    where the key that names it starts (mapping members only). Positions of values reached through ``$ref`` point
    into the referenced file."""

    path: Path
    data: Any
    positions: dict[Loc, Position] = field(default_factory=dict)
    key_positions: dict[Loc, Position] = field(default_factory=dict)
    files: set[Path] = field(default_factory=set)

    def position(self, loc: Loc, *, prefer_key: bool = True) -> Position:
        """The best position for ``loc``: its key, else its value, else the nearest enclosing location."""
        while True:
            if prefer_key and loc in self.key_positions:
                return self.key_positions[loc]
            if loc in self.positions:
                return self.positions[loc]
            if not loc:
                return Position(display_path(self.path), 1, 1)
            loc = loc[:-1]


def display_path(path: Path) -> str:
    """Paths in findings are relative to the working directory when they are inside it."""
    return _display_resolved(path.resolve())


def _display_resolved(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


class FileCache:
    """The files read while loading, composed, by resolved path. Share one across the documents of one validation
    run, so that a subcontract that every contract references is read and composed once per run rather than once
    per contract. Not across runs: files change between them, and so may the working directory."""

    def __init__(self) -> None:
        self.nodes: dict[Path, yaml.Node] = {}
        self.shown: dict[Path, str] = {}
        self.located: dict[tuple[Path, str], tuple[Path, bool]] = {}

    def load(self, path: Path | str) -> Document:
        """:func:`load_document`, with the files this cache has read already."""
        return _load(Path(path), self, MAX_FILE_BYTES, MAX_NODES, MAX_DEPTH)

    def locate(self, directory: Path, target: str) -> tuple[Path, bool]:
        """The resolved path of ``target`` relative to ``directory``, and whether it is a file. Raises what
        resolving raises: OSError, ValueError, RuntimeError."""
        key = (directory, target)
        found = self.located.get(key)
        if found is None:
            file = (directory / target).resolve()
            found = self.located[key] = (file, file.is_file())
        return found

    def display(self, resolved: Path) -> str:
        """``display_path`` of an already resolved path, once per file: resolving costs a system call per part."""
        shown = self.shown.get(resolved)
        if shown is None:
            shown = self.shown[resolved] = _display_resolved(resolved)
        return shown


def _pos(path: str, mark: Any) -> Position:
    return Position(path, mark.line + 1, mark.column + 1)


class _Composer:
    """Reads files into composed node graphs, once each, and reports load failures as findings."""

    def __init__(self, max_bytes: int, files: FileCache) -> None:
        self.max_bytes = max_bytes
        self.files = files
        self.own: dict[Path, yaml.Node] = {}  # this document's: a $ref back into it must find the very same nodes

    def compose(self, path: Path, at: Position | None, *, keep: bool = True) -> yaml.Node:
        """The root node of the file at ``path``, which is resolved. ``keep``: cache it for the other documents of
        the run. Referenced files are kept; the file a document starts from is not, as a run keeps its data and
        positions, and its node graph as well would be several times more objects for the garbage collector."""
        cached = self.own.get(path)
        if cached is None:
            cached = self.files.nodes.get(path)
        if cached is not None:
            return cached
        shown = self.files.display(path)
        where = at or Position(shown, 1, 1)
        try:
            with path.open("rb") as fh:
                raw = fh.read(self.max_bytes + 1)
        except IsADirectoryError:
            raise self._fail(where, "L001", f"{shown} is a directory, not a YAML file") from None
        except OSError as exc:
            raise self._fail(where, "L001", f"cannot read {shown}: {exc.strerror or exc}") from None
        if len(raw) > self.max_bytes:
            raise self._fail(
                where, "L001", f"{shown} is larger than the {self.max_bytes:,}-byte limit for contract files"
            )
        if b"\x00" in raw:
            raise self._fail(where, "L002", f"{shown} is a binary file (it contains NUL bytes), not YAML text")
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            line = raw[: exc.start].count(b"\n") + 1
            col = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
            raise self._fail(
                Position(shown, line, col), "L002", f"{shown} is not UTF-8 text (bad byte 0x{raw[exc.start]:02x})"
            ) from None
        loader = _Loader(text)
        try:
            node = loader.get_single_node()
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            pos = _pos(shown, mark) if mark is not None else Position(shown, 1, 1)
            problem = " ".join(str(p) for p in (exc.context, exc.problem) if p)
            if "maximum nesting depth" in problem:  # libyaml's own limit: not a syntax error, too deep
                raise self._fail(pos, "L006", "nesting is too deep") from None
            raise self._fail(pos, "L003", f"YAML syntax error: {problem or exc}") from None
        except RecursionError:  # the pure-Python composer recurses once per level
            raise self._fail(Position(shown, 1, 1), "L006", "nesting is too deep") from None
        except yaml.YAMLError as exc:
            raise self._fail(Position(shown, 1, 1), "L003", f"YAML syntax error: {exc}") from None
        finally:
            loader.dispose()
        if node is None:
            raise self._fail(Position(shown, 1, 1), "L011", f"{shown} is empty: expected a mapping of keys to values")
        self.own[path] = node
        if keep:
            self.files.nodes[path] = node
        composed: yaml.Node = node
        return composed

    @staticmethod
    def _fail(pos: Position, code: str, message: str) -> LoadError:
        return LoadError([Finding.at(pos, Level.ERROR, code, message)])


class _Builder:
    """Constructs plain data from composed nodes, recording positions, resolving ``$ref`` and enforcing limits."""

    def __init__(self, doc: Document, composer: _Composer, max_nodes: int, max_depth: int) -> None:
        self.doc = doc
        self.composer = composer
        self.max_nodes = max_nodes
        self.max_depth = max_depth
        self.count = 0
        self.findings: list[Finding] = []
        self.active: list[int] = []  # ids of nodes under construction: an alias to one of them is a cycle
        self.ref_stack: list[tuple[Path, str]] = []

    def _display(self, path: Path) -> str:
        return self.composer.files.display(path)

    def build(self, node: yaml.Node, path: Path, loc: Loc, depth: int, shown: str | None = None) -> Any:
        """Data from ``node`` of the file at ``path`` (displayed as ``shown``), at ``loc`` in the document."""
        if shown is None:
            shown = self._display(path)
        pos = self.doc.positions[loc] = _pos(shown, node.start_mark)
        self.count += 1
        if self.count > self.max_nodes:
            raise LoadError(
                [
                    Finding.at(
                        pos,
                        Level.ERROR,
                        "L005",
                        f"document expands to more than {self.max_nodes:,} values (aliases or $ref repeat too much)",
                    )
                ]
            )
        if depth > self.max_depth:
            raise LoadError([Finding.at(pos, Level.ERROR, "L006", f"nesting is deeper than {self.max_depth} levels")])
        if id(node) in self.active:
            raise LoadError([Finding.at(pos, Level.ERROR, "L005", "an alias refers to a node that contains it")])
        if isinstance(node, yaml.ScalarNode):
            return self._scalar(node, pos)
        self.active.append(id(node))
        try:
            if isinstance(node, yaml.SequenceNode):
                self._check_tag(node, _SEQ, pos)
                return [self.build(item, path, (*loc, i), depth + 1, shown) for i, item in enumerate(node.value)]
            if isinstance(node, yaml.MappingNode):
                self._check_tag(node, _MAP, pos)
                return self._mapping(node, path, shown, loc, depth)
        finally:
            self.active.pop()
        raise LoadError([Finding.at(pos, Level.ERROR, "L003", f"unsupported YAML node {type(node).__name__}")])

    def _mapping(self, node: yaml.MappingNode, path: Path, shown: str, loc: Loc, depth: int) -> Any:
        pairs = node.value
        if len(pairs) == 1 and self._is_file_ref(pairs[0]):
            return self._ref(pairs[0][1], path, loc, depth)
        out: dict[str, Any] = {}
        for key_node, value_node in pairs:
            key_pos = _pos(shown, key_node.start_mark)
            if not isinstance(key_node, yaml.ScalarNode):
                self.findings.append(Finding.at(key_pos, Level.ERROR, "L003", "mapping keys must be plain scalars"))
                continue
            key = self._scalar(key_node, key_pos)
            if not isinstance(key, str):
                key = str(key).lower() if isinstance(key, bool) else str(key)
            if key in out:
                first = self.doc.key_positions[(*loc, key)]
                self.findings.append(
                    Finding.at(
                        key_pos,
                        Level.ERROR,
                        "L004",
                        f"duplicate key '{key}' (first defined at line {first.line}, column {first.col})",
                    )
                )
                continue
            self.doc.key_positions[(*loc, key)] = key_pos
            out[key] = self.build(value_node, path, (*loc, key), depth + 1, shown)
        return out

    @staticmethod
    def _is_file_ref(pair: tuple[yaml.Node, yaml.Node]) -> bool:
        key, value = pair
        return (
            isinstance(key, yaml.ScalarNode)
            and key.value == "$ref"
            and isinstance(value, yaml.ScalarNode)
            and not value.value.startswith("#")
        )

    def _ref(self, value: yaml.ScalarNode, path: Path, loc: Loc, depth: int) -> Any:
        at = _pos(self._display(path), value.start_mark)
        target, _, pointer = str(value.value).partition("#")
        if not target.endswith(REF_SUFFIXES):
            raise LoadError(
                [Finding.at(at, Level.ERROR, "L008", f"$ref '{value.value}' must name a .yaml, .yml or .json file")]
            )
        try:
            file, is_file = self.composer.files.locate(path.parent, target)
        except (OSError, ValueError, RuntimeError) as exc:  # a name too long, a NUL byte, a symlink loop
            reason = "a symlink loop" if isinstance(exc, RuntimeError) else getattr(exc, "strerror", None) or str(exc)
            raise LoadError(
                [Finding.at(at, Level.ERROR, "L008", f"$ref '{value.value}': cannot use this file name: {reason}")]
            ) from None
        key = (file, pointer)
        if key in self.ref_stack:
            raise LoadError([Finding.at(at, Level.ERROR, "L009", f"$ref cycle: {self._chain(key)}")])
        if not is_file:
            raise LoadError(
                [Finding.at(at, Level.ERROR, "L008", f"$ref '{value.value}': no such file {display_path(file)}")]
            )
        root = self.composer.compose(file, at)
        node = self._follow(root, pointer, at, value.value)
        if id(node) in self.active:  # a pointer to a node being built: another way round to the same cycle
            raise LoadError([Finding.at(at, Level.ERROR, "L009", f"$ref cycle: {self._chain(key)}")])
        self.doc.files.add(file)
        self.ref_stack.append(key)
        try:
            return self.build(node, file, loc, depth)
        finally:
            self.ref_stack.pop()

    def _chain(self, key: tuple[Path, str]) -> str:
        return " -> ".join(f"{display_path(f)}{'#' + p if p else ''}" for f, p in [*self.ref_stack, key])

    @staticmethod
    def _follow(node: yaml.Node, pointer: str, at: Position, ref: str) -> yaml.Node:
        if pointer in ("", "/"):
            return node
        if not pointer.startswith("/"):
            raise LoadError([Finding.at(at, Level.ERROR, "L010", f"$ref '{ref}': a JSON pointer must start with '/'")])
        for raw in pointer[1:].split("/"):
            part = raw.replace("~1", "/").replace("~0", "~")
            found: yaml.Node | None = None
            if isinstance(node, yaml.MappingNode):
                found = next((v for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == part), None)
            elif isinstance(node, yaml.SequenceNode) and part.isdigit() and int(part) < len(node.value):
                found = node.value[int(part)]
            if found is None:
                raise LoadError(
                    [Finding.at(at, Level.ERROR, "L010", f"$ref '{ref}': the pointer segment '{part}' does not exist")]
                )
            node = found
        return node

    def _check_tag(self, node: yaml.Node, expected: str, pos: Position) -> None:
        if node.tag != expected:
            raise LoadError(
                [
                    Finding.at(
                        pos, Level.ERROR, "L007", f"unsupported tag '{node.tag}': only plain YAML data is accepted"
                    )
                ]
            )

    def _scalar(self, node: yaml.ScalarNode, pos: Position) -> Any:
        tag, value = node.tag, node.value
        try:
            if tag == _STR:
                return value
            if tag == _NULL:
                if value not in ("~", "null", "Null", "NULL", ""):  # '!!null x' is not null, nor '!!bool yes' false
                    raise ValueError(value)
                return None
            if tag == _BOOL:
                if value not in ("true", "True", "TRUE", "false", "False", "FALSE"):
                    raise ValueError(value)
                return value.lower() == "true"
            if tag == _INT:
                number = int(value, 0) if value.startswith(("0x", "0o")) else int(value)
                if number.bit_length() > _MAX_INT_BITS:
                    raise ValueError(value)
                return number
            if tag == _FLOAT:
                return float(
                    value.replace(".inf", "inf")
                    .replace(".Inf", "inf")
                    .replace(".INF", "inf")
                    .replace(".nan", "nan")
                    .replace(".NaN", "nan")
                    .replace(".NAN", "nan")
                )
        except ValueError:
            raise LoadError(
                [Finding.at(pos, Level.ERROR, "L007", f"'{value}' is not a valid {tag.rsplit(':', 1)[-1]}")]
            ) from None
        raise LoadError(
            [Finding.at(pos, Level.ERROR, "L007", f"unsupported tag '{tag}': only plain YAML data is accepted")]
        )


def load_document(
    path: Path | str,
    *,
    max_bytes: int = MAX_FILE_BYTES,
    max_nodes: int = MAX_NODES,
    max_depth: int = MAX_DEPTH,
) -> Document:
    """Load one YAML file (and what it references) into a :class:`Document`, or raise :class:`LoadError`."""
    return _load(Path(path), FileCache(), max_bytes, max_nodes, max_depth)


def _load(path: Path, files: FileCache, max_bytes: int, max_nodes: int, max_depth: int) -> Document:
    resolved = path.resolve()
    composer = _Composer(max_bytes, files)
    root = composer.compose(resolved, None, keep=False)
    doc = Document(path=resolved, data=None, files={resolved})
    builder = _Builder(doc, composer, max_nodes, max_depth)
    builder.ref_stack.append((resolved, ""))
    try:
        doc.data = builder.build(root, resolved, (), 0)
    except RecursionError:
        raise LoadError([Finding(display_path(path), 1, 1, Level.ERROR, "L006", "nesting is too deep")]) from None
    if builder.findings:
        raise LoadError(sorted(builder.findings, key=Finding.sort_key))
    return doc


YAML_SUFFIXES = (".yaml", ".yml")


def _is_yaml_name(name: str) -> bool:
    """Whether a directory entry is a contract file by its name: ``Path(name).suffix`` is ``.yaml`` or ``.yml``."""
    return name.endswith(YAML_SUFFIXES) and name not in YAML_SUFFIXES


def _file_type(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    return "a special file"


def _entry_display(path: Path) -> str:
    """How findings show an entry met while walking: its own path, not where a symbolic link points."""
    return _display_resolved(path.parent.resolve() / path.name)


def _error(path: str, code: str, message: str) -> Finding:
    return Finding(path, 1, 1, Level.ERROR, code, message)


def _link_problem(path: Path, shown: str, exc: OSError) -> Finding:
    """The finding for a ``.yaml`` symbolic link whose target cannot be examined."""
    if exc.errno in (errno.ENOENT, errno.ENOTDIR):
        try:
            target = os.readlink(path)
        except OSError:
            return _error(shown, "L001", f"{shown} is a symbolic link to a file that does not exist")
        return _error(shown, "L001", f"{shown} is a symbolic link to '{target}', which does not exist")
    if exc.errno == errno.ELOOP:
        return _error(shown, "L001", f"{shown} is a symbolic link in a loop of links: it leads to no file")
    return _error(shown, "L001", f"cannot read {shown}: {exc.strerror or exc}")


def _scan(directory: Path, shown: str | None = None) -> list[os.DirEntry[str]] | Finding:
    """The entries of ``directory`` sorted by name, or the finding that says why it cannot be listed (at ``shown``,
    by default where ``display_path`` would put it)."""
    try:
        with os.scandir(directory) as it:
            entries = list(it)
    except OSError as exc:
        shown = shown or _entry_display(directory)
        return _error(shown, "L001", f"cannot read directory {shown}: {exc.strerror or exc}")
    entries.sort(key=lambda e: e.name)
    return entries


def _is_directory(entry: os.DirEntry[str]) -> bool:
    """Whether the walk enters ``entry``: a directory itself (not a link to one) that is not hidden."""
    try:
        is_dir = entry.is_dir(follow_symlinks=False)
    except OSError:  # gone since the listing, say: then it is not a directory to enter
        return False
    return is_dir and not entry.name.startswith(".")


def _examine(entry: os.DirEntry[str]) -> Path | Finding | None:
    """What an entry that is not a directory is to the walk: a YAML file to check (its path), a finding (a ``.yaml``
    entry that is not a readable regular file), or ``None`` when it is no contract file at all."""
    if not _is_yaml_name(entry.name):
        return None
    path = Path(entry.path)
    try:
        if entry.is_dir(follow_symlinks=False):
            return None  # a folder named like a file: the walk enters it, unless it is hidden
        if entry.is_file(follow_symlinks=False):
            return path
        is_link = entry.is_symlink()
        mode = entry.stat(follow_symlinks=False).st_mode
    except OSError as exc:
        shown = _entry_display(path)
        return _error(shown, "L001", f"cannot read {shown}: {exc.strerror or exc}")
    shown = _entry_display(path)
    if not is_link:
        return _error(shown, "L001", f"{shown} is {_file_type(mode)}, not a regular file")
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        return _link_problem(path, shown, exc)
    if stat.S_ISREG(mode):
        return path
    if stat.S_ISDIR(mode):
        return None  # a link to a directory is never followed, whatever its name
    return _error(shown, "L001", f"{shown} is a symbolic link to {_file_type(mode)}, not to a regular file")


def iter_yaml_files(root: Path) -> Iterator[Path | Finding]:
    """The contract files that ``root`` names, in a stable order, and a finding for each problem met on the way:
    nothing below ``root`` is ever skipped silently.

    - ``root`` a regular file (or a symbolic link to one): that file, whatever its name.
    - ``root`` missing, or neither a regular file nor a directory (a FIFO, a socket, a device): a finding (L001).
    - ``root`` a directory (or a symbolic link to one): the ``.yaml`` and ``.yml`` files below it, depth first, in
      the order of their paths' parts. Hidden folders (``.git``, ``.venv``, ...) are passed over. Symbolic links to
      directories are never followed, so a loop of links cannot make the walk go round; a ``.yaml`` link to a
      regular file is followed. A ``.yaml`` entry that is not a readable regular file (a link to nothing, a FIFO,
      a socket, a device) is a finding at that path, as is a directory that cannot be listed (L001). When nothing at
      all turns up under ``root``, that is a finding too (L012): a check pointed at the wrong directory must fail.

    The walk keeps its own stack of directories rather than recursing, so any depth is fine; the directories of
    one path down the tree are held in memory, sorted, at a time. Findings name the path as given (``root``) or as
    ``display_path`` shows files; each is at line 1, column 1.
    """
    given = str(root)
    try:
        mode = os.stat(root).st_mode
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.ENAMETOOLONG):
            yield _error(given, "L001", f"{given}: no such file or directory")
        else:
            yield _error(given, "L001", f"cannot read {given}: {exc.strerror or exc}")
        return
    except ValueError:  # a NUL byte in the name
        yield _error(given, "L001", f"{given}: no such file or directory")
        return
    if stat.S_ISREG(mode):
        yield root
        return
    if not stat.S_ISDIR(mode):
        yield _error(given, "L001", f"{given} is {_file_type(mode)}, not a regular file or a directory")
        return
    found = False
    listed = _scan(root, given)
    if isinstance(listed, Finding):
        yield listed
        return
    stack: list[Iterator[os.DirEntry[str]]] = [iter(listed)]
    while stack:
        entry = next(stack[-1], None)
        if entry is None:
            stack.pop()
            continue
        if _is_directory(entry):
            listed = _scan(Path(entry.path))
            if isinstance(listed, Finding):
                found = True
                yield listed
            else:
                stack.append(iter(listed))
            continue
        item = _examine(entry)
        if item is not None:
            found = True
            yield item
    if not found:
        yield _error(given, "L012", f"no .yaml or .yml files under {given}")
