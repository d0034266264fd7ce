"""More of a new user's mistakes and surprises, tried through the real command line: each is
refused in one line naming the option, file or line (exit code 2, no traceback), or does what
the README says. Fast: tiny models, budgets of a step or a token."""
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib import error, request

import pytest
from typer.testing import CliRunner

from ponder.cli import app, user_error_message

runner = CliRunner()


def said(res) -> str:
    """The command's output with rich's line wrapping undone."""
    return " ".join(res.output.split())


def refused(args: list[str], *fragments: str) -> str:
    res = runner.invoke(app, [str(a) for a in args])
    text = said(res)
    assert res.exit_code == 2, text
    assert "Traceback" not in res.output, text
    assert res.exception is None or isinstance(res.exception, SystemExit), text
    assert res.output.count("error:") == 1, text  # one message (a loading bar may share its line)
    for f in fragments:
        assert f in text, text
    return text


def ran(args: list[str]) -> str:
    res = runner.invoke(app, [str(a) for a in args])
    assert res.exit_code == 0, said(res)
    return said(res)


# ----- 1. a learning rate of 0 (the schedule divides by it)

@pytest.mark.parametrize("args,flag", [
    (["sft", "--lr", "0"], "lr (--lr)"),
    (["sft", "--lr", "-1e-3"], "lr (--lr)"),
    (["dpo", "--lr", "0"], "lr (--lr)"),
    (["train-rm", "--lr", "0"], "lr (--lr)"),
    (["rl", "--lr", "0"], "lr (--lr)"),
    (["iterate", "--lr", "0"], "lr (--lr)"),
    (["demo", "--rl-lr", "0"], "rl_lr (--rl-lr)"),
    (["demo", "--lr", "0"], "lr (--lr)"),
])
def test_zero_learning_rate_is_refused(tmp_path, args, flag):
    refused(args + ["--runs-dir", tmp_path], flag, "must be a finite number > 0")
    assert not any(tmp_path.iterdir())


# ----- 2. --help shows the defaults

def test_help_shows_defaults():
    res = runner.invoke(app, ["sft", "--help"], env={"COLUMNS": "200"})
    text = said(res)
    assert res.exit_code == 0
    for shown in ("[default: 600]", "[default: 0.003]", "[default: tiny:4m]", "[default: False]"):
        assert shown in text, text


# ----- 3. and 5. a server: eval without --model, and the search extension

CHAT_TEMPLATE = ("{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}\n{% endfor %}"
                 "{% if add_generation_prompt %}<assistant>{% endif %}")


@pytest.fixture(scope="module")
def server():
    """A `ponder serve` server in this process (one tiny model with a chat template), its root URL."""
    from ponder.models import build_char_tokenizer, build_tiny_model
    from ponder.serve import PonderServer

    tokenizer = build_char_tokenizer()
    tokenizer.chat_template = CHAT_TEMPLATE
    srv = PonderServer(build_tiny_model(tokenizer, "1m", max_len=256, seed=0), tokenizer, "tiny", port=0,
                       log=lambda line: None)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv.url.removesuffix("/v1")
    srv.shutdown()


def post(root: str, path: str, body: dict) -> tuple[int, dict]:
    req = request.Request(root + path, json.dumps(body).encode(), {"Content-Type": "application/json"})
    try:
        with request.urlopen(req, timeout=60) as r:
            return r.status, json.loads(r.read())
    except error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_eval_and_search_on_a_server_need_no_model_name(server, tmp_path):
    out = tmp_path / "eval.json"
    ran(["eval", "--engine", f"{server}/v1", "--n", "1", "--k", "0", "--max-tokens", "2", "--output", out])
    assert json.loads(out.read_text())["summary"]["problems"] == 1
    # search's default --model is a local path; untyped, the server's only model is meant
    ran(["search", "--engine", f"{server}/v1", "--strategy", "majority", "--n", "2", "--n-problems", "1",
         "--max-tokens", "2", "--scorer", "none"])


def test_search_extension_takes_max_completion_tokens_and_a_system_message(server):
    user = {"role": "user", "content": "3+4*2\n"}
    ext = {"strategy": "majority", "n": 2, "seed": 0}
    status, out = post(server, "/v1/chat/completions", {"messages": [user], "max_completion_tokens": 3, "ponder": ext})
    assert status == 200, out
    assert 0 < out["usage"]["completion_tokens"] <= 2 * 3  # n x max_completion_tokens
    system = {"role": "system", "content": "Answer briefly."}
    status, with_system = post(server, "/v1/chat/completions",
                               {"messages": [system, user], "max_completion_tokens": 3, "ponder": ext})
    assert status == 200, with_system
    # the system prompt went through the template into the search's prompt
    assert with_system["usage"]["prompt_tokens"] == out["usage"]["prompt_tokens"] + len("<system>Answer briefly.\n")


