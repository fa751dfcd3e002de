"""`lossreweight eval --tasks/--all-checkpoints` end to end, offline: a tiny run scored through
lm-evaluation-harness on a multiple-choice task in lm-eval's local-file format written here."""

from __future__ import annotations

import json
import sys

import pytest
import torch
from cli_utils import PNG_MAGIC, run_cli
from train_utils import TINY_OVERRIDES

from lossreweight.evaluation import read_curves, read_downstream
from lossreweight.train import load_config, train

pytest.importorskip("lm_eval")

TASK = "lossreweight_toy_mc"
# Short prompts: context + answer stay inside the tiny model's 32 positions (no truncation),
# so the accuracy can be recomputed exactly from our own model below.
DOCS = [
    {"q": f"{a} plus {b} is", "choices": [str(a + b + k) for k in (0, 1, 2)], "label": (a + b) % 3}
    for a in range(1, 6)
    for b in range(1, 4)
]


def _write_task(folder, data_file):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "toy.yaml").write_text(
        f"task: {TASK}\n"
        "dataset_path: json\n"
        # cache_dir: the `datasets` cache of this test, not the user's ~/.cache
        f"dataset_kwargs:\n  cache_dir: {folder / 'hf-datasets'}\n"
        f"  data_files:\n    test: {data_file}\n"
        "test_split: test\n"
        "output_type: multiple_choice\n"
        'doc_to_text: "{{q}}"\n'
        'doc_to_choice: "{{choices}}"\n'
        "doc_to_target: label\n"
        "metric_list:\n  - metric: acc\n    aggregation: mean\n    higher_is_better: true\n"
    )


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("evalds")
    data = root / "toy.jsonl"
    data.write_text("".join(json.dumps(d) + "\n" for d in DOCS))
    _write_task(root / "tasks", data)
    run = root / "run"
    train(load_config("tiny", [*TINY_OVERRIDES, "checkpoint.keep=10"]), run)  # saves steps 3, 6
    return run, root / "tasks"


def _expected_acc(run, limit):
    """lm-eval's acc recomputed from our model: log p(" choice" | prompt) summed over the
    answer's tokens, argmax against the label."""
    from transformers import AutoTokenizer

    from lossreweight.model import load_run_model

    model, _ = load_run_model(run)
    model.eval()
    tok = AutoTokenizer.from_pretrained(run / "tokenizer", local_files_only=True)
    hits = []
    for doc in DOCS[:limit]:
        scores = []
        for choice in doc["choices"]:
            ctx = tok.encode(doc["q"])
            whole = tok.encode(doc["q"] + " " + choice)
            cont = whole[len(ctx) :]
            assert len(whole) <= 32
            with torch.no_grad():
                logp = model(torch.tensor([whole[:-1]])).float().log_softmax(-1)[0]
            pos = range(len(ctx) - 1, len(whole) - 1)
            scores.append(sum(logp[p, t].item() for p, t in zip(pos, cont, strict=True)))
        hits.append(max(range(len(scores)), key=scores.__getitem__) == doc["label"])
    return sum(hits) / len(hits)


def test_tasks_scores_written_and_never_clobbered(setup):
    run, tasks = setup
    args = ["eval", str(run), "--tasks", TASK, "--include-path", str(tasks), "--device", "cpu"]
    rc, out, err = run_cli(*args, "--num-fewshot", "0", "--limit", "12", "--json")
    assert rc == 0, err[-2000:]
    first = run / "eval" / "downstream_step_00000006.json"
    record = json.loads(first.read_text())
    assert json.loads(out)["file"] == str(first)
    acc = record["metrics"][f"downstream/{TASK}/acc"]
    assert isinstance(acc, float) and 0.0 <= acc <= 1.0
    assert acc == pytest.approx(_expected_acc(run, 12), abs=1e-9)
    assert record["step"] == 6 and record["checkpoint"] == "checkpoints/step_00000006"
    assert record["n_samples"][TASK] == {"original": len(DOCS), "effective": 12}
    before = first.read_bytes()

    # A second evaluation (2-shot) gets its own file; the first is untouched.
    rc, out, err = run_cli(*args, "--num-fewshot", "2", "--limit", "4")
    assert rc == 0, err[-2000:]
    assert f"{TASK:<20} acc" in out and "wrote" in out
    second = run / "eval" / "downstream_step_00000006_2.json"
    assert first.read_bytes() == before
    assert json.loads(second.read_text())["n_shot"] == {TASK: 2}
    assert [r["file"] for r in read_downstream(run)] == [first.name, second.name]


