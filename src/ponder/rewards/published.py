"""Published process reward models as ponder scorers: Math-Shepherd and Qwen2.5-Math-PRM.

A PRM someone else trained marks the end of each step with a token and reads its verdict
there; the formats differ in what the token is and how the verdict is read.

- **Math-Shepherd** (Wang et al. 2024, "Math-Shepherd: Verify and Reinforce LLMs
  Step-by-step without Human Annotations", arXiv:2312.08935; `peiyi9979/math-shepherd-mistral-7b-prm`):
  a plain causal LM. The input is the question, a space, then the steps one per line, each
  ending with a space and the step tag `ки` (the model card's layout):

      question step_1 ки\\nstep_2 ки\\n...step_K ки

  It was trained to predict `+` (a good step) or `-` (a bad one) in place of each tag, so a
  step's score is softmax over the logits of `+` and `-` at the tag's position (the logits
  that predict the next token), the probability of `+`.

- **Qwen2.5-Math-PRM** (Zhang et al. 2025, "The Lessons of Developing Process Reward Models
  in Mathematical Reasoning", arXiv:2501.07301; `Qwen/Qwen2.5-Math-PRM-7B`): a token
  classifier with 2 labels over a chat: system "Please reason step by step, and put your
  final answer within \\boxed{}.", user = the question, assistant = the steps, each followed
  by the separator `<extra_0>`. A step's score is softmax over the 2 logits at its
  separator, the probability of label 1. The published model is its own architecture
  (`Qwen2ForProcessRewardModel`, Python code in its repository), so it loads only under
  `--trust-remote-code`; a transformers `*ForTokenClassification` model in the same layout
  loads without.

Which format a folder holds (`load_published_prm`, called by `--scorer` for any folder that
is not a ponder reward model) is read from the folder itself, because the published
repositories carry nothing that names their format:

1. a `ponder_prm.json` in the folder decides, and may set the format's tokens, e.g.
   `{"format": "math_shepherd", "step_tag": "ки", "good_token": "+", "bad_token": "-"}` or
   `{"format": "qwen_prm", "separator": "<extra_0>"}` (both may set "aggregation");
2. else a config whose `architectures` holds a `*ForTokenClassification` or
   `*ProcessRewardModel` with 2 labels, and a tokenizer with `<extra_0>` as one token, is a
   Qwen2.5-Math-PRM;
3. else a causal LM whose tokenizer has the step tag `ки`, `+` and `-` each as one token
   is a Math-Shepherd PRM.

Anything else is one error naming the folder and the formats expected. Rule 3 cannot tell a
Math-Shepherd PRM from any causal LM whose vocabulary happens to hold `ки`: such a model
loads, and scores nonsense, only if a user names it as the scorer.

A step's own copies of the tag or separator are removed before encoding: the model reads
every one of them as the end of a step. A whole solution's score (`score_outcomes`) is the
minimum of its step scores by default, as both papers rank best-of-N solutions (Math-Shepherd
scores a solution by its weakest step; Zhang et al. study where that minimum falls).
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from ponder.models.hub import trust_remote_code
from ponder.rewards.base import AGGREGATIONS, Scorer, ScorerUsage, aggregate
from ponder.tasks.base import split_steps

FORMAT_FILE = "ponder_prm.json"
FORMATS = ("math_shepherd", "qwen_prm")
QWEN_SYSTEM = "Please reason step by step, and put your final answer within \\boxed{}."
EXPECTED = ("expected a ponder reward model (reward_config.json, from `ponder train-rm`), a Math-Shepherd PRM "
            "(a causal LM whose tokenizer has the step tag 'ки', '+' and '-' as single tokens) or a "
            "Qwen2.5-Math-PRM (a 2-label token classifier whose tokenizer has '<extra_0>' as one token)")


def single_token_id(tokenizer, text: str, role: str) -> int:
    """The id of `text` when the tokenizer reads it as exactly one known token; a ValueError
    naming the token otherwise (a score read at a token that is not there is meaningless)."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if len(ids) != 1 or ids[0] == tokenizer.unk_token_id:
        raise ValueError(f"the {role} {text!r} is not one token for this tokenizer (it reads as ids {ids})")
    return ids[0]


