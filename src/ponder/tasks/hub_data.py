"""Datasets by Hugging Face name (`hf:openai/gsm8k:main`) or `save_to_disk` folder, as tasks.

The rows come from the `datasets` library (imported only here, only when such a task is
built) and then go through exactly what a file task does with its rows (`FileTask`: format
sniffing of GSM8K, MATH-style and generic rows, one `Problem` per row, a `DatasetError`
naming the row for a bad one). Only where the rows come from differs:

- `hf:<org/name>[:<config>]` loads with `datasets.load_dataset(name, config)`; the task's
  split `train`, `test`, `validation`... is the dataset's split of that name.
- a folder written by `Dataset.save_to_disk` / `DatasetDict.save_to_disk` loads with
  `datasets.load_from_disk`; a single `Dataset` serves every split, like a single file.

ponder never turns offline mode on: with the Hub reachable a dataset downloads as usual, and
`HF_HUB_OFFLINE=1` / `HF_DATASETS_OFFLINE=1` are the user's to set. Offline, `datasets`
(5.x) reads only its own cache of datasets it prepared before, not the Hub cache that
`hf download <name> --repo-type dataset` fills; so when the Hub cannot be reached, the
snapshot in the Hub cache is loaded as a local folder (its README's configs included). A
dataset in neither cache is one line naming it and the command that fetches it.
"""
from __future__ import annotations

from pathlib import Path

from ponder.tasks.files import DatasetError, FileTask

PREFIX = "hf:"


def is_saved_dataset(path: str | Path) -> bool:
    """Whether `path` is a folder written by `datasets`' `save_to_disk`: a DatasetDict
    (`dataset_dict.json`) or a single Dataset (`state.json` and `dataset_info.json`)."""
    path = Path(path)
    return (path / "dataset_dict.json").is_file() or (
        (path / "state.json").is_file() and (path / "dataset_info.json").is_file()
    )


def parse_hub_name(spec: str) -> tuple[str, str | None]:
    """`hf:<org/name>[:<config>]` -> (name, config or None); a ValueError saying the expected
    form for anything else."""
    name, colon, config = spec.removeprefix(PREFIX).partition(":")
    parts = name.split("/")
    if len(parts) > 2 or not all(parts) or (colon and not config) or ":" in config:
        raise ValueError(
            f"task {spec!r}: expected hf:<org/name> or hf:<org/name>:<config>, e.g. hf:openai/gsm8k:main"
        )
    return name, config or None


def _one_line(error: BaseException) -> str:
    """A `datasets` error as one line: its message without the usage examples it appends."""
    lines = []
    for line in str(error).splitlines():
        if line.strip().startswith("Example of usage"):
            break
        if line.strip():
            lines.append(line.strip())
    return " ".join(lines) or type(error).__name__


def _offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def _cached_snapshot(name: str, revision: str | None) -> str | None:
    """The dataset's snapshot folder in the local Hub cache (what `hf download` wrote), or
    None when the cache has none."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return snapshot_download(name, repo_type="dataset", revision=revision, local_files_only=True)
    except (LocalEntryNotFoundError, FileNotFoundError):
        return None


def load_hub_dataset(spec: str, revision: str | None = None):
    """The `DatasetDict` of `hf:<org/name>[:<config>]`: through `datasets.load_dataset`
    (the Hub, or `datasets`' own cache offline), else from the Hub cache's snapshot when the
    Hub cannot be reached. Every failure is a one-line `DatasetError` naming the dataset."""
    name, config = parse_hub_name(spec)
    try:
        import datasets
    except ImportError as e:
        raise ImportError(f"task {spec!r} needs the datasets library: pip install 'ponder[hub]' "
                          "(or pip install datasets)") from e
    try:
        return datasets.load_dataset(name, config, revision=revision)
    except (ConnectionError, ValueError, FileNotFoundError) as e:
        failure = e  # the Hub unreachable, or a name/config it does not know
    # the Hub cache may still hold the dataset (`hf download`), which datasets reads offline
    # only as a local folder
    snapshot = _cached_snapshot(name, revision)
    if snapshot is None:
        if isinstance(failure, ConnectionError):
            why = "offline mode is on (HF_HUB_OFFLINE / HF_DATASETS_OFFLINE)" if _offline() else "the Hub cannot be reached"
            raise DatasetError(
                f"dataset {name!r} is not in the local Hugging Face cache and {why}: fetch it where the Hub is "
                f"reachable with `hf download {name} --repo-type dataset` (or `datasets.load_dataset({name!r})`), "
                "then rerun"
            ) from None
        raise DatasetError(f"{spec}: {_one_line(failure)}") from None
    try:
        return datasets.load_dataset(snapshot, config)
    except (ValueError, FileNotFoundError) as e:
        raise DatasetError(f"{spec} (cached at {snapshot}): {_one_line(e)}") from None


def load_saved_dataset(path: str | Path):
    """The `Dataset` or `DatasetDict` that `save_to_disk` wrote to `path`."""
    try:
        import datasets
    except ImportError as e:
        raise ImportError(f"{path}: a saved dataset folder needs the datasets library: pip install "
                          "'ponder[hub]' (or pip install datasets)") from e
    try:
        return datasets.load_from_disk(str(path))
    except (ValueError, FileNotFoundError) as e:
        raise DatasetError(f"{path}: cannot load the saved dataset: {_one_line(e)}") from None


class HubDatasetTask(FileTask):
    """A `datasets` dataset as a task. `source`: `hf:<org/name>[:<config>]` or a
    `save_to_disk` folder; `revision`: a Hub branch, tag or commit (hf: only). The other
    knobs are a file task's: `format` ("gsm8k", "math", "generic"; sniffed from the first
    row when None), `question_key`, `answer_key`, `solution_key`, `id_key`, `name`."""

    def __init__(
        self,
        source: str | Path,
        format: str | None = None,
        question_key: str | None = None,
        answer_key: str | None = None,
        solution_key: str | None = None,
        id_key: str | None = None,
        name: str | None = None,
        revision: str | None = None,
    ):
        self.revision = revision
        if name is None:
            hub = str(source).startswith(PREFIX)
            name = parse_hub_name(str(source))[0].split("/")[-1] if hub else Path(source).resolve().name
        super().__init__(source, format=format, question_key=question_key, answer_key=answer_key,
                         solution_key=solution_key, id_key=id_key, name=name)

    def _split_sources(self, source) -> dict:
        """{split: datasets.Dataset}; "*" (every split) for a single saved Dataset."""
        if str(source).startswith(PREFIX):
            loaded = load_hub_dataset(str(source), self.revision)
        else:
            if self.revision is not None:
                raise ValueError(f"{source}: revision= applies to hf:<org/name> datasets, not to a saved folder")
            loaded = load_saved_dataset(source)
        if hasattr(loaded, "keys"):  # a DatasetDict
            splits = {str(split): loaded[split] for split in loaded.keys()}
            if not splits:
                raise DatasetError(f"{source}: the dataset has no splits")
            return splits
        return {"*": loaded}

    def _rows(self, split: str) -> list[tuple[str, dict]]:
        """The split's rows as (location, row) pairs; location is `<source> <split> row N`."""
        dataset = self.paths.get(split, self.paths.get("*"))
        if dataset is None:
            raise DatasetError(
                f"{self.source}: no {split!r} split: the dataset's splits are {sorted(self.paths)}"
            )
        where = self.source if split not in self.paths else f"{self.source} {split}"
        rows = dataset.to_list()
        if not rows:
            raise DatasetError(f"{where}: no rows")
        return [(f"{where} row {i}", row) for i, row in enumerate(rows, 1)]