def test_search_extension_verifier_without_question_names_the_field(server):
    ext = {"strategy": "beam", "n": 4, "beam_width": 2, "scorer": "verifier", "answer": "11", "max_step_tokens": 4,
           "max_steps": 2, "seed": 0}
    status, out = post(server, "/v1/chat/completions",
                       {"messages": [{"role": "user", "content": "Compute 3+4*2."}], "max_tokens": 8, "ponder": ext})
    assert status == 400 and out["error"]["param"] == "ponder.question", out
    assert "pass the bare problem as ponder.question" in out["error"]["message"]
    status, out = post(server, "/v1/chat/completions",
                       {"messages": [{"role": "user", "content": "Compute 3+4*2."}], "max_tokens": 8,
                        "ponder": {**ext, "question": "3+4*2"}})
    assert status == 200, out


# ----- 4. tasks

def test_tasks_shows_a_dataset_task_as_needing_a_path():
    text = ran(["tasks"])
    assert "ValueError" not in text and "--task gsm8k --task-arg path=" in text, text


# ----- 6. a run that failed at its start does not block the corrected command

def test_failed_start_leaves_no_run_behind(tmp_path):
    base = ["sft", "--model", "tiny:1m", "--steps", "1", "--n-train", "4", "--batch-size", "2",
            "--runs-dir", tmp_path / "runs", "--run", "s"]
    refused(base + ["--max-len", "1"], "max_len")
    assert not (tmp_path / "runs").exists()
    ran(base + ["--max-len", "64"])
    assert (tmp_path / "runs" / "s" / "model" / "config.json").exists()


def test_annotate_omega_options_are_checked_first(tmp_path, tiny_dir):
    base = ["annotate", "--policy", tiny_dir, "--n-problems", "1", "--samples", "1", "--runs-dir", tmp_path]
    refused(base + ["--omega", "alpha=abc"], "--omega alpha", "expected float, got 'abc'")
    refused(base + ["--omega", "bogus=1"], "--omega bogus=1", "no option 'bogus'", "c_puct")
    assert not any(tmp_path.iterdir())


# ----- 7. tracebacks that were

def test_eval_output_is_checked_before_the_evaluation(tmp_path, tiny_dir):
    base = ["eval", "--model", tiny_dir, "--n", "1", "--k", "0", "--max-tokens", "2", "--output"]
    refused(base + [tmp_path], f"--output {tmp_path} is a directory")
    refused(base + [tmp_path / "nope" / "x.json"], f"the folder {tmp_path / 'nope'} does not exist")


def test_out_of_range_numbers(tmp_path, tiny_dir):
    refused(["search", "--model", tiny_dir, "--n", "1000000000", "--n-problems", "1"], "--n 1000000000",
            "at most 65536")
    refused(["serve", "--model", tiny_dir, "--port", "70000"], "--port 70000", "0 to 65535")


def test_disk_full_from_safetensors_is_one_line():
    from safetensors import SafetensorError

    e = SafetensorError('Error while serializing: IoError(Os { code: 28, kind: StorageFull, '
                        'message: "No space left on device" })')
    assert "the disk is full" in user_error_message(e)


# ----- 8. more problems than a task has, or than can be drawn

def test_impossible_problem_counts_fail_fast(tmp_path, tiny_dir):
    refused(["sft", "--task-arg", "num_ops=1", "--runs-dir", tmp_path], "found only", "distinct train problems")
    refused(["eval", "--model", tiny_dir, "--task", "countdown", "--n", "100000000"], "100000000 problems",
            "at most 1000000")


# ----- 9. and 15. sampling that cannot fit

def test_generate_bounds(tiny_dir):
    refused(["generate", "--model", tiny_dir, "--prompt", "1+1", "--n", "1000000"], "--n 1000000",
            "at most 65536")
    refused(["generate", "--model", tiny_dir, "--prompt", "1+1", "--n", "65536", "--max-tokens", "256",
             "--prompt", "2+2", "--prompt", "3+3", "--prompt", "4+4", "--prompt", "5+5"], "lower --n or --max-tokens")
    refused(["generate", "--model", tiny_dir, "--prompt", "1+1", "--max-tokens", "1000000000"],
            "--max-tokens 1000000000", "context is 512 tokens")
    refused(["generate", "--model", tiny_dir, "--prompt", "1" * 600, "--max-tokens", "2"],
            "context of 512 tokens")
    refused(["eval", "--model", tiny_dir, "--n", "1", "--max-tokens", "5000"], "context is 512 tokens")


# ----- 10. a file that is not UTF-8

def test_non_utf8_data_names_file_and_line(tmp_path):
    data = tmp_path / "d.jsonl"
    data.write_bytes(b'{"prompt": "a", "completion": "b"}\n{"prompt": "\xff", "completion": "b"}\n')
    refused(["sft", "--data", data, "--runs-dir", tmp_path / "runs"], f"{data}:2", "not UTF-8")


# ----- 11. messages that named nothing

