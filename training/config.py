"""Training configs: plain YAML files composed from a ``defaults`` list, then typed as frozen dataclasses.

Layout (lightning-hydra-template style, without hydra)::

    training/configs/
        data/<name>.yaml        one file per concern: its content becomes the `data:` node
        model/<name>.yaml       ... the `model:` node
        optim/<name>.yaml       ... the `optim:` node (adamw.yaml)
        trainer/<name>.yaml     ... the `trainer:` node (cpu.yaml, ddp_cpu.yaml, gpu.yaml)
        <model>.yaml            an experiment: what `hotline train <model>` runs (intent, asr, dialect, emotion)
                                and its variants (intent_hf, asr_gpu, emotion_hf), which inherit one of them

An experiment names one file per concern and then overrides only what differs::

    # training/configs/intent.yaml
    defaults: [{data: intent_synth}, {model: intent_char}, {optim: adamw}, {trainer: cpu}]
    optim: {lr: 3.0e-3}          # deep-merged over optim/adamw.yaml: only lr changes
    threads: 1                   # new top-level keys are fine in files

    # training/configs/asr_gpu.yaml
    defaults: [{experiment: asr}, {trainer: gpu}]

One source of defaults: the YAML files. The dataclasses a node is typed as (``training.intent.IntentDataConfig``,
``training.asr.AsrModelConfig``, ...) carry the same defaults as the default files, so code that builds one
directly gets what ``hotline train`` gets; ``tests/test_config.py`` fails when the two disagree. The exceptions
are listed there with their reason (e.g. model-architecture configs whose defaults are what a model saved before a
field existed loads with, and trainer files that are alternatives of one dataclass).

Composition rules:

- ``{<concern>: <name>}`` loads ``<root>/<concern>/<name>.yaml`` into the ``<concern>`` node.
- ``{experiment: <name>}`` inherits another experiment: ``<root>/experiment/<name>.yaml`` if that folder
  has it, else ``<root>/<name>.yaml`` (as ``asr_gpu.yaml`` starts from ``asr.yaml``). Chains of any depth
  work; cycles are an error.
- Order, lowest priority first: parent experiments (fully composed), then concern files, then the
  file's own keys (a file always wins over its defaults). Dicts merge key by key; lists and scalars
  are replaced whole.
- A concern entry in a child *re-chooses* that concern for its parents (like ``trainer=gpu`` on the
  command line): ``defaults: [{experiment: intent}, {trainer: gpu}]`` gives intent.yaml's config with
  trainer/gpu.yaml in place of its trainer file, and intent.yaml's own ``trainer:`` keys still on top.
- A concern file may itself start from a sibling with ``defaults: [<name>]`` (same folder).
- ``{<concern>: null}`` leaves that node out.

Command-line overrides (``load_config(path, ["optim.lr=1e-3", ...])``), applied after composition:

- ``a.b.c=value`` changes an existing key; the value is parsed as YAML (``1e-3`` is a float, ``[1, 2]``
  a list, ``null`` None). An unknown key is an error that lists the valid keys at that level.
- ``+a.b=value`` adds a key (missing parents are created); it also replaces an existing one.
- ``<concern>=<name>`` (e.g. ``trainer=gpu``) swaps which file fills a concern everywhere in the
  defaults chain; the experiment's own overrides of that node still apply on top.

Every composed node remembers which file or flag set each key, so :func:`to_dataclass` errors say
what to edit.
"""

from __future__ import annotations

import copy
import dataclasses
import re
import types
import typing
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import yaml

CONFIG_ROOT = Path(__file__).resolve().parent / "configs"  # the repository's config tree
CONCERNS = ("data", "model", "optim", "trainer")  # config groups: one folder (and one node) each
EXPERIMENT_GROUP = "experiment"  # defaults key that inherits another experiment file
DEFAULTS_KEY = "defaults"  # the list of files a config starts from


class ConfigError(ValueError):
    """A config file, a defaults entry, an override or a field that is wrong. The message says how to fix it."""


