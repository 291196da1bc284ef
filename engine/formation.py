"""From declared process types to the processes that run: instances, ``PORT``, environment
layers, and which processes a name on the command line means.

A config declares process *types* (``web``, ``worker``); each runs as one or more *instances*
(``instances = N``, or ``up -m web=2``): ``web.1``, ``web.2``, each a process of its own. A type
with one instance keeps its plain name (``web``) in ``ps`` and every verb, and its instance name
``web.1`` is what it sees in ``PS`` and ``LACRIMOSA_PROCESS`` (as honcho and foreman name it).

``PORT``, as honcho and foreman assign it: a base (``up -p N``, else ``PORT`` from the env files,
else ``PORT`` in the console's environment, else 5000), plus 100 for each type before it in the
file, plus 1 for each instance before it. ``[processes.X] port = N`` sets the type's own base; a
``PORT`` in the type's ``env_file`` or ``env`` is taken as is.

Each process's environment, later layers winning: the console's environment; ``.env`` beside the
config; the ``up -e`` files in order; ``PORT`` and ``PS``; the type's ``env_file`` files in order;
its ``env`` table. :func:`select` is the one place a name given to a verb is resolved.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from .dotenv import EnvValue, read_env_file
from .errors import ConfigError, InvalidRequest, NoSuchProcess

if TYPE_CHECKING:
    from .config import Config, ProcessSpec

DEFAULT_BASE_PORT = 5000
PORT_STEP_PER_TYPE = 100
MAX_INSTANCES = 100  # of one type: a formation past it is refused
MAX_PROCESSES = 1000  # in all, after expansion
DOTENV_NAME = ".env"
ALL = "all"  # the target meaning every process; no process may be named so
_GLOB_CHARACTERS = frozenset("*?[")


@dataclass(frozen=True)
class ProjectOptions:
    """What ``up``, ``check`` and ``run`` add to a config from the command line."""

    env_files: tuple[Path, ...] = ()  # -e FILE[,FILE], after .env
    base_port: int | None = None  # -p N
    formation: Mapping[str, int] = field(default_factory=dict)  # -m web=2 (all=N: every type)
    # The console's environment, read for PORT (None: os.environ).
    environ: Mapping[str, str] | None = None


@dataclass(frozen=True)
class BasePort:
    """The port the first type's first instance gets, and what set it."""

    port: int
    source: str


def parse_formation(text: str) -> dict[str, int]:
    """``"web=2,worker=1"`` (``all=N``: every type) → counts; ValueError with a reason."""
    counts: dict[str, int] = {}
    for item in text.split(","):
        name, equals, count_text = item.strip().partition("=")
        name, count_text = name.strip(), count_text.strip()
        if not equals or not name or not count_text.isascii() or not count_text.isdigit():
            raise ValueError(f"expected NAME=COUNT[,NAME=COUNT], got {item.strip()!r}")
        count = int(count_text)
        if not 1 <= count <= MAX_INSTANCES:
            raise ValueError(f"{name}={count_text}: a count must be from 1 to {MAX_INSTANCES}")
        counts[name] = count
    return counts


def parse_port(text: str) -> int:
    """A port number from 1 to 65535; ValueError otherwise."""
    text = text.strip()
    if not text.isascii() or not text.isdigit() or not 1 <= int(text) <= 65535:
        raise ValueError(f"not a port number (1 to 65535): {text[:40]!r}")
    return int(text)


def project_env_files(config_path: Path, options: ProjectOptions) -> list[Path]:
    """The project's env files in the order they apply: ``.env`` beside the config if it is
    there, then the ``-e`` files (each once)."""
    files: list[Path] = []
    dotenv = config_path.parent / DOTENV_NAME
    if dotenv.is_file():
        files.append(dotenv)
    for path in options.env_files:
        try:
            resolved = path.resolve()
        except (OSError, RuntimeError) as exc:  # a symlink loop is a RuntimeError
            raise ConfigError(path, None, f"cannot use this env file: {exc}") from None
        if resolved not in files:
            files.append(resolved)
    return files


def read_layers(paths: Iterable[Path]) -> dict[str, EnvValue]:
    """The variables of ``paths``, a later file's winning."""
    merged: dict[str, EnvValue] = {}
    for path in paths:
        merged.update(read_env_file(path))
    return merged


