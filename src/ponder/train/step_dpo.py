"""Step-DPO pairs (Lai et al. 2024, "Step-DPO: Step-wise Preference Optimization for
Long-chain Reasoning of LLMs", §3): preferences over single reasoning steps, built from the
model's own solutions and labelled by the task's exact step checker.

For a sampled solution whose first wrong step is k, the pair is

    context  = the question, then the correct steps s_1..s_{k-1}   (x and s_{1~k-1} in §3)
    rejected = the wrong step s_k                                  (s_lose)
    chosen   = a correct step after the same prefix                 (s_win)

and DPO's loss (train/dpo.py) is applied to the two steps given the context, so the gradient
points at the exact step that went wrong. Lai et al. find s_k by asking GPT-4 (or people)
and sample s_win from the model until one reaches the right answer; here both come from the
task: `check_steps` locates s_k exactly and `next_step` constructs s_win, so every pair is
right by construction (a deliberate simplification for tasks whose steps can be checked).

The context's steps are part of the assistant's answer, not of the question: on a chat model
the sequence is `chat(question)` (the template applied to the user turn, assistant header
opened) followed by the steps' tokens, exactly as search and annotation continue a partial
solution (annotate/rollouts.py). Rows on disk use TRL's conversational convention for a
prompt that ends inside the assistant turn - a trailing assistant message, which TRL
continues (`continue_final_message`) instead of opening a new turn:

    {"prompt": [{"role": "user", "content": "Compute 7*5-2. ..."},
                {"role": "assistant", "content": "35-2\n"}],
     "chosen": "33\n", "rejected": "34\n"}

`chosen` and `rejected` are plain text continuing that assistant message (TRL writes
completions as assistant messages, which it would render as a new turn). With no correct
prefix (the first step is wrong) the prompt is the user message alone.
"""
from __future__ import annotations

from ponder.generation.base import Generator, SamplingParams
from ponder.tasks.base import Problem, Task


def step_dpo_row(question: str, prefix: str, chosen: str, rejected: str) -> dict:
    """A preference row whose context is `question` (the user turn) followed by `prefix`
    (the start of the assistant turn, "" for none)."""
    prompt = [{"role": "user", "content": question}]
    if prefix:
        prompt.append({"role": "assistant", "content": prefix})
    return {"prompt": prompt, "chosen": chosen, "rejected": rejected}


def step_dpo_pairs(task: Task, problems: list[Problem], generator: Generator, samples: int = 4,
                   temperature: float = 1.0, max_tokens: int = 128, seed: int = 0) -> list[dict]:
    """Step-DPO rows from `samples` sampled solutions per problem: for each solution with a
    wrong step k, the row (question + steps[:k], chosen = `task.next_step(problem,
    steps[:k])`, rejected = steps[k]). Solutions without an error give no row, nor do those
    whose wrong step reads like the chosen one once spaces are removed; duplicates are kept
    once. Needs a task with `check_steps` and `next_step`."""
    if not (task.has_step_checker and task.has_next_step):
        missing = " and ".join(m for m, ok in (("check_steps", task.has_step_checker),
                                                ("next_step", task.has_next_step)) if not ok)
        raise ValueError(f"building Step-DPO pairs needs a task that checks and constructs steps; task "
                         f"{task.name!r} has no {missing}: pass a preference file (--data) instead")
    delim = task.step_delimiter
    prompts = [task.prompt(p) for p in problems]
    outs = generator.generate(prompts, SamplingParams(n=samples, temperature=temperature, max_tokens=max_tokens,
                                                      seed=seed))
    rows, seen = [], set()
    for problem, prompt, group in zip(problems, prompts, outs):
        for sample in group:
            steps = task.split_steps(sample.text)
            k = task.check_steps(problem, steps).first_error
            if k is None:
                continue
            chosen = task.next_step(problem, steps[:k])
            if chosen is None or chosen.replace(" ", "") == steps[k].replace(" ", ""):
                continue
            prefix = "".join(s + delim for s in steps[:k])
            key = (prompt, prefix, steps[k])
            if key not in seen:
                seen.add(key)
                rows.append(step_dpo_row(prompt, prefix, chosen + delim, steps[k] + delim))
    return rows
