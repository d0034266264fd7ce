"""start_run: the one guard against resuming a run directory with other options."""
import pytest
import yaml

from ponder.runs import RunConfigError, start_run


def test_option_added_since_the_run_resumes_only_when_left_unset(tmp_path):
    run = tmp_path / "ann"
    assert start_run(run, {"policy": "p", "k": 8}, "annotate") is False
    # a newer ponder has an option the saved run never had; left unset it changes nothing
    assert start_run(run, {"policy": "p", "k": 8, "completer": None}, "annotate") is True
    with pytest.raises(RunConfigError, match="completer"):
        start_run(run, {"policy": "p", "k": 8, "completer": "strong"}, "annotate")
    with pytest.raises(RunConfigError, match="k: 8 there, 4 now"):
        start_run(run, {"policy": "p", "k": 4, "completer": None}, "annotate")
    assert yaml.safe_load((run / "config.yaml").read_text()) == {"policy": "p", "k": 8}
