"""Models by Hugging Face Hub ID: `org/name` or `org/name@revision`, wherever a model is taken.

    folder = hub_snapshot("Qwen/Qwen2.5-0.5B-Instruct")      # the local snapshot folder

An ID resolves to a folder of the local Hugging Face cache (`$HF_HOME/hub`), downloaded
first when the Hub is reachable and the cache lacks it; from there every loader reads a
plain folder (config, tokenizer, weights, a ponder reward head). Only what loading needs is
fetched: configs, tokenizer files and safetensors weights (PyTorch `.bin` weights only when a
repository has no safetensors), and Python files only under `--trust-remote-code`.

ponder never forces offline mode: `HF_HUB_OFFLINE=1` (or `TRANSFORMERS_OFFLINE=1`) set by the
user keeps it to the cache. A model that is neither cached nor reachable is one line naming
the ID and how to fetch it.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

# org/name with an optional @revision (a branch, tag or commit); names as the Hub allows them.
HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*(@[A-Za-z0-9_./-]+)?$")
LOAD_FILES = ["*.json", "*.safetensors", "tokenizer*", "*.model", "*.tiktoken", "*.txt", "*.jinja"]
TRUST_ENV = "PONDER_TRUST_REMOTE_CODE"


def is_hub_id(name: str) -> bool:
    """Whether `name` has the shape of a Hub ID (a local path of that shape is checked first)."""
    return bool(HUB_ID.match(name)) and not name.startswith((".", "/", "~"))


def trust_remote_code() -> bool:
    """Whether the user allowed a model's own Python code (`--trust-remote-code`)."""
    return os.environ.get(TRUST_ENV, "") not in ("", "0", "false")


def offline() -> bool:
    return any(os.environ.get(v, "").lower() in ("1", "true", "yes", "on")
               for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def hub_snapshot(name: str) -> Path:
    """The local folder of Hub model `name` (`org/name[@revision]`), fetched if need be; a
    FileNotFoundError with one line a user can act on when it cannot be had."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    repo, _, revision = name.partition("@")
    patterns = LOAD_FILES + (["*.py"] if trust_remote_code() else [])
    fetch = f"fetch it where the Hub is reachable (`hf download {repo}" + \
        (f" --revision {revision}" if revision else "") + "`), or give a local folder"
    try:
        folder = Path(snapshot_download(repo, revision=revision or None, allow_patterns=patterns))
        if not any(folder.glob("*.safetensors")) and not offline():
            folder = Path(snapshot_download(repo, revision=revision or None, allow_patterns=patterns + ["*.bin"]))
    except GatedRepoError:
        raise FileNotFoundError(f"model {name!r} is gated on the Hugging Face Hub: accept its terms on its page and "
                                "log in (`hf auth login`, or set $HF_TOKEN)") from None
    except RepositoryNotFoundError:
        raise FileNotFoundError(f"model {name!r} is neither a local folder nor a repository on the Hugging Face "
                                "Hub (private ones need `hf auth login` or $HF_TOKEN)") from None
    except RevisionNotFoundError:
        raise FileNotFoundError(f"model {name!r}: the repository has no revision {revision!r}") from None
    except LocalEntryNotFoundError:
        why = "offline mode is on (HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE)" if offline() else \
            "the Hugging Face Hub cannot be reached"
        raise FileNotFoundError(f"model {name!r} is not a local folder, not in the Hugging Face cache "
                                f"({_cache_dir()}), and {why}: {fetch}") from None
    except (HfHubHTTPError, OSError) as e:
        raise FileNotFoundError(f"model {name!r}: the Hugging Face Hub failed ({type(e).__name__}: "
                                f"{str(e).splitlines()[0] if str(e) else ''}); {fetch}") from None
    if not (folder / "config.json").exists():
        raise FileNotFoundError(f"model {name!r}: its snapshot ({folder}) has no config.json; it is not a "
                                "Hugging Face model ponder can load")
    return folder


def _cache_dir() -> str:
    from huggingface_hub.constants import HF_HUB_CACHE

    return str(HF_HUB_CACHE)
