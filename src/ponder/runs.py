"""Run directories: atomic writes, and the guard that keeps one run to one config.

Every command that writes `runs/<name>/` starts with `start_run`: on a fresh directory it
writes the resolved config (`config.yaml`); on an existing one it compares the new config
with the saved one and refuses a difference, because resuming would mix two runs (an arith
checkpoint continued on another task, an ORM resumed as a PRM). Commands call it only after
their inputs are checked, so a command that fails on bad input leaves no stub run behind and
never overwrites the config of the run that is there. Some inputs can only fail once the run
has started (a reward function that raises, a dead server, examples that do not fit `max_len`):
the command line then calls `discard_unstarted`, which removes a run directory this process
created and in which nothing but its config was written, so the corrected command is not
refused as "a run started with other options".
"""
from __future__ import annotations

import json
import os
from pathlib import Path


class RunConfigError(ValueError):
    pass


_created: list[tuple[Path, Path]] = []
"""(run directory, the outermost folder start_run created for it) of the runs this process opened fresh"""


def check_run_name(name: str, option: str = "--run") -> None:
    """A run name is one plain folder name inside the runs directory: not empty, not `.` or
    `..`, no path separator (`../x` would write outside runs/, `.` onto runs/ itself)."""
    seps = {"/", os.sep, *([os.altsep] if os.altsep else [])}
    if not name or not name.strip() or name in (".", "..") or any(s in name for s in seps):
        raise RunConfigError(f"{option} {name!r}: expected a plain folder name such as 'exp1' (no path, not '.' "
                             "or '..'); use --runs-dir to choose the folder runs go in")


def forget_created() -> None:
    """Start a new command: runs opened by earlier commands of this process are theirs."""
    _created.clear()


def discard_unstarted() -> None:
    """Remove the run directories this process created (since `forget_created`) whose run never got past its start:
    nothing in them but config.yaml and empty files or folders (no checkpoint, no records).
    A directory with anything more is a run that can resume, and stays."""
    import shutil

    while _created:
        run_dir, top = _created.pop()
        try:
            files = [p for p in run_dir.rglob("*") if p.is_file()]
            if any(p.name != "config.yaml" and p.stat().st_size > 0 for p in files):
                continue
            shutil.rmtree(run_dir)
            d = run_dir.parent
            while d != top.parent and d.is_dir() and not any(d.iterdir()):  # folders made only for this run
                d.rmdir()
                d = d.parent
        except OSError:
            continue


def atomic_write(path: str | Path, data: str | bytes) -> None:
    """Write a whole file so that a reader (or a kill) sees the old file or the new one,
    never a torn one: a temporary file beside it, then a rename."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb" if isinstance(data, bytes) else "w") as f:
        f.write(data)
    os.replace(tmp, path)


def write_json(path: str | Path, obj) -> None:
    atomic_write(path, json.dumps(obj, indent=2) + "\n")


def write_jsonl(path: str | Path, rows) -> None:
    atomic_write(path, "".join(json.dumps(r) + "\n" for r in rows))


def read_jsonl(path: str | Path) -> list[dict]:
    """The rows of a JSONL file ponder wrote (blank lines skipped)."""
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def _differences(saved: dict, new: dict) -> list[str]:
    """Options set differently; an option the saved config lacks (added to ponder since that
    run started) counts only if set away from nothing."""
    out = []
    for key in new:
        if key in saved and saved[key] != new[key]:
            out.append(f"{key}: {saved[key]!r} there, {new[key]!r} now")
        elif key not in saved and new[key] is not None:
            out.append(f"{key}: not an option there, {new[key]!r} now")
    return out


def start_run(run_dir: str | Path, config: dict, command: str, ignore: tuple[str, ...] = ("run", "runs_dir", "device"),
              extendable: tuple[str, ...] = (), start_over: str | None = None) -> bool:
    """Open `run_dir` for `config`; True when it resumes an earlier run of the same config.

    Refuses (RunConfigError) when the directory holds a run started with other options, and
    says which; `ignore` lists options that only say where the run lives. `extendable` lists
    options that may grow on a rerun without changing what was done so far (RL's `steps`
    under a constant learning rate, expert iteration's `rounds`): the saved config then takes
    the new value. `start_over` names the command's own way to start over, if it has one."""
    import yaml

    run_dir = Path(run_dir)
    saved_path = run_dir / "config.yaml"
    new = json.loads(json.dumps(config, default=str))
    if saved_path.exists():
        try:
            saved = yaml.safe_load(saved_path.read_text()) or {}
        except yaml.YAMLError as e:
            raise RunConfigError(f"{saved_path}: unreadable config of an earlier run ({e}); "
                                 f"use another --run name or delete {run_dir}") from None
        grown = [k for k in extendable if k in saved and k in new and isinstance(new[k], int) and new[k] > saved[k]]
        skip = (*ignore, *grown)
        diffs = _differences({k: v for k, v in saved.items() if k not in skip},
                             {k: v for k, v in new.items() if k not in skip})
        if diffs:
            raise RunConfigError(
                f"{run_dir} holds a `ponder {command}` run started with other options ({'; '.join(diffs)}); "
                f"resuming it would mix two runs. Use another --run name, or "
                f"{start_over or f'delete {run_dir}'} to start over")
        if grown:
            atomic_write(saved_path, yaml.safe_dump({**saved, **{k: new[k] for k in grown}}, sort_keys=False))
        return True
    top = run_dir
    while not top.parent.exists() and top.parent != top:  # the outermost folder this call creates
        top = top.parent
    fresh = not run_dir.exists()
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write(saved_path, yaml.safe_dump(new, sort_keys=False))
        if fresh:
            _created.append((run_dir, top))
    except PermissionError:
        raise RunConfigError(f"cannot write the run directory {run_dir}: permission denied") from None
    return False
