"""The conditions study's plan and numbers, scale's one-pass rule, and the GPU evidence script's
CPU rehearsal. (Every study's --quick run is trained by the study tests.)"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from lossreweight.errors import ConfigError
from lossreweight.experiments.runs import RunRecord, read_run
from lossreweight.experiments.studies import conditions as C
from lossreweight.experiments.studies import scale

ROOT = Path(__file__).resolve().parent.parent


def test_plan_pairs_every_arm_with_uniform_on_its_own_batches():
    plan = C.STUDY.plan(quick=True)
    names = [a.name for a in plan.arms]
    assert names[:4] == ["uniform", "linupper-burn5", "linupper-progress", "linupper-burn25"]
    for cond in ("@repeat20", "@repeat40", "@math20", "@seq128"):
        assert f"uniform{cond}" in names and f"linupper-progress{cond}" in names
    for arm in plan.arms:
        assert plan.paired_to[arm.name] == "uniform" + (
            arm.name[arm.name.index("@") :] if "@" in arm.name else ""
        )
    # burn-in position first, then redundancy, the easy block, the length: stopped early,
    # the study has the main questions answered
    stages = {a.name: a.stage for a in plan.arms}
    assert stages["linupper-burn25"] < stages["uniform@repeat20"] < stages["uniform@seq128"]
    assert stages["uniform@math20"] < stages["uniform@seq128"]
    progress = next(a for a in plan.arms if a.name == "linupper-progress").overrides
    assert "reweight.burn_in_below_unigram=0.5" in progress


def test_long_sequence_arms_keep_tokens_and_samples_per_step():
    plan = C.STUDY.plan(quick=True)
    get = {a.name: a.overrides for a in plan.arms}

    def value(arm: str, key: str) -> str:
        return [o.split("=", 1)[1] for o in (*plan.overrides, *get[arm]) if o.startswith(key)][-1]

    short, long = "uniform", "uniform@seq128"
    steps_s, steps_l = int(value(short, "train.max_steps=")), int(value(long, "train.max_steps="))
    seq_s, seq_l = int(value(short, "data.seq_len=")), int(value(long, "data.seq_len="))
    assert seq_l == 4 * seq_s and steps_l == max(4, steps_s // 4)
    assert value(short, "train.batch_size=") == value(long, "train.batch_size=")


def test_seeds_and_size_for_a_bigger_machine(monkeypatch):
    monkeypatch.setenv(C.SEEDS_ENV, "5")
    assert C._seeds() == (0, 1, 2, 3, 4) and C._long_seeds(C._seeds()) == (0, 1, 2, 3, 4)
    assert C._long_seeds((0, 1, 2)) == (0, 1)
    monkeypatch.setenv(C.SEEDS_ENV, "five")
    with pytest.raises(ConfigError, match="whole number"):
        C._seeds()


def _run(arm: str, seed: int, clean: float, end: int | None, share: float = 0.0) -> RunRecord:
    by = {d: clean for d in C.NATURAL_DOMAINS}
    block = "repeat" if "repeat" in arm else None
    metrics = [
        {
            "step": s,
            "reweight/domain_weight_share/repeat": share,
            "reweight/domain_sample_share/repeat": 0.2,
        }
        for s in (5, 10, 15)
    ]
    final = {  # final.json under the metric vocabulary, as the trainer writes it
        "steps": 20,
        **{f"eval/{d}/loss": v for d, v in {**by, **({block: 1.0} if block else {})}.items()},
        "eval/domain_avg_loss": clean,
        "burn_in": {"end_step": end, "val_loss": 6.0, "unigram_entropy": 6.5, "rule": "r"},
    }
    return RunRecord(arm, seed, Path("."), final, metrics if block else [], "cached", 0.0)


def test_numbers_verdict_and_fidelity_from_runs():
    records = {
        "uniform": {s: _run("uniform", s, 5.0, 1) for s in (0, 1, 2)},
        "linupper-progress": {
            s: _run("linupper-progress", s, 5.0 - 0.1 - 0.01 * s, 8) for s in (0, 1, 2)
        },
        "uniform@repeat20": {s: _run("uniform@repeat20", s, 5.0, 1) for s in (0, 1, 2)},
        "linupper-progress@repeat20": {
            s: _run("linupper-progress@repeat20", s, 5.0 + 0.05 * (s - 1), 8, share=0.05)
            for s in (0, 1, 2)
        },
    }
    arms = C.arms_block(records)
    lin = arms["linupper-progress"]
    assert lin["paired_clean"]["mean"] == pytest.approx(-0.11)
    assert lin["burn_in_end_step"] == 8 and lin["unigram_entropy"] == 6.5
    rep = arms["linupper-progress@repeat20"]
    # the block's weight share counts only the steps after the burn-in (steps 10 and 15)
    assert rep["block_weight_share"] == pytest.approx(0.05)
    assert rep["block_sample_share"] == pytest.approx(0.2)
    assert rep["paired_clean"]["mean"] == pytest.approx(0.0)
    summary = {"arms": arms, "seeds": [0, 1, 2], "params": 475712, "steps": 20, "setup": []}
    verdict = C.verdict_sentence(summary)
    assert verdict.startswith(
        "LinUpper beats uniform on clean validation loss with a burn-in ending past the unigram "
        "entropy;"
    )
    assert "interval includes zero with a burn-in ending past the unigram entropy and 20% exact"
    assert "0.48M-parameter model" in verdict
    rows = C.fidelity_rows(summary)
    assert {r[0] for r in rows} >= {"tokens per parameter", "model size", "burn-in position"}
    assert "step 8 of 20" in dict((r[0], r[2]) for r in rows)["burn-in position"]


def test_a_run_cached_before_the_metric_names_reads_the_same(tmp_path):
    # final.json and metrics.jsonl in the flat names of older trainers: read_run converts them
    # (metric_names.from_legacy) and the study's numbers are those of a run written today.
    new = _run("linupper-progress@repeat20", 0, 5.0, 8, share=0.05)
    by = {d: 5.0 for d in C.NATURAL_DOMAINS} | {"repeat": 1.0}
    final = {"steps": 20, "val_loss_by_domain": by, "val_loss_domain_avg": 5.0}
    final["burn_in"] = new.final["burn_in"]
    shares = {"domain_weight_share": {"repeat": 0.05}, "domain_sample_share": {"repeat": 0.2}}
    rows = [{"step": r["step"], **shares} for r in new.metrics]
    (tmp_path / "final.json").write_text(json.dumps(final))
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    old_final, old_metrics = read_run(tmp_path)
    assert old_metrics == new.metrics
    assert {k: v for k, v in old_final.items() if k != "eval/worst_domain_loss"} == new.final
    old = RunRecord(new.arm, 0, tmp_path, old_final, old_metrics, "cached", 0.0)
    base = {0: _run("uniform@repeat20", 0, 5.0, 1)}
    assert C.arms_block({"uniform@repeat20": base, new.arm: {0: old}}) == C.arms_block(
        {"uniform@repeat20": base, new.arm: {0: new}}
    )


def test_scale_refuses_a_plan_that_repeats_data(monkeypatch):
    plan = scale.STUDY.plan(quick=True)  # the quick plan only reports its passes
    sizes = {"big": {"steps": 10**6}}
    with pytest.raises(ConfigError, match="1 ?.*times|times, and repetition"):
        scale.check_passes(plan.overrides, sizes, refuse=True)
    monkeypatch.setenv(scale.ALLOW_REPEATS_ENV, "1")
    scale.check_passes(plan.overrides, sizes, refuse=True)
    assert sizes["big"]["passes"] > 1


def test_gpu_evidence_rehearses_on_the_cpu(tmp_path):
    # The conditions stage is `experiment conditions --quick` there, trained by the study tests.
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import gpu_evidence

    cmds = gpu_evidence.stage_commands(tmp_path, dry=False)
    assert cmds["conditions"][0][-5:] == [
        "conditions",
        "--out",
        str(tmp_path / "conditions-runs"),
        "--jobs",
        str(gpu_evidence.JOBS),
    ]
    assert [c[3] for c in cmds["bench"]] == ["small", "gpt2-paper"]
    out = tmp_path / "ge"
    r = subprocess.run(
        [sys.executable, "benchmarks/gpu_evidence.py", "run", "--dry-run", "--out", str(out)]
        + ["--stages", "bench"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    report = json.loads((out / "evidence.json").read_text())
    assert r.returncode == 0, (r.stderr[-2000:], report)
    assert set(report["stages"]) == {"bench"}
    bench = json.loads((out / "bench_tiny.json").read_text())
    assert bench["ratio_trainer_uniform_over_minimal"] > 0
