"""The tensors of an RL batch and the policy forward over them.

Layout (verl's): every row is a left-padded prompt followed by a right-padded response,

    input_ids       (B, P + T)   prompt tokens end at column P - 1 in every row
    attention_mask  (B, P + T)   0 on padding
    position_ids    (B, P + T)   cumsum of the mask, so padding does not shift positions
    response        (B, T)       the sampled tokens (EOS included when the sample ended on it)
    mask            (B, T)       1 on response tokens that count in the loss

so the logits at columns P - 1 ... P + T - 2 score the response tokens, and every per-token
quantity (log-probs, advantages, values) is a (B, T) tensor aligned with `response`.
"""
from __future__ import annotations

import inspect

import torch

from ponder.generation.prefill import left_pad
from ponder.generation.stops import IncrementalDetokenizer


class ActorCritic(torch.nn.Module):
    """The policy plus a scalar value head on its last hidden state (PPO's critic).

    The critic shares the policy's trunk: the values are a linear read-out of the policy's own
    last hidden state, and the value loss (`vf_coef` * value_loss) back-propagates into the
    policy's weights along with the policy loss. verl and OpenRLHF instead train a separate
    critic model (its own transformer, initialised from the policy or the reward model, its own
    optimiser), so value learning never moves the policy. Sharing is a deliberate
    simplification here (one model in memory, one forward); see gae_advantages."""

    def __init__(self, policy: torch.nn.Module):
        super().__init__()
        self.policy = policy
        self.value_head = torch.nn.Linear(policy.config.hidden_size, 1)
        torch.nn.init.zeros_(self.value_head.weight)
        torch.nn.init.zeros_(self.value_head.bias)


def rollout_batch(rows: list[dict], pad_id: int) -> dict:
    """A rollout's rows (each with `prompt_ids` and its `sample`) as the trainer's tensors, on
    the CPU: `input_ids` (B, P + T) with left-padded prompts of P tokens and right-padded
    responses of T tokens, `attention_mask`, `position_ids`, `response` and `mask` (B, T), and
    `rollout_logp` (B, T), the sampler's log-probabilities, when the engine returned them all
    (a hosted API may not)."""
    ids, attn = left_pad([x["prompt_ids"] for x in rows], pad_id, torch.device("cpu"))
    P = ids.shape[1]
    T = max(len(x["sample"].token_ids) for x in rows)
    response = torch.full((len(rows), T), pad_id, dtype=torch.long)
    mask = torch.zeros(len(rows), T)
    sampler = torch.zeros(len(rows), T) if all(x["sample"].logprobs is not None for x in rows) else None
    for i, x in enumerate(rows):
        t = x["sample"].token_ids
        response[i, :len(t)] = torch.tensor(t, dtype=torch.long)
        mask[i, :len(t)] = 1.0
        if sampler is not None:
            sampler[i, :len(t)] = torch.tensor(x["sample"].logprobs[:len(t)], dtype=torch.float32)
    attention = torch.cat([attn, mask.long()], dim=1)
    positions = (attention.cumsum(-1) - 1).clamp(min=0)
    batch = {"input_ids": torch.cat([ids, response], dim=1), "attention_mask": attention,
             "position_ids": positions, "response": response, "mask": mask, "prompt_len": P}
    if sampler is not None:
        batch["rollout_logp"] = sampler
    return batch


def response_logprobs(model, batch: dict, temperature: float, with_values: bool = False):
    """Log-probabilities (B, T) and entropies (B, T) of the response tokens, and values (B, T)
    when `model` is an `ActorCritic` and `with_values`. batch: `input_ids` (B, P + T) with
    left-padded prompts of P tokens and right-padded responses of T tokens."""
    critic = model if isinstance(model, ActorCritic) else None
    policy = critic.policy if critic is not None else model
    P, T = batch["prompt_len"], batch["response"].shape[1]
    logits = None if with_values else shared_prompt_logits(policy, batch)
    if logits is None:
        kwargs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"],
                  "position_ids": batch["position_ids"], "use_cache": False}
        if with_values:
            kwargs["output_hidden_states"] = True
        else:
            kwargs["logits_to_keep"] = T + 1
        out = policy(**kwargs)
        logits = out.logits[:, -(T + 1):-1]  # position P-1+t predicts response token t
    logits = logits.float() / temperature
    logp_all = torch.log_softmax(logits, dim=-1)
    logp = logp_all.gather(-1, batch["response"].unsqueeze(-1)).squeeze(-1)
    entropy = -(logp_all.exp() * logp_all).sum(-1)
    values = None
    if with_values and critic is not None:
        h = out.hidden_states[-1][:, P - 1:P - 1 + T]
        values = critic.value_head(h).squeeze(-1).float()
    return logp, entropy, values


