"""Evaluation recipes: GSM8K and MATH-500 prompted and scored as published numbers are.

ponder's file tasks ask in ponder's own words ("Solve it step by step, one step per line,
then write 'Answer: <answer>'"), which is right for models trained here and wrong for
comparing a pretrained model with its model card. A recipe is a task whose prompt and answer
extraction are the ones a published evaluation used; the rows are read exactly as the file
and Hub tasks read them (`FileTask`, `HubDatasetTask`: same problems, same ids, same gold).

- `gsm8k_cot` (Cobbe et al. 2021, "Training Verifiers to Solve Math Word Problems"):
  - `shots=8` (the default) is the 8-shot chain-of-thought prompt of Wei et al. 2022,
    "Chain-of-Thought Prompting Elicits Reasoning in Large Language Models" (Table 20), as
    lm-evaluation-harness's `gsm8k_cot` task builds it (lm_eval/tasks/gsm8k/gsm8k-cot.yaml):
    "Q: <question>\\nA: <chain of thought> The answer is N." blocks joined by a blank line,
    then "Q: <question>\\nA:". 1-7 take the first exemplars, as lm-eval's `first_n` sampler
    does. The answer is the last "The answer is N" (lm-eval's "strict-match"), else the
    last number ("flexible-extract").
  - `shots=0` is the zero-shot chat prompt instruct models are evaluated with: the question,
    then "Please reason step by step, and put your final answer within \\boxed{}." (the
    instruction of Qwen2.5-Math's evaluation, `qwen25-math-cot`, and of DeepSeek-R1's model
    card, which asks for it in the user turn). The answer is the last \\boxed{}, else the last
    number.
  The gold answer is GSM8K's `#### N`; answers compare as numbers (`answers_equal`).
- `math500`: MATH-500, the 500-problem test subset of MATH (Hendrycks et al. 2021) chosen by
  Lightman et al. 2023, "Let's Verify Step by Step" (`HuggingFaceH4/MATH-500`: `problem`,
  `solution`, `answer`, `subject`, `level`, `unique_id`). Prompt: the problem, then the same
  \\boxed{} instruction; the answer is the last \\boxed{} of the completion and nothing else (a
  "last number" guess is wrong more often than right on MATH), compared with the gold
  `answer` by math-verify. `level` is the difficulty. It is a test set: no `train` split.

Both read `path=`: `hf:<org/name>[:<config>]` or a `save_to_disk` folder through
ponder.tasks.hub_data (the defaults, `hf:openai/gsm8k:main` and `hf:HuggingFaceH4/MATH-500`,
so `--task gsm8k_cot` works wherever the Hub or a cache has the dataset; a missing one is the
hub loader's one-line error), or a local JSONL/Parquet file or folder of such rows.

The chat template: a task's prompt is a *user text*, and ponder's engines wrap a user text in
the model's chat template when it has one (`format_prompt`, ponder.models.load). So a base
model continues the few-shot text right after its final "A:", and an instruct model gets the
exemplars and the question as one user message and answers as the assistant — what
lm-evaluation-harness's `--apply_chat_template` does (without `--fewshot_as_multiturn`).

Stop strings: published few-shot runs stop generation at "Q:" (lm-eval's `until`), because a
base model goes on to invent the next question. The task contract has no way to hand stop
strings to the engine (`ponder eval` samples with none), so extraction does the stopping: it
reads only the text before the first "Q:", as if generation had stopped there. Scores match;
only the tokens spent after the answer are counted where lm-eval would not spend them.

`Problem.meta["steps"]` keeps the reference solution (GSM8K's worked lines, MATH's solution
lines), with GSM8K's last line written in the recipe's answer format, so SFT on the train
split with `gsm8k_cot` teaches the format the recipe reads.
"""
from __future__ import annotations

import re
from dataclasses import replace

from ponder.tasks.answers import answers_equal, extract_boxed, last_number
from ponder.tasks.base import Problem, Task, register_task
from ponder.tasks.files import DatasetError, FileTask
from ponder.tasks.hub_data import PREFIX, HubDatasetTask, is_saved_dataset

