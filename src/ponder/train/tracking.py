"""Experiment trackers: the rows of a run's `metrics.jsonl` also sent to TensorBoard, W&B or MLflow.

A trainer's `report_to` (`--report-to tensorboard,wandb`) names the trackers; the training loop
builds accelerate's trackers for them (`Accelerator(log_with=...)`, `init_trackers`,
`accelerator.log`), starts them with the run's config as hyperparameters, logs each row it
writes to metrics.jsonl (train and eval) at that row's step, and closes them at the end. Every
tracker writes inside the run directory unless told otherwise:

    tensorboard   <run>/tensorboard/<name>/     event files (`tensorboard --logdir runs/NAME/tensorboard`)
    wandb         <run>/wandb/                  W&B's run files; project $WANDB_PROJECT, else "ponder"
    mlflow        <run>/mlruns/                 a file store, unless $MLFLOW_TRACKING_URI names another

A resumed run logs to the same place: the W&B run id and the MLflow run id are kept in
<run>/trackers.json and resumed, and TensorBoard is told to drop what the killed run logged past
its last checkpoint (SummaryWriter's `purge_step`), as metrics.jsonl drops those records.
W&B takes the step as a value (`step`, its x-axis) rather than as its own step counter, which
refuses a step lower than one it has seen (a resumed run, or rows logged after the fact).

This module imports nothing heavy at the top: the command line checks names and installed
packages here at start-up, and a tracker's package is imported only by a run that uses it.
"""
from __future__ import annotations

import importlib.util
import json
import os
import secrets
from pathlib import Path

from ponder.config import ConfigError

TRACKERS = {"tensorboard": ("tensorboard",), "wandb": ("wandb",), "mlflow": ("mlflow",)}
"""tracker name -> the modules any one of which makes it usable"""
PIP = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow"}
"""tracker name -> the pip package that provides it"""
STATE = "trackers.json"
"""the file in the run directory that keeps the trackers' run ids, so a resumed run continues them"""


def installed(name: str) -> bool:
    return any(importlib.util.find_spec(m) is not None for m in TRACKERS[name])


def resolve_report_to(value) -> list[str]:
    """The trackers `value` names, checked: a comma-separated string or a list of names out of
    tensorboard, wandb, mlflow; `none` (or nothing) for none, `all` for every one of them that
    is installed. A name that is not a tracker, or one whose package is not installed, is a
    ConfigError that says what to type or which package to install."""
    if value is None:
        return []
    items = value.split(",") if isinstance(value, str) else list(value)
    names = []
    for item in items:
        if not isinstance(item, str):
            raise ConfigError(f"report_to (--report-to): expected tracker names, got {item!r}")
        name = item.strip().lower()
        if name in ("", "none"):
            continue
        if name == "all":
            found = [n for n in TRACKERS if installed(n)]
            if not found:
                raise ConfigError("--report-to all: none of the trackers is installed; pip install "
                                  "'ponder[track]' (tensorboard, wandb) or pip install mlflow")
            names += found
            continue
        if name not in TRACKERS:
            raise ConfigError(f"--report-to {item!r}: expected a comma-separated list of "
                              f"{', '.join(TRACKERS)} (or all, none)")
        if not installed(name):
            raise ConfigError(f"--report-to {name}: the {PIP[name]} package is not installed; "
                              f"pip install {PIP[name]} (or pip install 'ponder[track]')")
        names.append(name)
    return list(dict.fromkeys(names))  # each once, in the order given


def hyperparameters(config: dict) -> dict:
    """A config flattened to what every tracker takes as a hyperparameter (bool, int, float,
    str): a mapping's items become `key.item`, a list its items joined by commas."""
    out = {}
    for key, value in config.items():
        if isinstance(value, dict):
            for k, v in hyperparameters(value).items():
                out[f"{key}.{k}"] = v
        elif isinstance(value, (list, tuple)):
            out[key] = ",".join(map(str, value))
        elif value is None or isinstance(value, (bool, int, float, str)):
            out[key] = "none" if value is None else value
        else:
            out[key] = str(value)
    return out