def base_port(project_env: Mapping[str, EnvValue], options: ProjectOptions) -> BasePort:
    """``-p``, else ``PORT`` from the env files, else from the environment, else 5000."""
    if options.base_port is not None:
        return BasePort(options.base_port, "-p")
    if "PORT" in project_env:
        setting = project_env["PORT"]
        file, _, line = setting.source.rpartition(":")
        try:
            return BasePort(parse_port(setting.value), setting.source)
        except ValueError as exc:
            raise ConfigError(Path(file), int(line), f"PORT: {exc}") from None
    environ = os.environ if options.environ is None else options.environ
    if environ.get("PORT"):
        try:
            return BasePort(parse_port(environ["PORT"]), "the environment")
        except ValueError as exc:
            raise InvalidRequest(f"PORT in the environment: {exc}") from None
    return BasePort(DEFAULT_BASE_PORT, "the default")


def expand(config: Config, options: ProjectOptions) -> Config:
    """``config`` (one spec per declared type) with one spec per instance, each with its
    environment layers (``base_env``) and their sources resolved."""
    types = config.processes
    for name in options.formation:
        if name != ALL and name not in types:
            raise InvalidRequest(
                f"-m: no process type {name!r} (known: {', '.join(types) or 'none'})"
            )
    project_env = read_layers(project_env_files(config.path, options))
    base = base_port(project_env, options)
    processes: dict[str, ProcessSpec] = {}
    instance_names: dict[str, str] = {}  # every name a process answers to → its instance
    for index, spec in enumerate(types.values()):
        count = options.formation.get(spec.name, options.formation.get(ALL, spec.instances))
        type_env = read_layers(spec.env_file)
        first_port = (
            spec.port if spec.port is not None else (base.port + PORT_STEP_PER_TYPE * index)
        )
        for number in range(1, count + 1):
            name = spec.name if count == 1 else f"{spec.name}.{number}"
            instance = f"{spec.name}.{number}"
            port = first_port + number - 1
            explicit_port = "PORT" in spec.env or "PORT" in type_env  # taken as is
            if port > 65535 and not explicit_port:
                raise ConfigError(
                    config.path,
                    None,
                    f"{instance} would get PORT {port}, past 65535 (base {base.port} from "
                    f"{base.source}): lower the base with -p",
                )
            if spec.port is not None:
                port_source = f"port = {spec.port}, +{number - 1}"
            else:
                steps = f"+{PORT_STEP_PER_TYPE}x{index} +{number - 1}"
                port_source = f"base {base.port} from {base.source}, {steps}"
            layers: dict[str, EnvValue] = dict(project_env)
            layers["PORT"] = EnvValue(str(port), port_source)
            layers["PS"] = EnvValue(instance, "the instance name")
            layers.update(type_env)
            for alias in {name, instance}:
                if alias in instance_names:
                    raise ConfigError(
                        config.path,
                        None,
                        f"the name {alias!r} is both {instance_names[alias]!r} and {instance!r} "
                        f"(an instance of {spec.name!r}): rename one",
                    )
                instance_names[alias] = instance
            processes[name] = dataclasses.replace(
                spec,
                name=name,
                process_type=spec.name,
                instance=number,
                instances=count,
                base_env={key: setting.value for key, setting in layers.items()},
                env_sources={
                    **{key: setting.source for key, setting in layers.items()},
                    **spec.env_sources,
                },
            )
            if len(processes) > MAX_PROCESSES:
                raise ConfigError(config.path, None, f"more than {MAX_PROCESSES} processes in all")
    return dataclasses.replace(config, processes=processes, base_port=base.port)


def select(specs: Mapping[str, ProcessSpec], target: str) -> list[str]:
    """The processes ``target`` means, in config order: ``all``; a process (``web``, or an
    instance: ``web.2``, ``web.1`` for a type's only one); a type (every instance of it); a
    glob over those names (``w*``, ``web.[12]``). NoSuchProcess when it means none."""
    if target == ALL:
        return list(specs)
    is_glob = not _GLOB_CHARACTERS.isdisjoint(target)
    found = []
    for name, spec in specs.items():
        answers_to = (name, spec.instance_name, spec.process_type)
        if any(
            fnmatch.fnmatchcase(alias, target) if is_glob else alias == target
            for alias in answers_to
        ):
            found.append(name)
    if not found:
        raise NoSuchProcess(target, list(specs))
    return found
