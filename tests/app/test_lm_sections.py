"""LM runs are described by their config: ``model:``, ``data:`` and ``reward:`` sections (no ``env:``),
every reward kind reachable from YAML, a user's JSONL file / ``datasets`` dataset and Python reward,
and clear errors naming the key for every bad section."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from policyopt.app.build_lm import build_reward, load_callable
from policyopt.app.run import parse_run_config, run_config_dict
from policyopt.core.config import ConfigError, build
from policyopt.lm.source import PromptDataConfig, parse_reward_config, prompt_pools

pytest.importorskip("transformers")

ROOT = Path(__file__).resolve().parents[2]


def grpo(**sections) -> dict:
    return {"algo": "grpo", "seed": 0, "trainer": {"total_steps": 64}, "grpo": {}, **sections}


# ----------------------------------------------------------------------------- run-config layout

def test_lm_run_has_model_data_reward_and_no_env_section():
    cfg = parse_run_config(grpo(model={"path": "builtin"}, data={"tasks": {"sorting": 10}},
                                reward={"kind": "task", "format_weight": 0.2}))
    assert cfg.env is None and cfg.model.path == "builtin" and cfg.data.tasks == {"sorting": 10}
    assert cfg.reward.kind == "task" and cfg.reward.format_weight == 0.2
    dumped = run_config_dict(cfg)
    assert "env" not in dumped and {"model", "data", "reward"} <= set(dumped)
    assert parse_run_config(dumped) == cfg  # config.yaml round-trips


def test_lm_run_refuses_an_env_section_and_says_where_prompts_come_from():
    with pytest.raises(ConfigError, match=r"^env: grpo takes no env: section .*data:"):
        parse_run_config(grpo(env={"id": "CartPole-v1"}))


def test_classic_run_refuses_lm_sections():
    with pytest.raises(ConfigError, match=r"^reward: ppo takes no reward: section"):
        parse_run_config({"algo": "ppo", "reward": {"kind": "task"}})


def test_the_old_source_section_names_its_new_place():
    with pytest.raises(ConfigError, match=r"grpo.source: this section moved to the top level: `model:`"):
        parse_run_config(grpo(grpo={"source": {"model": "builtin"}}))


def test_bad_model_and_data_keys_are_named():
    with pytest.raises(ConfigError, match=r"model.dtype"):
        parse_run_config(grpo(model={"dtype": "float8"}))
    with pytest.raises(ConfigError, match=r"data.bogus"):
        parse_run_config(grpo(data={"bogus": 1}))


# ----------------------------------------------------------------------------- reward section

@pytest.mark.parametrize("section, message", [
    ({"kind": "magic"}, r"reward.kind: unknown reward 'magic'"),
    ({"kind": "python"}, r"reward.function: required"),
    ({"kind": "reward_model"}, r"reward.run: required"),
    ({"kind": "unit_tests", "sandbox": {"bogus": 1}}, r"reward.sandbox.bogus"),
    ({"kind": "weighted"}, r"reward.components: a weighted reward needs at least one component"),
    ({"kind": "weighted", "components": {"a": {"kind": "task", "weight": "x"}}},
     r"reward.components.a.weight: expected a finite number"),
    ({"kind": "weighted", "components": {"a": {"kind": "task", "weight": float("nan")}}},
     r"reward.components.a.weight"),
    ({"kind": "weighted", "components": {"a": {"kind": "weighted", "components": {}}}},
     r"reward.components.a.kind: a weighted reward cannot be a component"),
    ({"kind": "weighted", "components": {"a": {"kind": "length", "target": 0}}}, r"reward.components.a.target"),
])
def test_bad_reward_sections_name_the_key(section, message):
    with pytest.raises(ConfigError, match=message):
        parse_reward_config(section)


def test_weighted_reward_sums_its_components_with_their_weights():
    cfg = parse_reward_config({"kind": "weighted", "components": {
        "correct": {"kind": "answer", "weight": 1.0}, "short": {"kind": "length", "target": 4, "coef": 1.0,
                                                                "tokens": False, "weight": 0.5}}})
    fn = build_reward(cfg)
    out = fn(["p", "p"], ["<answer>7</answer>", "<answer>8</answer>"], [{"answer": "7"}, {"answer": "7"}])
    n = len("<answer>7</answer>")
    assert out == pytest.approx([1.0 - 0.5 * (n - 4) / 4, 0.0 - 0.5 * (n - 4) / 4])


def test_python_reward_loads_from_a_file_and_from_a_module(tmp_path, monkeypatch):
    (tmp_path / "my_reward.py").write_text(
        "def reward(prompts, completions, metadata):\n    return [float(len(c)) for c in completions]\n"
        "def make(scale):\n    return lambda p, c, m: [scale * len(x) for x in c]\n")
    monkeypatch.chdir(tmp_path)
    fn = build_reward(parse_reward_config({"kind": "python", "function": "my_reward.py:reward"}))
    assert fn(["a"], ["xyz"], [{}]) == [3.0]
    factory = build_reward(parse_reward_config({"kind": "python", "function": "my_reward.py:make",
                                                "kwargs": {"scale": 2}}))
    assert factory(["a"], ["xyz"], [{}]) == [6]
    monkeypatch.syspath_prepend(str(tmp_path))
    assert load_callable("my_reward:reward")(["a"], ["xy"], [{}]) == [2.0]


def test_python_reward_errors_name_the_file_the_attribute_and_the_cause(tmp_path, monkeypatch):
    (tmp_path / "broken.py").write_text("import not_a_module_anywhere\n")
    (tmp_path / "ok.py").write_text("VALUE = 3\ndef scorer(p, c, m):\n    return [0.0] * len(c)\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=r"reward.function: no such file 'missing.py'"):
        load_callable("missing.py:reward")
    with pytest.raises(ConfigError, match=r"importing 'broken.py' failed: ModuleNotFoundError"):
        load_callable("broken.py:reward")
    with pytest.raises(ConfigError, match=r"'ok.py' has no 'reward' \(callables there: \['scorer'\]\)"):
        load_callable("ok.py:reward")
    with pytest.raises(ConfigError, match=r"ok.py:VALUE is a int, not a callable"):
        load_callable("ok.py:VALUE")
    with pytest.raises(ConfigError, match=r"expected 'package.module:function'"):
        load_callable("no_colon")


# ----------------------------------------------------------------------------- data section

def write_jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def test_jsonl_prompts_map_columns_keep_metadata_and_hold_out_disjointly(tmp_path):
    rows = [{"q": f"{a}+{a}=", "gold": 2 * a, "level": a % 3} for a in range(300)]
    cfg = build(PromptDataConfig, {"source": "jsonl", "path": str(write_jsonl(tmp_path / "d.jsonl", rows)),
                                   "prompt_column": "q", "answer_column": "gold", "eval_percent": 20}, "data")
    train, held = prompt_pools(cfg)
    assert len(train) + len(held) == 300 and held
    assert not {e.prompt for e in train} & {e.prompt for e in held}
    ex = next(e for e in train if e.prompt == "5+5=") if any(e.prompt == "5+5=" for e in train) else train[0]
    assert ex.metadata["answer"] == str(ex.metadata["gold"]) and "level" in ex.metadata and "q" not in ex.metadata


def test_jsonl_with_an_explicit_eval_file_never_trains_on_it(tmp_path):
    rows = [{"prompt": f"p{i}", "answer": i} for i in range(40)]
    held_rows = rows[:5]
    cfg = build(PromptDataConfig, {"source": "jsonl", "path": str(write_jsonl(tmp_path / "t.jsonl", rows)),
                                   "eval_path": str(write_jsonl(tmp_path / "e.jsonl", held_rows))}, "data")
    train, held = prompt_pools(cfg)
    assert [e.prompt for e in held] == [f"p{i}" for i in range(5)]
    assert len(train) == 35 and not {e.prompt for e in train} & {e.prompt for e in held}


@pytest.mark.parametrize("lines, message", [
    (['{"prompt": "a"}', "{not json"], r"line 2 of .* is not valid JSON"),
    (['{"prompt": "a"}', '{"text": "b"}'], r"line 2 of .*'prompt' must be a non-empty string.*prompt_column"),
    (['["a", "b"]'], r"line 1 of .*expected an object"),
    ([""], r"holds no records"),
])
def test_bad_jsonl_lines_are_named(tmp_path, lines, message):
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ConfigError, match=message):
        prompt_pools(build(PromptDataConfig, {"source": "jsonl", "path": str(path)}, "data"))


def test_missing_files_and_unknown_tasks_are_named(tmp_path):
    with pytest.raises(ConfigError, match=r"data.path: no such file"):
        prompt_pools(build(PromptDataConfig, {"source": "jsonl", "path": str(tmp_path / "nope.jsonl")}, "data"))
    with pytest.raises(ConfigError, match=r"data.path: required"):
        prompt_pools(build(PromptDataConfig, {"source": "jsonl"}, "data"))
    with pytest.raises(ConfigError, match=r"data.tasks: unknown task 'poetry'"):
        prompt_pools(build(PromptDataConfig, {"tasks": {"poetry": 3}}, "data"))


def test_a_saved_datasets_dataset_is_read_with_its_splits_and_columns(tmp_path):
    datasets = pytest.importorskip("datasets")
    train = datasets.Dataset.from_list([{"question": f"{i}+1=", "label": i + 1} for i in range(50)])
    test = datasets.Dataset.from_list([{"question": f"{i}+2=", "label": i + 2} for i in range(8)])
    datasets.DatasetDict({"train": train, "test": test}).save_to_disk(str(tmp_path / "ds"))
    cfg = build(PromptDataConfig, {"source": "dataset", "path": str(tmp_path / "ds"), "eval_split": "test",
                                   "prompt_column": "question", "answer_column": "label"}, "data")
    tr, held = prompt_pools(cfg)
    assert len(tr) == 50 and len(held) == 8 and held[0].metadata["answer"] == "2"
    with pytest.raises(ConfigError, match=r"data.eval_split: dataset .* has no split 'valid'"):
        prompt_pools(build(PromptDataConfig, {"source": "dataset", "path": str(tmp_path / "ds"),
                                              "eval_split": "valid", "prompt_column": "question"}, "data"))
    with pytest.raises(ConfigError, match=r"data.prompt_column: dataset .* has no column 'prompt'"):
        prompt_pools(build(PromptDataConfig, {"source": "dataset", "path": str(tmp_path / "ds")}, "data"))


# ----------------------------------------------------------------------------- the shipped configs

def cli_train(config: str, tmp_path: Path, *overrides: str) -> list[dict]:
    run = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "policyopt.cli", "train", config, "trainer.progress=none",
                           "trainer.tensorboard=false", *overrides, "--run-dir", str(run)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_user_jsonl_with_a_user_reward_file_trains_from_the_cli(tmp_path):
    records = cli_train("configs/grpo_user_data.yaml", tmp_path, "trainer.total_steps=128",
                        "trainer.eval_every_steps=128")
    assert [r["step"] for r in records] == [64, 128]
    for r in records:  # the user's function is the closeness component; format is the built-in one
        assert 0.0 <= r["reward/closeness"] <= 1.0 and 0.0 <= r["reward/format"] <= 1.0
        assert math.isclose(r["reward/mean"], r["reward/closeness"] + 0.1 * r["reward/format"], abs_tol=1e-5)
    assert 0.0 <= records[-1]["eval/accuracy/all"] <= 1.0 and "eval/reward" in records[-1]


def test_grpo_with_the_sandboxed_unit_test_reward_trains_from_the_cli_and_logs_verdicts(tmp_path):
    if shutil.which("bwrap") is None:
        pytest.skip("bubblewrap is not installed (make test installs it with apt-get)")
    records = cli_train("configs/grpo_unit_tests.yaml", tmp_path, "trainer.total_steps=64",
                        "trainer.eval_every_steps=64", "data.eval_prompts=4")
    assert [r["step"] for r in records] == [32, 64]
    for r in records:
        verdicts = {k: v for k, v in r.items() if k.startswith("verdict/")}
        assert {"verdict/pass", "verdict/fail", "verdict/compile_error", "verdict/sandbox_error"} <= set(verdicts)
        assert math.isclose(sum(verdicts.values()), 1.0, abs_tol=1e-6)   # every test got exactly one verdict
        assert r["verdict/sandbox_error"] == 0.0 and r["sandbox/runs"] == 32   # each completion ran once
    assert "eval/reward" in records[-1] and "eval/accuracy/all" not in records[-1]  # code is graded by tests


def test_a_missing_sandbox_is_a_clear_error_not_a_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "policyopt.cli", "train", "configs/grpo_unit_tests.yaml",
                           "reward.sandbox.interpreter=/no/such/python", "--run-dir", str(tmp_path / "run")],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "policyopt: error:" in proc.stderr and "Traceback" not in proc.stderr
    assert "reward.sandbox" in proc.stderr
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_reward_model_reward_scores_with_the_trained_run_and_refuses_other_runs(tmp_path):
    from policyopt.algos.reward_model import RewardModelTrainer, as_reward_fn, build_ensemble
    from policyopt.app.build_lm import load_reward_model
    from policyopt.app.run import train

    config = {"algo": "reward_model", "seed": 0,
              "trainer": {"total_steps": 4 * 16, "eval_every_steps": 0, "progress": "none", "tensorboard": False},
              "reward_model": {"backbone": "tiny", "learning_rate": 3e-3, "eval_pairs": 16,
                               "data": {"batch_size": 16, "synthetic": {"num_prompts": 64, "alphabet": "abc",
                                                                        "min_len": 2, "max_len": 3}}}}
    run, _ = train(config, run_dir=tmp_path / "rm")
    fn = build_reward(parse_reward_config({"kind": "reward_model", "run": str(run)}))
    prompts, completions = ["ab", "ba", "cc"], ["a", "bb", "c"]
    scores = fn(prompts, completions, [{}] * 3)
    # the same scores as the trained members loaded by hand (and not those of an untrained head)
    members, tok = build_ensemble("tiny", 1, "causal", "auto", 0)
    trainer = RewardModelTrainer(parse_run_config(config).algo_config, members, 1)
    from policyopt.runtime.checkpoint import load_checkpoint

    trainer.members.load_state_dict(load_checkpoint(run)[0]["algorithm"]["members"])
    assert scores == pytest.approx(as_reward_fn(trainer, tok)(prompts, completions), abs=1e-6)
    fresh, _ = build_ensemble("tiny", 1, "causal", "auto", 0)
    assert scores != pytest.approx(as_reward_fn(RewardModelTrainer(trainer.config, fresh, 1), tok)(
        prompts, completions), abs=1e-6)
    (tmp_path / "plain").mkdir()
    with pytest.raises(ConfigError, match=r"reward.run: .* is not a run directory"):
        load_reward_model(str(tmp_path / "plain"))
