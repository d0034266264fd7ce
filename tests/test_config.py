import pytest

from ponder.config import ConfigError, load_config
from ponder.commands.sft import Config as SFTArgs


def test_yaml_then_flags(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("steps: 50\nlr: 1\nmodel: tiny:1m\ntask_args: {num_ops: 3}\n")
    cfg = load_config(SFTArgs, p, {"steps": 7, "batch_size": None})
    assert cfg.steps == 7  # flag wins
    assert cfg.lr == 1.0 and isinstance(cfg.lr, float)  # int in YAML accepted for a float field
    assert cfg.model == "tiny:1m" and cfg.task_args == {"num_ops": 3}
    assert cfg.batch_size == SFTArgs().batch_size  # default kept


def test_bad_yaml_names_file_and_key(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("stepz: 5\n")
    with pytest.raises(ConfigError, match=r"c.yaml: unknown option 'stepz'"):
        load_config(SFTArgs, p)
    p.write_text("steps: many\n")
    with pytest.raises(ConfigError, match=r"c.yaml: option 'steps': expected int, got 'many'"):
        load_config(SFTArgs, p)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(SFTArgs, tmp_path / "missing.yaml")


def test_float_written_without_a_dot_is_a_float(tmp_path):
    from dataclasses import dataclass

    from ponder.config import ConfigError, load_config

    @dataclass
    class C:
        lr: float = 1.0

    f = tmp_path / "c.yaml"
    f.write_text("lr: 3e-5\n")
    assert load_config(C, f, {}).lr == 3e-5
    f.write_text("lr: fast\n")
    with pytest.raises(ConfigError, match="lr.*expected float, got 'fast'"):
        load_config(C, f, {})
