"""Expert iteration (STaR, Zelikman et al. 2022; ReST-EM, Singh et al. 2023).

Each round: sample `samples` solutions per training problem from the current model, keep the
ones the task's verifier accepts (the E-step: a filtered, reward-weighted dataset with binary
rewards), fine-tune on them with the SFT loss (the M-step), and report greedy accuracy on
held-out problems. Rounds draw fresh problems (round r uses slice r of the training draw).

ReST-EM fine-tunes the *base* model each round to limit overfitting; with `from_base: false`
(the default here) each round continues from the previous round's model, which learns more per
step on tiny budgets. A round's model is saved under round_<r>/model; a rerun skips finished
rounds, so a killed run resumes at the round it was in (and that round's SFT resumes from its
checkpoint).
"""
from __future__ import annotations


def verified_rows(task, problems, outs) -> tuple[list[dict], int]:
    """Prompt-completion rows of the correct samples (each distinct solution once), and how
    many samples there were."""
    rows, seen, total = [], set(), 0
    for p, group in zip(problems, outs):
        for s in group:
            total += 1
            if task.is_correct(p, s.text) and (p.id, s.text) not in seen:
                seen.add((p.id, s.text))
                rows.append({"prompt": task.prompt(p), "completion": s.text})
    return rows, total