BOXED_INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."

# Wei et al. 2022, Table 20: the eight chain-of-thought exemplars for math word problems, as
# lm-evaluation-harness's gsm8k_cot task holds them (lm_eval/tasks/gsm8k/gsm8k-cot.yaml).
# (question, answer); every answer ends "The answer is N.".
GSM8K_COT_EXEMPLARS: tuple[tuple[str, str], ...] = (
    ("There are 15 trees in the grove. Grove workers will plant trees in the grove today. After they are done, "
     "there will be 21 trees. How many trees did the grove workers plant today?",
     "There are 15 trees originally. Then there were 21 trees after some more were planted. So there must have "
     "been 21 - 15 = 6. The answer is 6."),
    ("If there are 3 cars in the parking lot and 2 more cars arrive, how many cars are in the parking lot?",
     "There are originally 3 cars. 2 more cars arrive. 3 + 2 = 5. The answer is 5."),
    ("Leah had 32 chocolates and her sister had 42. If they ate 35, how many pieces do they have left in total?",
     "Originally, Leah had 32 chocolates. Her sister had 42. So in total they had 32 + 42 = 74. After eating 35, "
     "they had 74 - 35 = 39. The answer is 39."),
    ("Jason had 20 lollipops. He gave Denny some lollipops. Now Jason has 12 lollipops. How many lollipops did "
     "Jason give to Denny?",
     "Jason started with 20 lollipops. Then he had 12 after giving some to Denny. So he gave Denny 20 - 12 = 8. "
     "The answer is 8."),
    ("Shawn has five toys. For Christmas, he got two toys each from his mom and dad. How many toys does he have "
     "now?",
     "Shawn started with 5 toys. If he got 2 toys each from his mom and dad, then that is 4 more toys. 5 + 4 = 9. "
     "The answer is 9."),
    ("There were nine computers in the server room. Five more computers were installed each day, from monday to "
     "thursday. How many computers are now in the server room?",
     "There were originally 9 computers. For each of 4 days, 5 more computers were added. So 5 * 4 = 20 "
     "computers were added. 9 + 20 is 29. The answer is 29."),
    ("Michael had 58 golf balls. On tuesday, he lost 23 golf balls. On wednesday, he lost 2 more. How many golf "
     "balls did he have at the end of wednesday?",
     "Michael started with 58 golf balls. After losing 23 on tuesday, he had 58 - 23 = 35. After losing 2 more, "
     "he had 35 - 2 = 33 golf balls. The answer is 33."),
    ("Olivia has $23. She bought five bagels for $3 each. How much money does she have left?",
     "Olivia had 23 dollars. 5 bagels for 3 dollars each will be 5 x 3 = 15 dollars. So she has 23 - 15 dollars "
     "left. 23 - 15 is 8. The answer is 8."),
)

# lm-eval's strict-match is `The answer is (\-?[0-9\.\,]+).`; a "$" before the number is
# allowed here too, since models copy the dollar signs of the questions ("The answer is $1,080.").
_THE_ANSWER_IS = re.compile(r"The answer is:?\s*\\?\$?\s*(-?[0-9][0-9,]*(?:\.[0-9]+)?)", re.IGNORECASE)
# Where lm-eval's few-shot generation stops (`until: ["Q:", ...]`).
_NEXT_QUESTION = "Q:"


def open_rows(path: str, format: str, id_key: str | None = None, name: str | None = None) -> FileTask:
    """The task that reads a recipe's rows from `path`: a Hub name (`hf:...`) or a
    `save_to_disk` folder through ponder.tasks.hub_data, anything else as files."""
    path = str(path)
    if path.startswith(PREFIX) or is_saved_dataset(path):
        return HubDatasetTask(path, format=format, id_key=id_key, name=name)
    return FileTask(path, format=format, id_key=id_key, name=name)