class ConfigDict(dict):
    """A plain dict that also remembers where each key was set (``.sources``) and its dotted path (``.path``)."""

    def __init__(self, *args: Any, path: str = "", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.path = path  # dotted location of this node in the whole config ("" = root)
        self.sources: dict[str, str] = {}  # key -> file or flag that set it last

    def where(self, key: str) -> str:
        """The file or flag that set ``key`` (or this node's own origin when unknown)."""
        return self.sources.get(key) or self.sources.get("", "the config")


# PyYAML reads `1e-3` as a string (YAML 1.1 wants `1.0e-3`); configs are written by people, so accept it.
class _Loader(yaml.SafeLoader):
    pass


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)
yaml.SafeDumper.add_representer(ConfigDict, yaml.representer.SafeRepresenter.represent_dict)


def parse_value(text: str) -> Any:
    """A command-line value parsed as YAML (``"3"`` -> 3, ``"1e-3"`` -> 0.001, ``"a b"`` -> "a b")."""
    try:
        return yaml.load(text, Loader=_Loader)
    except yaml.YAMLError:
        return text


# -- loading files ---------------------------------------------------------------------------------
def _read_yaml(path: Path) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.load(f, Loader=_Loader)
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from e
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config file must hold a mapping (key: value lines), got {type(data).__name__}")
    return data


def _options(folder: Path) -> list[str]:
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []


def _missing(path: Path, what: str) -> ConfigError:
    opts = _options(path.parent)
    listing = ", ".join(opts) if opts else "none (the folder is empty or missing)"
    return ConfigError(f"{what} config file not found: {path}. Options in {path.parent}: {listing}")


def _concern_file(root: Path, concern: str, name: str) -> Path:
    path = root / concern / f"{name}.yaml"
    if not path.is_file():
        raise _missing(path, f"'{concern}: {name}'")
    return path


def _experiment_file(root: Path, name: str) -> Path:
    for path in (root / EXPERIMENT_GROUP / f"{name}.yaml", root / f"{name}.yaml"):
        if path.is_file():
            return path
    opts = sorted(set(_options(root / EXPERIMENT_GROUP)) | set(_options(root)))
    raise ConfigError(
        f"experiment '{name}' not found: neither {root / EXPERIMENT_GROUP / (name + '.yaml')} nor "
        f"{root / (name + '.yaml')} exists. Experiments: {', '.join(opts) or 'none'}"
    )


def _rel(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(CONFIG_ROOT.parent.parent))
    except ValueError:
        return str(path)


# -- merging with provenance -----------------------------------------------------------------------
def _tag(value: Any, source: str, path: str) -> Any:
    """Deep-copy ``value`` into ConfigDicts that record ``source`` for every key."""
    if isinstance(value, Mapping):
        node = ConfigDict(path=path)
        node.sources[""] = source
        for k, v in value.items():
            if not isinstance(k, str):
                raise ConfigError(f"{source}: keys must be strings, got {k!r} at '{path or '<root>'}'")
            node[k] = _tag(v, source, f"{path}.{k}" if path else k)
            node.sources[k] = source
        return node
    if isinstance(value, list):
        return [_tag(v, source, path) for v in value]
    return copy.deepcopy(value)


def _merge(base: ConfigDict, over: Mapping) -> ConfigDict:
    """Deep-merge ``over`` into ``base`` in place (dicts by key; anything else replaced)."""
    for k, v in over.items():
        if isinstance(v, ConfigDict) and isinstance(base.get(k), ConfigDict):
            _merge(base[k], v)
        else:
            base[k] = v
        if isinstance(over, ConfigDict):
            base.sources[k] = over.sources.get(k, over.sources.get("", ""))
    return base


def _rebase(node: Any, path: str) -> Any:
    if isinstance(node, ConfigDict):
        node.path = path
        for k, v in node.items():
            _rebase(v, f"{path}.{k}" if path else k)
    return node


def _defaults(path: Path, data: dict) -> list:
    entries = data.pop(DEFAULTS_KEY, []) or []
    if not isinstance(entries, list):
        raise ConfigError(f"{path}: '{DEFAULTS_KEY}' must be a list like [{{optim: adamw}}, {{trainer: cpu}}]")
    return entries


