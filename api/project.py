"""The project as the command line gives it (``-f``, ``-e``, ``-p``, ``-m``), and the verbs that
need no console: ``check`` (is the config good; what would run, with which PORT and from which
files) and ``run`` (one command in the foreground with the project's environment, as
``honcho run``)."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path
from typing import Any

from ..engine.config import Config, ProcessSpec, load_config
from ..engine.errors import ConfigError, InvalidRequest
from ..engine.fastjson import json_text
from ..engine.formation import ProjectOptions, base_port, project_env_files, read_layers, select
from ..engine.paths import find_config


def config_path(args: argparse.Namespace) -> Path:
    """The config ``-f`` names, else the nearest lacrimosa.toml or Procfile."""
    path = Path(args.file) if args.file else find_config()
    if path is None:
        raise ConfigError(
            Path.cwd(),
            None,
            "no lacrimosa.toml or Procfile here or in a parent folder (or pass -f FILE)",
        )
    if args.file and not path.is_file():
        raise InvalidRequest(f"no such config file: {path}")
    return path


def project_options(args: argparse.Namespace) -> ProjectOptions:
    """``-e``, ``-p`` and ``-m`` as the engine takes them."""
    return ProjectOptions(
        env_files=tuple(Path(f) for f in getattr(args, "env_files", [])),
        base_port=getattr(args, "port", None),
        formation=getattr(args, "formation", {}),
    )


def load_project(args: argparse.Namespace) -> Config:
    """The config with its env files, PORTs and formation, as ``up`` would run it."""
    return load_config(config_path(args), project_options(args))


# -- check -----------------------------------------------------------------------------------------

# Variables whose values check shows; the others may hold secrets: their names and sources only.
_SHOWN_VALUES = ("PORT", "PS")


def run_check(args: argparse.Namespace) -> int:
    """Print what ``up`` would run; 0 if the config loads, else the error (exit 1 or 2)."""
    config = load_project(args)
    options = project_options(args)
    files = project_env_files(config.path, options)
    report: dict[str, Any] = {
        "config": str(config.path),
        "env_files": [str(path) for path in files],
        "base_port": config.base_port,
        "base_port_source": base_port(read_layers(files), options).source,
        "warnings": list(config.warnings),
        "processes": [_check_entry(spec) for spec in config.processes.values()],
    }
    if args.json:
        sys.stdout.write(json_text(report, indent=2) + "\n")
        return 0
    out = [f"{config.path}: ok, {len(config.processes)} processes"]
    out.append(
        "env files: "
        + (", ".join(report["env_files"]) or "none")
        + f"; first PORT {config.base_port} (from {report['base_port_source']})"
    )
    for entry in report["processes"]:
        start = "" if entry["autostart"] else "  (autostart = false)"
        out.append(f"{entry['name']}  PORT={entry['port']}  PS={entry['instance']}{start}")
        out.append(f"  cmd: {entry['cmd']}")
        for variable in entry["env"]:
            if variable["name"] not in _SHOWN_VALUES:
                out.append(f"  {variable['name']} from {variable['source']}")
    sys.stdout.write(_safe("\n".join(out)) + "\n")
    for warning in config.warnings:
        print(f"lacrimosa: warning: {_safe(warning)}", file=sys.stderr)
    return 0


def _check_entry(spec: ProcessSpec) -> dict[str, Any]:
    environment = spec.environment()
    return {
        "name": spec.name,
        "type": spec.process_type,
        "instance": spec.instance_name,
        "port": environment.get("PORT"),
        "cmd": spec.cmd,
        "cwd": str(spec.cwd),
        "autostart": spec.autostart,
        "restart": spec.restart,
        "env": [
            {
                "name": name,
                "source": spec.env_sources.get(name, "?"),
                **({"value": environment[name]} if name in _SHOWN_VALUES else {}),
            }
            for name in environment
        ],
    }


def _safe(text: str) -> str:
    """A config's text (commands, paths) for a terminal: no control sequence acts."""
    from ..engine.terminal_text import terminal_safe

    return "\n".join(terminal_safe(line, "plain") for line in text.split("\n"))


# -- run -------------------------------------------------------------------------------------------


def run_command(args: argparse.Namespace) -> int:
    """Replace this process with the command (exec): it owns the terminal, its signals and its
    exit status are its own, as with ``honcho run``. Returns only on a usage error."""
    argv = list(args.argv)
    config = load_project(args)
    if argv[:1] == ["--"]:
        command = argv[1:]
        if not command:
            raise InvalidRequest("run: give a command after --")
        environment = _project_environment(config, project_options(args))
        cwd = Path.cwd()
    elif len(argv) == 1:
        spec = _one_process(config, argv[0])
        environment = spec.environment()
        command = ["/bin/sh", "-c", spec.cmd]
        cwd = spec.cwd
    else:
        raise InvalidRequest(
            "run: give a process name (lacrimosa run web) or a command after -- "
            "(lacrimosa run -- env)"
        )
    env = dict(os.environ)
    env.setdefault("PYTHONUNBUFFERED", "1")  # as under up
    env.update(environment)
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.chdir(cwd)
        os.execvpe(command[0], command, env)
    except OSError as exc:
        print(f"lacrimosa: run: {shlex.join(command)[:200]}: {exc.strerror}", file=sys.stderr)
        return 127 if isinstance(exc, FileNotFoundError) else 126
    return 0  # not reached: exec does not return


def _one_process(config: Config, name: str) -> ProcessSpec:
    """The process ``name`` means; a type of several instances means its first (as ``web``
    runs ``web.1``)."""
    names = select(config.processes, name)
    types = {spec.process_type for spec in config.processes.values()}
    if len(names) > 1 and name not in types:
        raise InvalidRequest(f"run: {name!r} means {len(names)} processes; name one")
    return config.processes[names[0]]


def _project_environment(config: Config, options: ProjectOptions) -> dict[str, str]:
    """``run -- CMD``: the project's env files (``.env``, ``-e``) and the first PORT."""
    layers = read_layers(project_env_files(config.path, options))
    environment = {name: setting.value for name, setting in layers.items()}
    environment["PORT"] = str(config.base_port)
    return environment