@register_task("gsm8k_cot")
class GSM8KCoT(Task):
    """GSM8K as published evaluations prompt it. `shots`: 8 (Wei et al. 2022's exemplars,
    "Q: ... A: ... The answer is N.") down to 1, or 0 for the zero-shot \\boxed{} chat prompt.
    `path`: `hf:openai/gsm8k:main` (default), a saved dataset folder, or GSM8K JSONL/Parquet
    (a file, or a folder of train/test files)."""

    def __init__(self, path: str = "hf:openai/gsm8k:main", shots: int = 8):
        if isinstance(shots, bool) or not isinstance(shots, int) or not 0 <= shots <= len(GSM8K_COT_EXEMPLARS):
            raise ValueError(
                f"task 'gsm8k_cot': shots must be a whole number from 0 (zero-shot, answer in \\boxed{{}}) to "
                f"{len(GSM8K_COT_EXEMPLARS)} (Wei et al. 2022's chain-of-thought exemplars), got {shots!r}"
            )
        self.shots = shots
        # name "gsm8k": the same rows get the same problem ids as the `gsm8k` task, so results
        # under the two prompts line up problem by problem
        self.rows = open_rows(path, "gsm8k", name="gsm8k")

    def problems(self, split: str = "test", n: int | None = None, seed: int = 0) -> list[Problem]:
        out = []
        for p in self.rows.problems(split, n=n, seed=seed):
            # gsm8k_row ends the steps with ponder's "Answer: N"; write the recipe's format
            steps = p.meta["steps"][:-1] + [self._final_line(p.answer)]
            out.append(replace(p, meta={**p.meta, "steps": steps}))
        return out

    def _final_line(self, answer: str) -> str:
        return f"The answer is {answer}." if self.shots else f"The answer is \\boxed{{{answer}}}."

    def prompt(self, problem: Problem) -> str:
        if self.shots == 0:
            return f"{problem.question}\n{BOXED_INSTRUCTION}"
        blocks = [f"Q: {q}\nA: {a}" for q, a in GSM8K_COT_EXEMPLARS[: self.shots]]
        return "\n\n".join(blocks + [f"Q: {problem.question}\nA:"])

    def extract_answer(self, text: str) -> str | None:
        if text is None:
            return None
        if self.shots == 0:
            return extract_boxed(text) or last_number(text)
        text = text.split(_NEXT_QUESTION, 1)[0]  # where generation would have stopped
        found = _THE_ANSWER_IS.findall(text)
        return found[-1].replace(",", "") if found else last_number(text)

    def is_correct(self, problem: Problem, text: str) -> bool:
        return answers_equal(self.extract_answer(text), problem.answer)


@register_task("math500")
class MATH500(Task):
    """MATH-500 (Lightman et al. 2023) with the \\boxed{} chat prompt, scored by math-verify.
    `path`: `hf:HuggingFaceH4/MATH-500` (default), a saved dataset folder, or a JSONL/Parquet
    file of its rows (`problem`, `solution`, `answer`, `level`, `subject`, `unique_id`)."""

    def __init__(self, path: str = "hf:HuggingFaceH4/MATH-500"):
        self.source = str(path)
        # MATH-500's problem ids are its `unique_id`s ("test/precalculus/807.json"), which
        # name the MATH test problem each one is
        self.rows = open_rows(path, "math", id_key="unique_id", name="math500")

    def problems(self, split: str = "test", n: int | None = None, seed: int = 0) -> list[Problem]:
        # A single local file serves every split a file task is asked for; here that would
        # train on the test set, so any other split is refused whatever the source.
        if split != "test":
            raise DatasetError(
                f"task 'math500' ({self.source}): no {split!r} split: MATH-500 is a test set (the 500 MATH "
                "test problems of Lightman et al. 2023) and has only 'test'; to train, use MATH's train "
                "split as a file task (--task <MATH train .jsonl>)"
            )
        return self.rows.problems(split, n=n, seed=seed)

    def prompt(self, problem: Problem) -> str:
        return f"{problem.question}\n{BOXED_INSTRUCTION}"

    def extract_answer(self, text: str) -> str | None:
        return extract_boxed(text) if text is not None else None

    def is_correct(self, problem: Problem, text: str) -> bool:
        return answers_equal(self.extract_answer(text), problem.answer)