def _compose_concern(root: Path, concern: str, name: str, seen: tuple[Path, ...]) -> ConfigDict:
    path = _concern_file(root, concern, name)
    if path in seen:
        raise ConfigError(f"defaults cycle: {' -> '.join(map(_rel, seen + (path,)))}")
    data = _read_yaml(path)
    node = ConfigDict(path=concern)
    for entry in _defaults(path, data):
        if not isinstance(entry, str):
            raise ConfigError(
                f"{path}: a {concern} file's defaults name sibling files in {path.parent} (e.g. "
                f"defaults: [{_options(path.parent)[0] if _options(path.parent) else 'base'}]), got {entry!r}"
            )
        _merge(node, _compose_concern(root, concern, entry, seen + (path,)))
    return _merge(node, _tag(data, _rel(path), concern))


def _compose_file(
    path: Path, root: Path, choices: dict[str, str | None], seen: tuple[Path, ...]
) -> tuple[ConfigDict, set[str]]:
    """Compose one experiment file; also returns the concerns its defaults chain placed."""
    if path in seen:
        raise ConfigError(f"defaults cycle: {' -> '.join(map(_rel, seen + (path,)))}")
    data = _read_yaml(path)
    parents: list[str] = []
    concerns: list[tuple[str, str | None]] = []
    for entry in _defaults(path, data):
        if not (isinstance(entry, dict) and len(entry) == 1):
            raise ConfigError(
                f"{path}: each defaults entry is a one-key mapping like {{optim: adamw}} or "
                f"{{experiment: intent}}; got {entry!r}"
            )
        ((group, name),) = entry.items()
        if group == EXPERIMENT_GROUP:
            parents.append(str(name))
        elif group in CONCERNS:
            concerns.append((group, None if name is None else str(name)))
        else:
            raise ConfigError(
                f"{path}: unknown defaults group '{group}'. Groups: {', '.join(CONCERNS + (EXPERIMENT_GROUP,))}"
            )
    # this file's concern choices apply inside its parents too; choices from further out win
    inner = {**dict(concerns), **choices}
    cfg = ConfigDict()
    cfg.sources[""] = _rel(path)
    placed: set[str] = set()
    for name in parents:
        parent, parent_placed = _compose_file(_experiment_file(root, name), root, inner, seen + (path,))
        _merge(cfg, parent)
        placed |= parent_placed
    for group, _ in concerns:
        if group in placed:
            continue  # a parent already placed it, with this choice
        placed.add(group)
        name = inner[group]
        if name is None:
            cfg.pop(group, None)
            continue
        node = _compose_concern(root, group, name, ())
        if isinstance(cfg.get(group), ConfigDict):  # keys a parent wrote itself outrank a defaults file
            _merge(node, cfg[group])
        cfg[group] = node
        cfg.sources[group] = _rel(_concern_file(root, group, name))
    return _merge(cfg, _tag(data, _rel(path), "")), placed


def _resolve_path(path: str | Path, root: Path) -> Path:
    p = Path(path)
    if p.is_file():
        return p
    if p.suffix == "" and len(p.parts) == 1:  # a bare experiment name such as "intent"
        return _experiment_file(root, p.name)
    raise _missing(p, "experiment")


# -- overrides -------------------------------------------------------------------------------------
def _split_override(text: str) -> tuple[bool, list[str], Any]:
    if "=" not in text:
        raise ConfigError(f"override '{text}' must look like key.sub=value (or +key.sub=value to add a key)")
    key, _, raw = text.partition("=")
    add = key.startswith("+")
    key = key.lstrip("+").strip()
    parts = key.split(".")
    if not key or any(not p for p in parts):
        raise ConfigError(f"override '{text}': empty key name")
    return add, parts, parse_value(raw)