def spaced_token_id(tokenizer, text: str, role: str) -> int:
    """The id `text` has after a space in running text, where Math-Shepherd's layout puts
    its tag and where its `+`/`-` labels stood in training. Tokenizers differ there: a
    SentencePiece one (Mistral's) reads both `ки` and ` ки` as `▁ки`, a byte-level BPE reads
    ` ки` as `Ġки`, a character one as a space then `ки`. The token must be `text` alone (a
    space at most besides); a ValueError naming the token otherwise."""
    ids = tokenizer(f"1 {text}", add_special_tokens=False)["input_ids"]
    last = ids[-1] if ids else None
    alone = tokenizer(text, add_special_tokens=False)["input_ids"]
    if last is None or last == tokenizer.unk_token_id or \
            (alone != [last] and tokenizer.decode([last]).strip() != text):
        raise ValueError(f"the {role} {text!r} is not one token for this tokenizer (alone it reads as ids {alone}, "
                         f"after a space as {ids[-3:]})")
    return last


class PublishedPRM(Scorer):
    """What both formats share: batched, right-padded forwards in inference mode, the step
    scores read at the positions `encode` returns, and `usage` counting every token forwarded.
    A subclass says how a solution is laid out (`encode`) and how a verdict is read (`_probs`)."""

    def __init__(self, model, tokenizer, delimiter: str = "\n", aggregation: str = "min", batch_size: int = 16):
        if aggregation not in AGGREGATIONS:
            raise ValueError(f"unknown aggregation {aggregation!r}: expected one of {', '.join(AGGREGATIONS)}")
        self.model, self.tokenizer = model.eval(), tokenizer
        self.delimiter, self.aggregation, self.batch_size = delimiter, aggregation, batch_size
        self.usage = ScorerUsage()
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.pad_id = pad if pad is not None else 0

    def encode(self, prompt: str, steps: list[str]) -> tuple[list[int], list[int]]:
        """(token ids, position of each step's marker): what the model reads for one solution."""
        raise NotImplementedError

    def _probs(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
               positions: list[list[int]]) -> list[torch.Tensor]:
        """Per row, P(step correct) at its `positions`; input_ids (B, T) right-padded."""
        raise NotImplementedError

    def _marked(self, text: str, steps: list[str], marker: str, marker_id: int, special: bool):
        """Token ids of `text` (with the tokenizer's own special tokens if `special`) and the
        positions of `marker_id`, which must be one per step."""
        ids = self.tokenizer(text, add_special_tokens=special)["input_ids"]
        positions = [i for i, t in enumerate(ids) if t == marker_id]
        if len(positions) != len(steps):
            # The text holds no copy of the marker (removed by the caller), so the tokenizer merged one with
            # its neighbours: a position would be a guess.
            raise ValueError(f"{type(self).__name__}: the tokenizer merged the step marker {marker!r} with the "
                             f"text around it ({len(positions)} found for {len(steps)} steps) in {text[-120:]!r}")
        return ids, positions

    @torch.inference_mode()
    def score_steps(self, prompts: list[str], steps: list[list[str]]) -> list[list[float]]:
        encoded = [self.encode(p, s) for p, s in zip(prompts, steps, strict=True)]
        out: list[list[float]] = [[] for _ in encoded]
        # Longest first, so each batch pads little.
        order = sorted(range(len(encoded)), key=lambda i: -len(encoded[i][0]))
        device = next(self.model.parameters()).device
        for start in range(0, len(order), self.batch_size):
            idx = order[start:start + self.batch_size]
            T = max(len(encoded[i][0]) for i in idx)
            ids = torch.full((len(idx), T), self.pad_id, dtype=torch.long)
            mask = torch.zeros((len(idx), T), dtype=torch.long)
            for r, i in enumerate(idx):
                n = len(encoded[i][0])
                ids[r, :n] = torch.tensor(encoded[i][0])
                mask[r, :n] = 1
            probs = self._probs(ids.to(device), mask.to(device), [encoded[i][1] for i in idx])
            for r, i in enumerate(idx):
                out[i] = probs[r].float().cpu().tolist()
            self.usage.tokens += int(mask.sum())
        self.usage.calls += 1
        return out

    def split(self, completion: str) -> list[str]:
        """A completion's steps as this scorer reads them (the whole text if it has no delimiter)."""
        return split_steps(completion, self.delimiter) or [completion]

    def score_outcomes(self, prompts: list[str], completions: list[str]) -> list[float]:
        probs = self.score_steps(prompts, [self.split(c) for c in completions])
        return [aggregate(p, self.aggregation) for p in probs]


