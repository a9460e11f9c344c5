"""Bad configs fail before training, with a message that names the key."""

import subprocess
import sys
from pathlib import Path

import pytest

from policyopt.app.run import parse_run_config, run_config_dict, train
from policyopt.core.config import ConfigError, apply_overrides

ROOT = Path(__file__).resolve().parents[2]
GOOD = {"algo": "ppo", "env": {"id": "CartPole-v1"}, "ppo": {"learning_rate": 1e-3}}


@pytest.mark.parametrize("override, message", [
    ("ppo.learning_rate=-1", "ppo.learning_rate: Input should be greater than 0"),
    ("ppo.learning_rat=0.1", "ppo.learning_rat: unknown key"),
    ("ppo.num_steps=abc", "ppo.num_steps: Input should be a valid integer"),
    ("ppo.gamma=1.5", "ppo.gamma: Input should be less than or equal to 1"),
    ("ppo.net.activation=sigmoid", "ppo.net.activation: Input should be 'tanh'"),
    ("env.num_envs=0", "env.num_envs: Input should be greater than 0"),
    ("env.vectorization=threads", "env.vectorization"),
    ("trainer.total_steps=1.5", "trainer.total_steps: Input should be a valid integer"),
    ("algo=ppp", "algo: unknown algorithm 'ppp'"),
    ("seed=-3", "seed: expected a non-negative integer"),
    ("dqn.lr=1", "dqn: unknown key"),
])
def test_bad_values_name_the_key(override, message):
    with pytest.raises(ConfigError) as err:
        parse_run_config(apply_overrides(GOOD, [override]))
    assert message in str(err.value)


def test_override_syntax_and_yaml_round_trip():
    with pytest.raises(ConfigError, match="key=value"):
        apply_overrides(GOOD, ["ppo.learning_rate"])
    cfg = parse_run_config(apply_overrides(GOOD, ["ppo.net.hidden_sizes=[32, 16]", "trainer.stop_at_eval_return=400"]))
    assert cfg.algo_config.net.hidden_sizes == (32, 16)
    assert parse_run_config(run_config_dict(cfg)) == cfg


def test_unknown_env_and_unsupported_spaces_fail_before_training(tmp_path):
    with pytest.raises(ConfigError, match="env.id: cannot make 'NoSuchEnv-v0'"):
        train({**GOOD, "env": {"id": "NoSuchEnv-v0"}}, run_dir=tmp_path / "a")
    with pytest.raises(ConfigError, match="env.id: 'CarRacing-v3'|env.id: cannot make 'CarRacing-v3'"):
        train({**GOOD, "env": {"id": "CarRacing-v3"}}, run_dir=tmp_path / "b")  # image obs need box2d


def test_cli_bad_config_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("algo: ppo\nppo:\n  clip_coef: [0.2\n")
    proc = subprocess.run([sys.executable, "-m", "policyopt.cli", "train", str(bad)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "not valid YAML" in proc.stderr and "Traceback" not in proc.stderr
    bad.write_text("algo: ppo\nppo:\n  clip_coef: 0\n")
    proc = subprocess.run([sys.executable, "-m", "policyopt.cli", "train", str(bad)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "ppo.clip_coef: Input should be greater than 0" in proc.stderr
    assert not (tmp_path / "runs").exists()