def _apply_override(cfg: ConfigDict, text: str) -> None:
    add, parts, value = _split_override(text)
    source = f"override '{text}'"
    node: ConfigDict = cfg
    for i, part in enumerate(parts[:-1]):
        here = ".".join(parts[: i + 1])
        if part not in node:
            if not add:
                raise ConfigError(_unknown_key(node, part, text))
            node[part] = ConfigDict(path=here)
            node.sources[part] = source
        if not isinstance(node[part], ConfigDict):
            raise ConfigError(f"override '{text}': '{here}' is a value ({node[part]!r}), not a section with keys")
        node = node[part]
    last = parts[-1]
    if last not in node and not add:
        raise ConfigError(_unknown_key(node, last, text))
    node[last] = _rebase(_tag(value, source, ".".join(parts)), ".".join(parts))
    node.sources[last] = source


def _unknown_key(node: ConfigDict, key: str, text: str) -> str:
    level = f"'{node.path}'" if node.path else "the top level"
    valid = ", ".join(sorted(node)) or "none"
    return (
        f"override '{text}': unknown key '{key}' at {level}. Valid keys there: {valid}. "
        f"Use +{text.lstrip('+')} to add a new key."
    )


def load_config(
    path: str | Path,
    overrides: Sequence[str] = (),
    root: str | Path | None = None,
) -> ConfigDict:
    """Compose the experiment at ``path`` (a file, or a bare name like ``"intent"``) and apply ``overrides``.

    ``root`` is the config tree that ``defaults`` entries are looked up in (default: training/configs).
    Returns a dict (a :class:`ConfigDict`, which also knows where each key came from).
    """
    root = Path(root) if root is not None else CONFIG_ROOT
    choices: dict[str, str | None] = {}
    rest: list[str] = []
    for text in overrides:
        key, sep, raw = text.partition("=")
        bare = key.lstrip("+")
        if sep and bare in CONCERNS:
            value = parse_value(raw)
            if value is None or isinstance(value, str):
                choices[bare] = value
                continue
        rest.append(text)
    cfg, placed = _compose_file(_resolve_path(path, root).resolve(), root, choices, ())
    for group, name in choices.items():  # a concern chosen on the command line that no default named
        if name is not None and group not in placed:
            node = _compose_concern(root, group, name, ())
            if isinstance(cfg.get(group), ConfigDict):
                _merge(node, cfg[group])
            cfg[group] = node
            cfg.sources[group] = f"override '{group}={name}'"
    for text in rest:
        _apply_override(cfg, text)
    return _rebase(cfg, "")


