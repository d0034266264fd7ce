"""Models and reward models by Hugging Face Hub ID, through the real CLI, from a local
Hugging Face cache the test builds (`$HF_HOME/hub/models--ORG--NAME/snapshots/<hash>/` with
`refs/main`), offline as this machine must be; and the product never turning offline mode on
by itself."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from ponder.models import build_char_tokenizer, build_tiny_model

HASH = "0123456789abcdef0123456789abcdef01234567"
REMOTE_CODE = '''from transformers import LlamaConfig, LlamaForCausalLM


class AcmeConfig(LlamaConfig):
    model_type = "acme"


class AcmeForCausalLM(LlamaForCausalLM):
    config_class = AcmeConfig
'''


def cached_repo(home, repo: str):
    """The snapshot folder of `repo` in the cache under `home`, its refs/main pointing at it."""
    root = home / "hub" / f"models--{repo.replace('/', '--')}"
    (root / "refs").mkdir(parents=True)
    (root / "refs" / "main").write_text(HASH)
    snap = root / "snapshots" / HASH
    snap.mkdir(parents=True)
    return snap


@pytest.fixture(scope="module")
def hf_home(tmp_path_factory):
    """A Hugging Face cache holding acme/tiny-reasoner (a tiny policy), acme/tiny-prm (a
    ponder PRM on it) and acme/custom (a model whose class lives in the repository's code),
    and the same policy as a plain folder."""
    from ponder.rewards.model import RewardModel

    home = tmp_path_factory.mktemp("hf-home")
    tok = build_char_tokenizer()
    model = build_tiny_model(tok, "1m", seed=0)
    snaps = {repo: cached_repo(home, repo) for repo in ("acme/tiny-reasoner", "acme/custom")}
    for snap in snaps.values():
        model.save_pretrained(snap)
        tok.save_pretrained(snap)
    local = tmp_path_factory.mktemp("local") / "policy"
    model.save_pretrained(local)
    tok.save_pretrained(local)
    RewardModel(model.model, tok, "prm").save(cached_repo(home, "acme/tiny-prm"))
    custom = snaps["acme/custom"]
    config = json.loads((custom / "config.json").read_text())
    config.update(model_type="acme", architectures=["AcmeForCausalLM"],
                  auto_map={"AutoConfig": "modeling_acme.AcmeConfig",
                            "AutoModelForCausalLM": "modeling_acme.AcmeForCausalLM"})
    (custom / "config.json").write_text(json.dumps(config))
    (custom / "modeling_acme.py").write_text(REMOTE_CODE)
    return home, local


def ponder(home, *args, offline=True):
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    env.update(HF_HOME=str(home), OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    if offline:
        env["HF_HUB_OFFLINE"] = "1"
    return subprocess.run([sys.executable, "-m", "ponder", *args], capture_output=True, text=True, env=env,
                          timeout=300)


EVAL = ["eval", "--task", "arith", "--task-arg", "instruction=false", "--n", "4", "--k", "0", "--max-tokens", "8"]


def summary(res):
    assert res.returncode == 0, res.stdout + res.stderr
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_a_model_by_hub_id_equals_the_same_folder(hf_home):
    home, local = hf_home
    by_id = summary(ponder(home, *EVAL, "--model", "acme/tiny-reasoner"))
    by_rev = summary(ponder(home, *EVAL, "--model", f"acme/tiny-reasoner@{HASH}"))
    by_folder = summary(ponder(home, *EVAL, "--model", str(local)))
    assert by_id == by_rev == by_folder


def test_a_reward_model_by_hub_id(hf_home):
    home, _ = hf_home
    res = ponder(home, "search", "--model", "acme/tiny-reasoner", "--scorer", "acme/tiny-prm", "--strategy",
                 "best_of_n", "--n", "2", "--n-problems", "2", "--max-tokens", "8", "--task", "arith",
                 "--no-batch")
    out = summary(res)
    assert out["problems"] == 2 and out["scorer_tokens"] > 0


def test_a_model_missing_from_the_cache_offline_is_one_clear_line(hf_home):
    home, _ = hf_home
    res = ponder(home, *EVAL, "--model", "acme/nope")
    assert res.returncode == 2 and "Traceback" not in res.stdout + res.stderr
    line = " ".join(res.stdout.split())
    assert "'acme/nope'" in line and "offline mode is on" in line and "hf download acme/nope" in line
    res = ponder(home, *EVAL, "--model", "acme/tiny-reasoner@v9")
    assert res.returncode == 2 and "Traceback" not in res.stdout + res.stderr


def test_remote_code_runs_only_when_asked(hf_home):
    home, local = hf_home
    res = ponder(home, *EVAL, "--model", "acme/custom")
    assert res.returncode == 2 and "Traceback" not in res.stdout + res.stderr
    assert "trust_remote_code" in " ".join(res.stdout.split())
    assert summary(ponder(home, *EVAL, "--model", "acme/custom", "--trust-remote-code")) == \
        summary(ponder(home, *EVAL, "--model", str(local)))


def test_ponder_never_turns_offline_mode_on():
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    code = ("import os, ponder.cli, ponder.models, ponder.commands; "
            "print(os.environ.get('HF_HUB_OFFLINE'), os.environ.get('TRANSFORMERS_OFFLINE'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    assert out.split() == ["None", "None"]