def test_all_checkpoints_curve(setup):
    run, tasks = setup
    rc, out, err = run_cli(
        "eval",
        str(run),
        "--all-checkpoints",
        "--tasks",
        TASK,
        "--include-path",
        str(tasks),
        "--limit",
        "3",
        "--device",
        "cpu",
    )
    assert rc == 0, err[-2000:]
    assert out.count("step ") == 2 and "curve.json" in out
    curve = json.loads((run / "eval" / "curve.json").read_text())
    assert (run / "eval" / "curve.png").read_bytes().startswith(PNG_MAGIC)
    assert [p["step"] for p in curve["points"]] == [3, 6]
    rc, out, _ = run_cli("eval", str(run), "--json", "--device", "cpu")
    latest = json.loads(out)
    for point in curve["points"]:
        m = point["metrics"]
        per_domain = {d: m[f"eval/{d}/loss"] for d in curve["domains"]}
        assert m["eval/worst_domain_loss"] == max(per_domain.values())
        assert per_domain[point["worst_domain"]] == m["eval/worst_domain_loss"]
        assert m["eval/domain_avg_loss"] == pytest.approx(
            sum(per_domain.values()) / len(per_domain)
        )
        assert 0.0 <= m[f"downstream/{TASK}/acc"] <= 1.0
        assert (run / "eval" / point["downstream_file"]).is_file()
    assert curve["points"][-1]["metrics"]["eval/loss"] == pytest.approx(
        latest["eval/loss"], rel=1e-6
    )
    assert latest["worst_domain"] in curve["domains"]
    # The first checkpoint is a different model: the curve is not one point repeated.
    assert curve["points"][0]["metrics"]["eval/loss"] != curve["points"][1]["metrics"]["eval/loss"]
    # A second curve never replaces the first.
    rc, _, err = run_cli("eval", str(run), "--all-checkpoints", "--device", "cpu")
    assert rc == 0, err[-2000:]
    assert [c["file"] for c in read_curves(run)] == ["curve.json", "curve_2.json"]
    assert (run / "eval" / "curve_2.png").is_file()


def test_missing_task_data_is_one_line(setup, tmp_path):
    run, _ = setup
    before = read_downstream(run)
    _write_task(tmp_path / "tasks", tmp_path / "absent.jsonl")
    rc, _, err = run_cli(
        "eval", str(run), "--tasks", TASK, "--include-path", str(tmp_path / "tasks")
    )
    assert rc == 2 and err.count("\n") == 1 and TASK in err, err[-2000:]
    assert read_downstream(run) == before


def test_without_lm_eval_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "lm_eval", None)  # import lm_eval now raises ImportError
    rc, _, err = run_cli("eval", str(tmp_path), "--tasks", "sciq")
    assert rc == 2 and err.count("\n") == 1
    assert "pip install 'lossreweight[eval]'" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--num-fewshot", "5"], "--num-fewshot applies to downstream tasks"),
        (["--dtype", "bfloat16"], "--dtype applies to downstream tasks"),
        (["--tasks", " , "], "--tasks is empty"),
        (["--tasks", "x", "--include-path", "/nonexistent-dir"], "is not a directory"),
        (["--device", "tpu"], "--device 'tpu'"),
        (["--limit", "0"], "expected an integer >= 1"),
    ],
)
def test_flag_errors_are_one_line(setup, args, message):
    run, _ = setup
    rc, _, err = run_cli("eval", str(run), *args)
    assert rc == 2 and err.count("\n") == 1 and message in err, err


def test_lm_eval_output_path_and_log_samples(setup, tmp_path):
    run, tasks = setup
    out_dir = tmp_path / "lm-eval-out"
    rc, _, err = run_cli(
        "eval", str(run), "--tasks", TASK, "--include-path", str(tasks), "--limit", "3",
        "--device", "cpu", "--output-path", str(out_dir), "--log-samples",
    )  # fmt: skip
    assert rc == 0, err[-2000:]
    (results,) = out_dir.rglob("results_*.json")  # lm-eval's own layout: <dir>/<model>/...
    assert TASK in json.loads(results.read_text())["results"]
    (samples,) = out_dir.rglob(f"samples_{TASK}_*.jsonl")
    lines = samples.read_text().splitlines()
    assert len(lines) == 3 and "doc" in json.loads(lines[0])
    record = read_downstream(run)[-1]
    assert record["output_path"] == str(out_dir) and record["log_samples"] is True


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--output-path", "x"], "--output-path applies to downstream tasks"),
        (["--log-samples"], "--log-samples applies to downstream tasks"),
        (["--tasks", "x", "--log-samples"], "--log-samples needs --output-path"),
    ],
)
def test_lm_eval_file_flags_are_checked(setup, args, message):
    run, _ = setup
    rc, _, err = run_cli("eval", str(run), *args)
    assert rc == 2 and err.count("\n") == 1 and message in err, err


def test_unreachable_hub_task_fails_at_once_naming_it(setup, monkeypatch):
    """Without network a hub task fails in one line naming that task only (the local task
    before it loaded fine), from the hub libraries' offline mode: no minute of retries."""
    import datasets.config
    import huggingface_hub.constants

    import lossreweight.evaluation.downstream as downstream

    # As on a user's machine: online by default (the tests' conftest sets offline mode), but
    # the hub does not answer. Online, `datasets` would retry it for about a minute.
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    for module, flag in (
        (huggingface_hub.constants, "HF_HUB_OFFLINE"),
        (datasets.config, "HF_HUB_OFFLINE"),
    ):
        monkeypatch.setattr(module, flag, False)
    monkeypatch.setattr(downstream, "hub_reachable", lambda timeout=3.0: False)
    run, tasks = setup
    before = read_downstream(run)
    rc, _, err = run_cli("eval", str(run), "--tasks", f"{TASK},sciq", "--include-path", str(tasks))
    assert rc == 2 and err.count("\n") == 1, err[-2000:]
    assert "cannot load the data of sciq:" in err and TASK not in err
    assert "OfflineModeIsEnabled" in err  # the hub was never asked
    assert read_downstream(run) == before
    assert huggingface_hub.constants.HF_HUB_OFFLINE is False  # restored afterwards