def test_reward_weight_names_its_flag(tmp_path, tiny_dir):
    refused(["rl", "--model", tiny_dir, "--reward-weight", "outcome=abc", "--runs-dir", tmp_path],
            "--reward-weight outcome=abc", "expected a number")


def test_non_json_server_is_named(tmp_path):
    class HTML(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(b"<html>login</html>")

        def log_message(self, *args):
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), HTML)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}/v1"
        refused(["eval", "--engine", url, "--n", "1"], f"server {url}/models answered 200 with non-JSON",
                "text/html")
    finally:
        httpd.shutdown()


def test_install_hint_keeps_its_brackets(tiny_dir):
    pytest.importorskip("ponder.tasks.gym")
    try:
        import reasoning_gym  # noqa: F401
        pytest.skip("reasoning-gym is installed")
    except ImportError:
        pass
    refused(["eval", "--model", tiny_dir, "--task", "gym:leg_counting", "--n", "1"], "pip install 'ponder[gym]'")


# ----- 12. run names

@pytest.mark.parametrize("name", ["../../escape", "", ".", "..", "a/b"])
def test_run_must_be_a_plain_folder_name(tmp_path, name):
    refused(["sft", "--run", name, "--runs-dir", tmp_path / "x" / "runs"], "expected a plain folder name")
    assert not any(tmp_path.iterdir())


# ----- 13., 14., 16. combinations and values that cannot work

def test_generate_prompt_and_task_together(tiny_dir):
    refused(["generate", "--model", tiny_dir, "--prompt", "X", "--task", "arith"], "--prompt", "--task", "not both")


def test_empty_stop_group_of_one_and_clip_range(tmp_path, tiny_dir):
    refused(["generate", "--model", tiny_dir, "--prompt", "X", "--stop", ""], "--stop ''")
    rl = ["rl", "--model", tiny_dir, "--runs-dir", tmp_path]
    refused(rl + ["--group-size", "1"], "--group-size 1", "at least 2")
    refused(rl + ["--epsilon-low", "2"], "--epsilon-low 2.0", "[0, 1)")
    refused(["demo", "--rl-group", "1", "--runs-dir", tmp_path], "--rl-group 1", "at least 2")
    assert not any(tmp_path.iterdir())


def test_scale_needs_strategies(tmp_path, tiny_dir):
    refused(["scale", "--model", tiny_dir, "--strategies", "", "--runs-dir", tmp_path], "--strategies is empty")
    assert not any(tmp_path.iterdir())


# ----- 17., 18. the demo's --quick

def test_demo_help_says_where_quick_runs_go():
    text = said(runner.invoke(app, ["demo", "--help"], env={"COLUMNS": "200"}))
    assert "with --quick and no --run: <runs-dir>/demo-quick/" in text, text


def test_quick_keeps_options_the_user_gave(tmp_path):
    from ponder.commands.demo import Config, pipeline_config
    from ponder.config import load_config

    # what the command line builds from `demo --quick --sft-steps 1500` (1500 is the default)
    dc = pipeline_config(load_config(Config, None, {"quick": True, "sft_steps": 1500}))
    assert dc.sft_steps == 1500 and dc.batch_size == 16  # typed wins; the rest is --quick's
    cfg = tmp_path / "demo.yaml"
    cfg.write_text("quick: true\nrl_steps: 200\n")
    assert pipeline_config(load_config(Config, cfg, {})).rl_steps == 200


def test_runs_that_fail_at_their_first_step_leave_nothing_behind(tmp_path):
    """A reward that raises or returns NaN, DPO pairs with identical sides: each fails in one
    line after `start_run`, and the corrected command can run in the same place. (A dead
    `--engine` URL fails the same way, after the HTTP engine's retries, ~15 s.)"""
    (tmp_path / "rw.py").write_text("def boom(prompts, completions, **kw):\n    raise RuntimeError('broken reward')\n\n"
                                    "def nan(prompts, completions, **kw):\n    return [float('nan')] * len(completions)\n")
    (tmp_path / "prefs.jsonl").write_text(
        "".join(json.dumps({"prompt": "1+1", "chosen": "2", "rejected": "2"}) + "\n" for _ in range(3)))
    runs = tmp_path / "runs"
    rl = ["rl", "--model", "tiny:1m", "--task", "arith", "--steps", "1", "--prompts-per-step", "2", "--group-size", "2",
          "--max-tokens", "4", "--n-train", "4", "--n-eval", "0", "--runs-dir", runs]
    refused(rl + ["--rewards", f"{tmp_path}/rw.py:boom"], "reward function 'boom' raised RuntimeError")
    refused(rl + ["--rewards", f"{tmp_path}/rw.py:nan"], "returned nan")
    refused(["dpo", "--model", "tiny:1m", "--data", tmp_path / "prefs.jsonl", "--steps", "1", "--n-eval", "0",
             "--runs-dir", runs], "identical sides")
    assert not runs.exists() or not any(runs.rglob("*"))
    ran(rl)  # the corrected command, in the same run directory