def shared_prompt_logits(policy, batch: dict) -> torch.Tensor | None:
    """The (B, T, V) logits that score the response tokens, with each distinct prompt run
    through the model once rather than once per sample: the prompt's keys and values (with
    their autograd graph) are computed for the distinct prompts, repeated to the rows that share
    them, and the responses are forwarded on top. The same numbers as one forward over the full
    rows, with the G-fold prompt compute of a GRPO group paid once. None when no two rows share
    a prompt (nothing to save)."""
    from transformers import DynamicCache

    P, T = batch["prompt_len"], batch["response"].shape[1]
    prompts = batch["input_ids"][:, :P]
    distinct, inverse = torch.unique(prompts, dim=0, return_inverse=True)
    if distinct.shape[0] == prompts.shape[0]:
        return None
    first = torch.zeros(distinct.shape[0], dtype=torch.long, device=prompts.device)
    # any row holding the prompt: equal prompts, equal padding
    first[inverse] = torch.arange(prompts.shape[0], device=prompts.device)
    cache_arg = "cache" if "cache" in inspect.signature(policy.forward).parameters else "past_key_values"
    cache = DynamicCache(config=policy.config)
    head = policy(input_ids=prompts[first], attention_mask=batch["attention_mask"][first, :P],
                  position_ids=batch["position_ids"][first, :P], use_cache=True, logits_to_keep=1,
                  **{cache_arg: cache})
    first_logits = head.logits[:, -1].index_select(0, inverse).unsqueeze(1)  # predicts response token 0
    if T == 1:
        return first_logits
    cache.reorder_cache(inverse)  # index_select along the batch: differentiable
    tail = policy(input_ids=batch["input_ids"][:, P:P + T - 1], attention_mask=batch["attention_mask"][:, :P + T - 1],
                  position_ids=batch["position_ids"][:, P:P + T - 1], use_cache=True, **{cache_arg: cache})
    return torch.cat([first_logits, tail.logits], dim=1)


def step_token_ends(tokenizer, token_ids: list[int], text: str, delimiter: str,
                    prompt_ids: list[int] | None = None) -> tuple[list[str], list[int]]:
    """The non-blank steps of `text` and, for each, the index of the response token at which it
    ends (the first token whose decoded prefix covers the step's last character).

    The prefixes are decoded after `prompt_ids` (the prompt the response continues), with the
    engine's own incremental detokenizer (generation/stops.py), so their lengths count the
    characters of `text` as the engine produced it. Decoded alone, a response's first token can
    lose characters: SentencePiece/Metaspace tokenizers (Llama 2, Mistral, Gemma) drop the
    leading space of the first token of a decode ("▁Step" -> "Step", but " Step" after the
    prompt), which would shift every step end one token late. Without `prompt_ids` the
    response is decoded from its start, which is exact only for tokenizers without that rule
    (character-level, byte-level BPE)."""
    ends_chars, steps, pos = [], [], 0
    for piece in text.split(delimiter):
        if piece.strip():
            steps.append(piece)
            ends_chars.append(pos + len(piece.rstrip()))
        pos += len(piece) + len(delimiter)
    if not steps:
        return [], []
    detok = IncrementalDetokenizer(tokenizer, list(prompt_ids or []))
    covered = []  # covered[k]: characters of the response decoded once token k is in
    for t in token_ids:
        detok.push(t)
        covered.append(len(detok.text))
    ends = []
    for c in ends_chars:
        k = next((i for i, n in enumerate(covered) if n >= c), len(token_ids) - 1)
        ends.append(k)
    return steps, ends


def drop_zero_rows(mb: dict) -> dict:
    """The mini-batch without rows whose advantages are all zero (GRPO groups that were all
    right or all wrong), trimmed to the columns the remaining rows use. Their loss and
    gradient are exactly zero, so leaving them out changes nothing but the compute, as long as
    the loss keeps the full batch's denominators (`num_tokens`, `num_seqs`). One row is kept
    when all are zero, so the loss still has a graph; a mini-batch without rows is returned as
    it is."""
    if mb["mask"].shape[0] == 0:
        return mb
    live = ((mb["advantages"] != 0) & (mb["mask"] > 0)).any(-1)
    rows = live.nonzero().squeeze(-1)
    if rows.numel() == 0:
        rows = torch.zeros(1, dtype=torch.long)
    P = mb["prompt_len"]
    out = {k: (v[rows] if torch.is_tensor(v) else v) for k, v in mb.items()}
    t_keep = max(1, int(out["mask"].sum(-1).max()))
    p_start = int((out["attention_mask"][:, :P].sum(0) == 0).sum())  # prompt columns that are padding in every row
    for k in ("input_ids", "attention_mask", "position_ids"):
        out[k] = out[k][:, p_start:P + t_keep]
    for k in ("response", "mask", "advantages", "old_logp", "ref_logp", "returns", "old_values", "rollout_logp"):
        if k in out:
            out[k] = out[k][:, :t_keep]
    out["prompt_len"] = P - p_start
    return out