def _wandb_tracker(**kwargs):
    """accelerate's W&B tracker, logging the step as the value `step` (the charts' x-axis)
    instead of W&B's own step counter: that counter only grows, so rows a resumed run logs again
    from its checkpoint, or a row logged after the fact, would be dropped."""
    from accelerate.tracking import WandBTracker

    class StepAsValue(WandBTracker):
        def start(self):
            super().start()
            run = getattr(self, "run", None)  # set on rank 0 only
            if run is not None:
                run.define_metric("step")
                run.define_metric("*", step_metric="step")

        def log(self, values: dict, step: int | None = None, **kw):
            super().log({**values, "step": step} if step is not None else values, **kw)

    StepAsValue.main_process_only = True  # rank 0 alone writes, as it does metrics.jsonl
    return StepAsValue(**kwargs)


def _kept(inner):
    """`inner` (an accelerate tracker) kept open across several trainers' accelerators: started
    and given the hyperparameters once, its `finish` left to `Tracking.close`."""
    from accelerate.tracking import GeneralTracker

    class Kept(GeneralTracker):
        name = inner.name
        requires_logging_directory = inner.requires_logging_directory
        main_process_only = False  # `inner` decides where it runs

        def __init__(self):
            super().__init__()
            self.started = self.configured = False

        @property
        def tracker(self):
            return inner.tracker

        def start(self):
            if not self.started:
                inner.start()
                self.started = True

        def store_init_configuration(self, values: dict):
            if not self.configured:
                inner.store_init_configuration(values)
                self.configured = True

        def log(self, values: dict, step: int | None = None, **kw):
            inner.log(values, step=step, **kw)

        def finish(self):
            pass

        def close(self):
            if self.started:
                inner.finish()

    return Kept()


