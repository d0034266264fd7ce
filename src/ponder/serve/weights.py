"""`POST /update_weights_from_disk`: new weights from a checkpoint folder into the engine.

SGLang's name and body (`{"model_path": DIR}`), so an RL trainer that syncs an SGLang server
this way syncs a ponder server too: it saves its model (`save_pretrained`), posts the
folder, and the next requests sample from the new weights.

The folder holds `model.safetensors`, or shards listed by `model.safetensors.index.json`.
Every tensor is checked against the served model's parameters (name and shape) before the
first one is pushed with `engine.update_weights`, so a checkpoint of another architecture
is refused whole and never leaves the model half updated.

Only folders inside the one the server was started with (`--allow-weight-updates DIR`) are
read, and every shard an index names must lie inside the folder too (links resolved), so a
request can make the server open no other file. Errors name the folder as the client gave
it, and say the same for a folder outside DIR whether or not it exists.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from ponder.serve.protocol import APIError, bad

SINGLE, INDEX = "model.safetensors", "model.safetensors.index.json"


def read_checkpoint(model_path, allowed: str | None) -> dict:
    """Parameter name -> tensor of the safetensors weights in the folder `model_path`, which
    must lie inside `allowed` (None: weight updates are off, a 403)."""
    from safetensors.torch import load_file

    if allowed is None:
        raise APIError(403, "weight updates are off on this server: start ponder serve with "
                            "--allow-weight-updates DIR to load new weights from folders inside DIR",
                       code="weight_updates_disabled")
    if not isinstance(model_path, str) or not model_path:
        raise bad("model_path", f"'model_path' must be a folder holding {SINGLE} (or shards listed by {INDEX}), "
                                f"got {model_path!r}")
    root = Path(os.path.realpath(allowed))
    folder = Path(os.path.realpath(root / model_path))  # an absolute model_path replaces root
    if not folder.is_relative_to(root) or not folder.is_dir():
        raise bad("model_path", f"'model_path' {model_path!r} is not a folder inside the one this server loads "
                                "weights from (--allow-weight-updates)")
    if (folder / INDEX).is_file():
        if not Path(os.path.realpath(folder / INDEX)).is_relative_to(folder):
            raise bad("model_path", f"'model_path': its {INDEX} is a link out of the folder; no weights were changed")
        try:
            shards = sorted(set(json.loads((folder / INDEX).read_text())["weight_map"].values()))
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise bad("model_path", f"'model_path': its {INDEX} is not a safetensors index ({e})") from None
    elif (folder / SINGLE).is_file():
        shards = [SINGLE]
    else:
        raise bad("model_path", f"'model_path' {model_path!r} holds neither {SINGLE} nor {INDEX}")
    tensors = {}
    for shard in shards:
        if not isinstance(shard, str) or not Path(os.path.realpath(folder / shard)).is_relative_to(folder):
            raise bad("model_path", f"'model_path': its {INDEX} names {shard!r}, which is not a file inside the "
                                    "folder; no weights were changed")
        try:
            tensors.update(load_file(str(folder / shard)))
        except Exception as e:  # a missing or corrupt shard; the library's message may carry the server path
            raise bad("model_path", f"'model_path': cannot read its shard {shard!r} ({type(e).__name__}); "
                                    "no weights were changed") from None
    return tensors


def check_fits(tensors: dict, model) -> None:
    """A 400 naming the first tensor that the served model has no place for."""
    own = {name: p.shape for name, p in model.named_parameters()}
    own.update({name: b.shape for name, b in model.named_buffers()})
    tied = getattr(model.config, "tie_word_embeddings", False)
    for name, tensor in tensors.items():
        if name not in own:
            if name == "lm_head.weight" and tied:
                continue  # tied to the input embedding
            raise bad("model_path", f"'model_path': the checkpoint has {name!r}, which the served model lacks "
                                    "(another architecture?); no weights were changed")
        if tuple(tensor.shape) != tuple(own[name]):
            raise bad("model_path", f"'model_path': {name!r} has shape {tuple(tensor.shape)} in the checkpoint "
                                    f"but {tuple(own[name])} in the served model; no weights were changed")