class MathShepherdPRM(PublishedPRM):
    """A causal LM read at step tags: P(good token) against the bad one (Wang et al. 2024)."""

    def __init__(self, model, tokenizer, step_tag: str = "ки", good_token: str = "+", bad_token: str = "-",
                 delimiter: str = "\n", aggregation: str = "min", batch_size: int = 16):
        super().__init__(model, tokenizer, delimiter, aggregation, batch_size)
        self.step_tag = step_tag
        self.tag_id, self.good_id, self.bad_id = self.token_ids(tokenizer, step_tag, good_token, bad_token)

    @staticmethod
    def token_ids(tokenizer, step_tag: str, good_token: str, bad_token: str) -> tuple[int, int, int]:
        """(tag, good, bad) ids; a ValueError naming the token that is not one token, or a tag
        the tokenizer does not keep whole after a step (it is found by its id in context)."""
        tag = spaced_token_id(tokenizer, step_tag, "step tag")
        good = spaced_token_id(tokenizer, good_token, "good token")
        bad = spaced_token_id(tokenizer, bad_token, "bad token")
        probe = tokenizer(f"1 {step_tag}\n2 {step_tag}", add_special_tokens=False)["input_ids"]
        if probe.count(tag) != 2:
            raise ValueError(f"the step tag {step_tag!r} is one token alone but not after a step's text "
                             f"(' {step_tag}' reads as {probe})")
        return tag, good, bad

    def encode(self, prompt: str, steps: list[str]) -> tuple[list[int], list[int]]:
        """The model card's layout: question, a space, then `step ки` lines."""
        clean = [s.replace(self.step_tag, "") for s in steps]
        text = prompt.replace(self.step_tag, "") + " " + "\n".join(f"{s} {self.step_tag}" for s in clean)
        # As the model card's `tokenizer.encode(text)`: with the tokenizer's special tokens (Mistral's BOS).
        return self._marked(text, clean, self.step_tag, self.tag_id, special=True)

    def _probs(self, input_ids, attention_mask, positions):
        # Only two logits per tag matter: run the body, then the LM head at the tags alone,
        # rather than materialising (B, T, vocab) logits (gigabytes for a 7B model's batch).
        hidden = self.model.base_model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        head = self.model.get_output_embeddings()
        out = []
        for r, pos in enumerate(positions):
            logits = head(hidden[r, pos])[:, [self.good_id, self.bad_id]].float()
            out.append(logits.softmax(-1)[:, 0])
        return out


class QwenPRM(PublishedPRM):
    """A 2-label token classifier read at `<extra_0>` separators after a chat (Zhang et al. 2025)."""

    def __init__(self, model, tokenizer, separator: str = "<extra_0>", system: str = QWEN_SYSTEM,
                 delimiter: str = "\n", aggregation: str = "min", batch_size: int = 16):
        super().__init__(model, tokenizer, delimiter, aggregation, batch_size)
        self.separator, self.system = separator, system
        self.sep_id = self.separator_id(tokenizer, separator)

    @staticmethod
    def separator_id(tokenizer, separator: str) -> int:
        """The separator's id; a ValueError when it is not one token or there is no chat
        template to lay the conversation out with."""
        if not getattr(tokenizer, "chat_template", None):
            raise ValueError("the tokenizer has no chat template (a Qwen2.5-Math-PRM reads a chat)")
        return single_token_id(tokenizer, separator, "step separator")

    def encode(self, prompt: str, steps: list[str]) -> tuple[list[int], list[int]]:
        """The model card's layout: system, user question, assistant `step<extra_0>...`."""
        clean = [s.replace(self.separator, "") for s in steps]
        messages = [{"role": "system", "content": self.system},
                    {"role": "user", "content": prompt.replace(self.separator, "")},
                    {"role": "assistant", "content": "".join(s + self.separator for s in clean)}]
        text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=False)
        # The templated string spells its own special tokens (ponder.models.load.encode_prompts).
        return self._marked(text, clean, self.separator, self.sep_id, special=False)

    def _probs(self, input_ids, attention_mask, positions):
        # out[0]: the logits (B, T, 2), whether a transformers ModelOutput or the remote code's tuple.
        logits = self.model(input_ids=input_ids, attention_mask=attention_mask)[0].float()
        return [logits[r, pos].softmax(-1)[:, 1] for r, pos in enumerate(positions)]


