"""`POST /update_weights_from_disk`: new weights from a checkpoint folder into the engine.

SGLang's name and body (`{"model_path": DIR}`), so an RL trainer that syncs an SGLang server
this way syncs a ponder server too: it saves its model (`save_pretrained`), posts the
folder, and the next requests sample from the new weights.

The folder holds `model.safetensors`, or shards listed by `model.safetensors.index.json`.
Every tensor is checked against the served model's parameters (name and shape) before the
first one is pushed with `engine.update_weights`, so a checkpoint of another architecture
is refused whole and never leaves the model half updated.
"""
from __future__ import annotations

import json
from pathlib import Path

from ponder.serve.protocol import bad

SINGLE, INDEX = "model.safetensors", "model.safetensors.index.json"


def read_checkpoint(model_path) -> dict:
    """Parameter name -> tensor of the safetensors weights in the folder `model_path`."""
    from safetensors.torch import load_file

    if not isinstance(model_path, str) or not model_path:
        raise bad("model_path", f"'model_path' must be a folder holding {SINGLE} (or shards listed by {INDEX}), "
                                f"got {model_path!r}")
    folder = Path(model_path)
    if not folder.is_dir():
        raise bad("model_path", f"'model_path': {folder} is not a folder on the server")
    if (folder / INDEX).exists():
        try:
            shards = sorted(set(json.loads((folder / INDEX).read_text())["weight_map"].values()))
        except (ValueError, KeyError) as e:
            raise bad("model_path", f"'model_path': {folder / INDEX} is not a safetensors index ({e})") from None
    elif (folder / SINGLE).exists():
        shards = [SINGLE]
    else:
        raise bad("model_path", f"'model_path': {folder} holds neither {SINGLE} nor {INDEX}")
    tensors = {}
    for shard in shards:
        try:
            tensors.update(load_file(str(folder / shard)))
        except Exception as e:  # a missing or corrupt shard
            raise bad("model_path", f"'model_path': cannot read {folder / shard}: {e}") from None
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