# -- typed views -----------------------------------------------------------------------------------
def _is_dataclass_type(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _field_error(mapping: Mapping, key: str, message: str) -> ConfigError:
    path = getattr(mapping, "path", "")
    dotted = f"{path}.{key}" if path else key
    where = mapping.where(key) if isinstance(mapping, ConfigDict) else "the config mapping"
    return ConfigError(f"{message} (config key '{dotted}', set in {where}; fix it there or with {dotted}=...)")


def _coerce(value: Any, tp: Any, mapping: Mapping, key: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any or tp is object:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, arg, mapping, key)
            except ConfigError as e:
                errors.append(str(e))
        raise _field_error(mapping, key, f"value {value!r} fits none of {tp}")
    if origin is typing.Literal:
        if value in args:
            return value
        raise _field_error(mapping, key, f"value {value!r} is not one of {', '.join(map(repr, args))}")
    if _is_dataclass_type(tp):
        if isinstance(value, Mapping):
            if not isinstance(value, ConfigDict):
                path = getattr(mapping, "path", "")
                value = _rebase(_tag(value, "the config mapping", ""), f"{path}.{key}" if path else key)
            return to_dataclass(tp, value)
        raise _field_error(mapping, key, f"expected a section with the fields of {tp.__name__}, got {value!r}")
    if origin in (tuple, list, Sequence, typing.Sequence) or tp in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise _field_error(mapping, key, f"expected a list, got {value!r}")
        if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
            items = [_coerce(v, args[0], mapping, key) for v in value]
        elif origin is tuple and args:
            if len(args) != len(value):
                raise _field_error(mapping, key, f"expected {len(args)} items, got {len(value)}: {value!r}")
            items = [_coerce(v, a, mapping, key) for v, a in zip(value, args)]
        else:
            items = [_coerce(v, args[0], mapping, key) for v in value] if args else list(value)
        return list(items) if (origin is list or tp is list) else tuple(items)
    if origin in (dict, Mapping, typing.Mapping) or tp is dict:
        if not isinstance(value, Mapping):
            raise _field_error(mapping, key, f"expected a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise _field_error(mapping, key, f"expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise _field_error(mapping, key, f"expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise _field_error(mapping, key, f"expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise _field_error(mapping, key, f"expected text, got {value!r}")
    if isinstance(tp, type) and tp is not type(None):
        if isinstance(value, tp):
            return value
        try:
            return tp(value)
        except Exception as e:  # e.g. Path("...")
            raise _field_error(mapping, key, f"cannot make a {tp.__name__} from {value!r}: {e}") from e
    return value


def to_dataclass(cls: type, mapping: Mapping[str, Any]):
    """Build the (frozen, nested) dataclass ``cls`` from ``mapping``, checking field names and types.

    Unknown or missing fields and wrong types raise :class:`ConfigError` naming the dotted key and the
    file or override that set it. Nested dataclass fields are built from nested mappings; lists become
    tuples where the field says ``tuple``.
    """
    if not _is_dataclass_type(cls):
        raise TypeError(f"to_dataclass needs a dataclass type, got {cls!r}")
    if isinstance(mapping, cls):
        return mapping
    if not isinstance(mapping, Mapping):
        raise ConfigError(f"{cls.__name__}: expected a mapping of its fields, got {mapping!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    for key in mapping:
        if key not in fields:
            raise _field_error(
                mapping, key, f"unknown field '{key}' for {cls.__name__}; valid fields: {', '.join(fields)}"
            )
    kwargs = {}
    for name, f in fields.items():
        if name in mapping:
            kwargs[name] = _coerce(mapping[name], hints[name], mapping, name)
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            path = getattr(mapping, "path", "")
            dotted = f"{path}.{name}" if path else name
            where = mapping.where("") if isinstance(mapping, ConfigDict) else "the config mapping"
            raise ConfigError(
                f"missing field '{name}' for {cls.__name__} (config key '{dotted}'): add it to {where} "
                f"or pass +{dotted}=..."
            )
    return cls(**kwargs)


# -- output ----------------------------------------------------------------------------------------
def to_plain(cfg: Any) -> Any:
    """The config as plain dicts, lists and scalars (dataclasses included)."""
    if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
        return {f.name: to_plain(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}
    if isinstance(cfg, Mapping):
        return {str(k): to_plain(v) for k, v in cfg.items()}
    if isinstance(cfg, (list, tuple)):
        return [to_plain(v) for v in cfg]
    if isinstance(cfg, Path):
        return str(cfg)
    return cfg


def resolved_yaml(cfg: Any) -> str:
    """The composed config as YAML text (key order kept, Chinese unescaped), for logs and artifacts."""
    return yaml.safe_dump(to_plain(cfg), sort_keys=False, allow_unicode=True, default_flow_style=False)


def flatten(cfg: Any, prefix: str = "") -> dict[str, Any]:
    """``{"optim": {"lr": 1}}`` -> ``{"optim.lr": 1}`` (lists stay values)."""
    out: dict[str, Any] = {}
    for k, v in to_plain(cfg).items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, dict) and v:
            out.update(flatten(v, key))
        else:
            out[key] = v
    return out


def config_files(root: str | Path | None = None) -> dict[str, list[str]]:
    """Available names per concern and experiments under ``root``, e.g. ``{"optim": ["adamw"], ...}``."""
    root = Path(root) if root is not None else CONFIG_ROOT
    found = {c: _options(root / c) for c in CONCERNS}
    found[EXPERIMENT_GROUP] = sorted(set(_options(root)) | set(_options(root / EXPERIMENT_GROUP)))
    return found


__all__: Iterable[str] = (
    "CONFIG_ROOT",
    "CONCERNS",
    "ConfigDict",
    "ConfigError",
    "config_files",
    "flatten",
    "load_config",
    "parse_value",
    "resolved_yaml",
    "to_dataclass",
    "to_plain",
)