class Tracking:
    """Where a run's rows go besides metrics.jsonl: the trackers `report_to` names, writing
    under `run_dir` as the run `name`, with `hparams` (a config as a dict) as hyperparameters.
    `step_offset` is added to every row's step.

    By default each trainer's loop opens the trackers and closes them at its end. `shared`:
    one tracker run across several loops and rows logged between them (expert iteration's rounds,
    each round's SFT steps after the round before: set `step_offset` per round), closed by `close`.
    """

    def __init__(self, report_to, run_dir: str | Path, name: str, hparams: dict | None = None, step_offset: int = 0,
                 shared: bool = False):
        self.names = resolve_report_to(report_to)
        self.run_dir, self.name = Path(run_dir), name
        self.hparams = hyperparameters(hparams or {})
        self.step_offset, self.shared = step_offset, shared
        self._resumed_mlflow = False
        self._kept: list | None = None

    # ----------------------------------------------------------------- the trackers' ids
    def _state(self) -> dict:
        path = self.run_dir / STATE
        try:
            state = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            return {}
        return state if isinstance(state, dict) else {}

    def _save_state(self, **changes) -> None:
        from ponder.runs import write_json

        self.run_dir.mkdir(parents=True, exist_ok=True)
        write_json(self.run_dir / STATE, {**self._state(), **changes})

    def _mlflow_uri(self) -> str:
        uri = os.environ.get("MLFLOW_TRACKING_URI")
        if uri:
            return uri
        # MLflow 3 refuses its file store unless asked (it wants a database, which needs SQLAlchemy,
        # which mlflow-skinny lacks); a folder in the run directory is what this default is for.
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        return (self.run_dir / "mlruns").resolve().as_uri()

    # ----------------------------------------------------------------- the session
    def trackers(self, resumed_at: int = 0) -> list:
        """accelerate's trackers, for `Accelerator(log_with=...)`, for a run that resumes after
        its step `resumed_at` (0: from the start). Built on rank 0 only, which alone logs; built
        once when `shared`."""
        if not self.names or int(os.environ.get("RANK", "0")) != 0:
            return []
        if self._kept is not None:
            return self._kept
        from accelerate.tracking import MLflowTracker, TensorBoardTracker

        state, out = self._state(), []
        if "tensorboard" in self.names:
            kw = {}
            if resumed_at > 0:
                # TensorBoard drops the earlier events at and after this step: those a killed run
                # logged past its last checkpoint, which this run logs again (as metrics.jsonl drops them)
                kw["purge_step"] = self.step_offset + resumed_at + 1
            out.append(TensorBoardTracker(self.name, str(self.run_dir / "tensorboard"), **kw))
        if "wandb" in self.names:
            run_id = state.get("wandb") or os.environ.get("WANDB_RUN_ID") or secrets.token_hex(4)
            if state.get("wandb") != run_id:
                self._save_state(wandb=run_id)
            out.append(_wandb_tracker(run_name=os.environ.get("WANDB_PROJECT", "ponder"), name=self.name,
                                      dir=str(self.run_dir), id=run_id, resume="allow"))
        if "mlflow" in self.names:
            import mlflow

            uri = self._mlflow_uri()
            mlflow.set_tracking_uri(uri)
            saved = state.get("mlflow") or {}
            run_id = saved.get("run_id") if saved.get("tracking_uri") == uri else None
            self._resumed_mlflow = run_id is not None
            out.append(MLflowTracker(experiment_name=os.environ.get("MLFLOW_EXPERIMENT_NAME", "ponder"),
                                     run_id=run_id, run_name=self.name))
        if self.shared:
            self._kept = out = [_kept(t) for t in out]
        return out

    def start(self, accelerator) -> None:
        """Start the accelerator's trackers with the hyperparameters. A tracker that cannot start
        (no W&B login, an unreachable MLflow server) is a ConfigError naming it, before any step."""
        if not self.names or not accelerator.is_main_process:
            return
        try:
            if self._resumed_mlflow:  # MLflow refuses to set a run's parameters twice: the others get them
                accelerator.init_trackers(self.name)
                for tracker in accelerator.trackers:
                    if tracker.name != "mlflow":
                        tracker.store_init_configuration(self.hparams)
            else:
                accelerator.init_trackers(self.name, config=self.hparams)
        except Exception as e:
            raise self._failed(e) from e
        self._remember(accelerator.trackers)

    def _failed(self, e: Exception) -> ConfigError:
        which = next((n for n in self.names if type(e).__module__.split(".")[0] == n), ",".join(self.names))
        hint = " (or WANDB_MODE=offline to keep W&B's files in the run directory)" if which == "wandb" else ""
        return ConfigError(f"--report-to {which}: the tracker did not start: {type(e).__name__}: {e}{hint}")

    def _remember(self, trackers) -> None:
        """Keep the MLflow run's id, so that a resumed run logs to it again."""
        for tracker in trackers:
            if tracker.name == "mlflow":
                self._save_state(mlflow={"run_id": tracker.tracker.info.run_id, "tracking_uri": self._mlflow_uri()})

    def log(self, accelerator, row: dict) -> None:
        """One metrics.jsonl row (its numbers) to every tracker, at the row's step."""
        if self.names and accelerator.is_main_process:
            accelerator.log(_numbers(row), step=self.step_offset + int(row.get("step", 0)))

    @staticmethod
    def finish(accelerator) -> None:
        """Close the accelerator's trackers (a shared one stays open until `close`). Not
        `accelerator.end_training()`, which also ends the process group that the rest of a
        torchrun command still uses."""
        for tracker in accelerator.trackers:
            tracker.finish()
        accelerator.trackers = []

    def log_rows(self, rows: list[dict]) -> None:
        """Rows logged between the loops of a `shared` tracking (expert iteration's per-round
        accuracy), each at its step (plus `step_offset`)."""
        if not self.names or int(os.environ.get("RANK", "0")) != 0:
            return
        if not self.shared:
            raise ValueError("log_rows needs a shared Tracking (its trackers stay open between loops)")
        from accelerate import PartialState

        PartialState()  # accelerate's trackers log through its state
        trackers = self.trackers()
        try:
            for tracker in trackers:
                tracker.start()
                if not (tracker.name == "mlflow" and self._resumed_mlflow):
                    tracker.store_init_configuration(self.hparams)
        except Exception as e:
            raise self._failed(e) from e
        self._remember(trackers)
        for row in rows:
            for tracker in trackers:
                tracker.log(_numbers(row), step=self.step_offset + int(row.get("step", 0)))

    def close(self) -> None:
        """Close a shared tracking's trackers."""
        for tracker in self._kept or []:
            tracker.close()
        self._kept = None


def _numbers(row: dict) -> dict:
    """A row's numeric values, its step left out (trackers take it apart)."""
    return {k: v for k, v in row.items() if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool)}