# -- loading ---------------------------------------------------------------------------------
def load_published_prm(path: str | Path, delimiter: str = "\n", aggregation: str | None = None) -> PublishedPRM:
    """The published PRM in folder `path` (format chosen as the module docstring says), in
    float32 and eval mode; a ValueError naming the folder and the formats expected when it
    is none of them."""
    from transformers import AutoTokenizer


    path = Path(path)
    if not (path / "config.json").is_file():
        raise ValueError(f"{path} is not a PRM ponder can read (no config.json): {EXPECTED}")
    config = _read_json(path / "config.json")
    declared = (path / FORMAT_FILE).exists()
    options = _read_json(path / FORMAT_FILE) if declared else {}
    fmt = options.pop("format", None)
    if declared and fmt not in FORMATS:
        raise ValueError(f"{path / FORMAT_FILE}: 'format' must be one of {', '.join(FORMATS)}, got {fmt!r}")
    allowed = {"math_shepherd": {"step_tag", "good_token", "bad_token"}, "qwen_prm": {"separator", "system"}}
    unknown = sorted(set(options) - allowed.get(fmt, set()) - {"aggregation"})
    if unknown:
        raise ValueError(f"{path / FORMAT_FILE}: unknown keys {unknown} for format {fmt!r}: expected "
                         f"{sorted(allowed[fmt] | {'aggregation'})}")
    file_aggregation = options.pop("aggregation", None)
    if file_aggregation is not None and file_aggregation not in AGGREGATIONS:
        raise ValueError(f"{path / FORMAT_FILE}: 'aggregation' must be one of {', '.join(AGGREGATIONS)}, "
                         f"got {file_aggregation!r}")
    aggregation = aggregation or file_aggregation or "min"  # an explicit argument wins over the file
    try:
        tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code())
    except (OSError, ValueError) as e:
        raise ValueError(f"{path} is not a PRM ponder can read (its tokenizer does not load: "
                         f"{str(e).splitlines()[0] if str(e) else type(e).__name__}): {EXPECTED}") from None

    # The format: declared, else guessed from the architecture. Its tokens are checked before
    # any weights load, so a folder of neither format costs a tokenizer load, not a 7B model's.
    archs = config.get("architectures") or []
    classifier = any("ForTokenClassification" in a or "ProcessRewardModel" in a for a in archs)
    causal = not archs or any(a.endswith(("ForCausalLM", "LMHeadModel")) for a in archs)
    if fmt is None:
        if not (classifier or causal):
            raise ValueError(f"{path} is not a PRM ponder can read (architectures {'/'.join(archs)}): {EXPECTED}")
        fmt = "qwen_prm" if classifier else "math_shepherd"
    try:
        if fmt == "qwen_prm":
            labels = len(config["id2label"]) if config.get("id2label") else config.get("num_labels", 2)
            if labels != 2:
                raise ValueError(f"the classifier has {labels} labels, not 2")
            QwenPRM.separator_id(tokenizer, options.get("separator", "<extra_0>"))
        else:
            MathShepherdPRM.token_ids(tokenizer, options.get("step_tag", "ки"), options.get("good_token", "+"),
                                      options.get("bad_token", "-"))
    except ValueError as e:
        if declared:
            raise ValueError(f"{path}: {FORMAT_FILE} says {fmt!r}, but {e}") from None
        kind = "a token classifier" if classifier else "a causal LM"
        raise ValueError(f"{path} is not a PRM ponder can read ({kind}, but {e}): {EXPECTED}") from None

    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    if fmt == "qwen_prm":
        remote = any("ProcessRewardModel" in a for a in archs)
        if remote and not trust_remote_code():
            raise ValueError(f"{path} is a Qwen2.5-Math-PRM whose architecture ({'/'.join(archs)}) is the model's own "
                             "code: pass --trust-remote-code (or set PONDER_TRUST_REMOTE_CODE=1) to run it")
        from transformers import AutoModel, AutoModelForTokenClassification

        # The published model registers itself under AutoModel (its config's auto_map), as its card loads it.
        model = _from_pretrained(AutoModel if remote else AutoModelForTokenClassification, path)
        return QwenPRM(model, tokenizer, delimiter=delimiter, aggregation=aggregation, **options)
    from transformers import AutoModelForCausalLM

    model = _from_pretrained(AutoModelForCausalLM, path)
    return MathShepherdPRM(model, tokenizer, delimiter=delimiter, aggregation=aggregation, **options)


def _read_json(file: Path) -> dict:
    try:
        data = json.loads(file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{file}: not readable JSON ({e})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{file}: expected a JSON object, got {type(data).__name__}")
    return data


def _from_pretrained(auto_class, path: Path):
    """The model in float32; a ValueError when weights of it are missing from the folder, since
    transformers would fill them at random and every score would be noise."""
    model, info = auto_class.from_pretrained(path, dtype=torch.float32, trust_remote_code=trust_remote_code(),
                                             output_loading_info=True)
    missing = info.get("missing_keys") or []
    if missing:
        raise ValueError(f"{path}: {len(missing)} weights of {type(model).__name__} are not in the folder "
                         f"(e.g. {sorted(missing)[0]}); it is not a complete PRM in this format")
    return model.eval()
