"""The ONNX files a push ships: exported from the run's weights, reused while fresh, run by real clients
(ONNX Runtime in Python, transformers.js in Node) against the loopback Hub server, with the labels pipeline() gives."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.torch import load_file, save_file
from scipy.special import softmax
from transformers import AutoConfig, AutoTokenizer, pipeline

from tests.conftest import ROOT, writable_copy
from tests.hub_server import FakeHub
from trainer.export.onnx import ensure_onnx
from trainer.hub.model_repo import push_run

TOKEN = "hf_alice_0123456789abcdef"
TEXTS = ["good film , really good", "worst film , really worst", "a movie", "the plot was dull but the acting fun"]
JS = ROOT / "tests" / "js"


@pytest.fixture
def run(tiny_run, tmp_path):
    return writable_copy(tiny_run, tmp_path / "run", "checkpoints", "onnx")


@pytest.fixture
def hub(monkeypatch, tmp_path):
    with FakeHub(tokens={TOKEN: "alice"}) as server:
        for key, value in {"HF_ENDPOINT": server.url, "HF_HUB_DISABLE_XET": "1", "HF_HUB_OFFLINE": "0",
                           "HF_TOKEN": TOKEN, "HF_HOME": str(tmp_path / "hf-home")}.items():  # fmt: skip
            monkeypatch.setenv(key, value)
        import huggingface_hub.constants as constants

        monkeypatch.setattr(constants, "ENDPOINT", server.url)
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        yield server


def download(repo_id: str, tmp_path: Path) -> Path:
    """The repo as a client gets it: snapshot_download from the loopback Hub, in a fresh process (HF_ENDPOINT set)."""
    code = f"from huggingface_hub import snapshot_download; print(snapshot_download({repo_id!r}))"
    env = {**os.environ, "HF_HOME": str(tmp_path / "client-home")}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return Path(proc.stdout.strip().splitlines()[-1])


def onnx_probs(path: Path, tokenizer, texts: list[str]) -> np.ndarray:
    """ONNX Runtime on a downloaded file, one text at a time (as a client sends them)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    rows = []
    for text in texts:
        enc = tokenizer([text], return_tensors="np")
        feeds = {name: enc[name].astype(np.int64) for name in ("input_ids", "attention_mask")}
        rows.append(softmax(session.run(["logits"], feeds)[0][0].astype(np.float64)))
    return np.stack(rows)


def test_the_export_is_reused_while_fresh_and_redone_for_new_weights(run):
    paths = ensure_onnx(run)
    assert {p.name for p in paths.values()} == {"model.onnx", "model_quantized.onnx", "model_fp16.onnx"}
    stamps = {kind: path.stat().st_mtime_ns for kind, path in paths.items()}
    assert {kind: path.stat().st_mtime_ns for kind, path in ensure_onnx(run).items()} == stamps  # reused
    weights = load_file(run / "model.safetensors")
    weights["classifier.bias"] = weights["classifier.bias"] + 1.0
    save_file(weights, run / "model.safetensors", metadata={"format": "pt"})
    fresh = ensure_onnx(run)
    assert all(fresh[kind].stat().st_mtime_ns != stamps[kind] for kind in stamps)  # re-trained weights: new export
    stamp = json.loads((run / "onnx" / "export.json").read_text())
    assert len(stamp["weights_sha256"]) == 64 and stamp["opset"] == 17


def weight_bytes(path: Path) -> dict[str, int]:
    """Bytes of the file's initializers by element type ("FLOAT", "INT8", "FLOAT16", ...)."""
    import onnx
    from onnx import numpy_helper

    sizes: dict[str, int] = {}
    for init in onnx.load(str(path)).graph.initializer:
        kind = onnx.TensorProto.DataType.Name(init.data_type)
        sizes[kind] = sizes.get(kind, 0) + numpy_helper.to_array(init).nbytes
    return sizes


def test_the_int8_recipe_stores_embeddings_and_matmuls_as_int8_and_records_its_choices(run):
    import onnx

    from trainer.export.int8 import MAX_FLOAT_MATMULS, TARGET_AGREEMENT

    paths = ensure_onnx(run)
    graph = onnx.load(str(paths["int8"])).graph
    dtypes = {init.name: init.data_type for init in graph.initializer}
    embedding = next(node for node in graph.node if node.op_type == "Gather" and node.input[1] == "input_ids"
                     and dtypes.get(node.input[0]) == onnx.TensorProto.INT8)  # fmt: skip
    assert embedding.input[0].startswith("bert.embeddings.word_embeddings")  # the table is int8, a scale per row
    assert "bert.embeddings.word_embeddings.weight" not in dtypes
    assert sum(node.op_type == "MatMulInteger" for node in graph.node) >= 6  # 12 weighted MatMuls, most int8
    fp32, int8 = weight_bytes(paths["fp32"]), weight_bytes(paths["int8"])
    assert sum(int8.values()) < 0.45 * sum(fp32.values())  # int8 for every large weight, fp16 for the ones kept
    choices = json.loads((run / "onnx" / "export.json").read_text())["int8_choices"]
    assert choices["calibration_texts"] == 16 and choices["outlier_channels"] >= 0
    assert len(choices["float_matmuls"]) <= MAX_FLOAT_MATMULS
    met = min(choices["agreement"].values()) >= TARGET_AGREEMENT
    assert met or len(choices["float_matmuls"]) == MAX_FLOAT_MATMULS  # the greedy pass stops at the target or bound


def test_the_greedy_pass_keeps_matmuls_float_until_the_target_is_met(run, tmp_path, monkeypatch):
    from trainer.export import int8
    from trainer.export.onnx import ensure_onnx, label_decisions

    fp32 = ensure_onnx(run)["fp32"]
    tokenizer = AutoTokenizer.from_pretrained(run)
    ids = [np.asarray(x, dtype=np.int64) for x in tokenizer(TEXTS * 4)["input_ids"]]
    decide, margin = label_decisions(AutoConfig.from_pretrained(run))
    monkeypatch.setattr(int8, "TARGET_AGREEMENT", 1.01)  # unreachable: the pass stops at its bound
    monkeypatch.setattr(int8, "MAX_FLOAT_MATMULS", 2)
    bounded = int8.quantize_int8(fp32, tmp_path / "bounded.onnx", ids, decide, margin)
    assert len(bounded["float_matmuls"]) == 2 and bounded["calibration_texts"] == 16
    monkeypatch.setattr(int8, "TARGET_AGREEMENT", 0.0)  # met by the all-int8 file: nothing is kept float
    assert int8.quantize_int8(fp32, tmp_path / "all.onnx", ids, decide, margin)["float_matmuls"] == []
    assert int8.quantize_int8(fp32, tmp_path / "plain.onnx", None, decide, margin)["calibration_texts"] == 0
    kept = weight_bytes(tmp_path / "bounded.onnx")
    assert kept.get("FLOAT16", 0) > 0 and "FLOAT16" not in weight_bytes(tmp_path / "all.onnx")


@pytest.mark.parametrize("fixture", ["tiny_run", "tiny_multi_run"])
def test_the_recipe_counts_agreement_with_the_labels_the_inference_core_decides(fixture, request):
    """What the greedy pass calls a label change is one for the inference core too (argmax, or each label's sigmoid
    at its threshold), and a text's margin is zero exactly where its decision flips."""
    from trainer.export.onnx import label_decisions
    from trainer.inference import Classifier, probabilities

    folder = request.getfixturevalue(fixture)
    core = Classifier(folder, device="cpu")
    decide, margin = label_decisions(AutoConfig.from_pretrained(folder))
    logits = np.random.default_rng(0).normal(0, 3, size=(500, len(core.labels))).astype(np.float32)
    np.testing.assert_array_equal(decide(logits), core.decide(probabilities(logits, core.multi_label)))
    assert (margin(logits) >= 0).all()
    nudged = logits.copy()
    if core.multi_label:  # the label nearest its threshold, moved just across it
        cut = np.log(core.thresholds / (1 - core.thresholds))
        i = np.abs(logits - cut).argmin(1)
        rows = np.arange(len(logits))
        nudged[rows, i] = cut[i] - np.sign(logits[rows, i] - cut[i]) * 1e-3
    else:  # the runner-up raised just over the top label
        top = np.sort(logits, axis=1)
        nudged[np.arange(len(logits)), np.argsort(logits, axis=1)[:, -2]] = top[:, -1] + 1e-3
    assert (decide(nudged) != decide(logits)).any(1).all()
    np.testing.assert_allclose(margin(logits), np.abs(nudged - logits).max(1), atol=2e-3)


def test_scaling_outlier_channels_and_restoring_float_matmuls_keep_the_models_function(run):
    """The two graph edits of the recipe are exact: taming outliers (before quantization) changes no logit, and a
    quantized model with every MatMul given float activations back scores as fp32 up to fp16 weights."""
    import onnx

    from trainer.export import int8

    tokenizer = AutoTokenizer.from_pretrained(run)
    batches = int8.length_batches([np.asarray(x, dtype=np.int64) for x in tokenizer(TEXTS)["input_ids"]])
    model = onnx.load(str(ensure_onnx(run)["fp32"]))
    want = int8.run_logits(int8.model_bytes(model), batches)
    peaks = {
        name: np.r_[100.0, np.ones(len(peak) - 1)]  # one channel 100x the median, before every MatMul
        for name, peak in int8.activation_peaks(model, batches).items()
    }
    assert int8.tame_outliers(model, peaks) == len(peaks)
    np.testing.assert_allclose(int8.run_logits(int8.model_bytes(model), batches), want, atol=1e-4)
    weights = {init.name: init for init in model.graph.initializer}
    quantized = int8.dynamic_int8(model)
    names = int8.restorable(quantized, weights)
    assert len(names) == 12  # 6 per layer; the pooler's and the head's Gemms, made MatMuls by the quantizer, stay int8
    restored = int8.restore_float(quantized, weights, names)
    assert sum(node.op_type == "MatMulInteger" for node in restored.graph.node) == 2
    np.testing.assert_allclose(int8.run_logits(int8.model_bytes(restored), batches), want, atol=2e-2)


def test_the_fp16_file_runs_in_onnx_runtime_like_fp32_and_the_check_records_every_file(run):
    from trainer.export.int8_check import ensure_int8_check

    paths = ensure_onnx(run)
    assert weight_bytes(paths["fp16"]).get("FLOAT16", 0) > 0.9 * sum(weight_bytes(paths["fp16"]).values())
    tokenizer = AutoTokenizer.from_pretrained(run)
    np.testing.assert_allclose(onnx_probs(paths["fp16"], tokenizer, TEXTS), onnx_probs(paths["fp32"], tokenizer, TEXTS),
                               atol=1e-2)  # fmt: skip
    check = json.loads(ensure_int8_check(run, paths["int8"]).read_text())
    assert check["texts"] == 16 and 0 <= check["labels_changed"] <= 16
    for scored in (check["batched"], check["fp16"]):
        assert scored["labels_changed"] == round(16 * (1 - scored["label_agreement"]))
    assert check["fp16"]["prob_gap_max"] < 0.01  # fp16 is all but exact; int8 is checked one at a time and batched
    files = {"safetensors": run / "model.safetensors", **paths}
    assert check["files"] == {kind: round(path.stat().st_size / 1e6, 1) for kind, path in files.items()}
    assert paths["fp16"].stat().st_size < paths["fp32"].stat().st_size  # a tiny model's int8 file is mostly graph
    assert check["export"]["int8_choices"]["calibration_texts"] == 16  # the recipe's choices travel with the check


def test_a_push_ships_onnx_files_that_onnx_runtime_runs_like_pipeline(run, hub):
    result = push_run(run, "alice/tiny-onnx", token=TOKEN, retry_wait=0)
    files = set(hub.repo("alice/tiny-onnx").files("main"))
    assert {"onnx/model.onnx", "onnx/model_quantized.onnx", "onnx/model_fp16.onnx", "onnx/int8_check.json"} <= files
    assert result.changed
    repo = download("alice/tiny-onnx", run.parent)
    tokenizer = AutoTokenizer.from_pretrained(repo)
    reference = pipeline("text-classification", model=str(repo), top_k=None)(TEXTS)
    expected = np.array([[row[name] for name in ("negative", "positive")]
                         for row in ({s["label"]: s["score"] for s in scores} for scores in reference)])  # fmt: skip
    fp32 = onnx_probs(repo / "onnx" / "model.onnx", tokenizer, TEXTS)
    np.testing.assert_allclose(fp32, expected, atol=1e-4)
    int8 = onnx_probs(repo / "onnx" / "model_quantized.onnx", tokenizer, TEXTS)
    assert (int8.argmax(1) == expected.argmax(1)).all() and np.abs(int8 - expected).max() < 0.05
    np.testing.assert_allclose(onnx_probs(repo / "onnx" / "model_fp16.onnx", tokenizer, TEXTS), expected, atol=1e-2)
    check = json.loads((repo / "onnx" / "int8_check.json").read_text())
    assert check["texts"] == 16 and 0.9 <= check["label_agreement"] <= 1
    card = (repo / "README.md").read_text()
    assert "- onnx" in card and "- transformers.js" in card and "ORTModelForSequenceClassification" in card


def test_no_onnx_pushes_the_model_alone_and_a_dry_run_lists_the_files(run, hub, capsys):
    from trainer.push import main

    assert main(["--run_dir", str(run), "--hub_model_id", "alice/x", "--dry_run"]) == 0
    listed = capsys.readouterr().out
    assert all(f"onnx/{name}" in listed for name in ("model.onnx", "model_quantized.onnx", "model_fp16.onnx"))
    assert not (run / "onnx").exists()  # a dry run writes nothing
    push_run(run, "alice/plain", token=TOKEN, retry_wait=0, onnx=False)
    files = set(hub.repo("alice/plain").files("main"))
    assert not any(name.startswith("onnx/") for name in files) and "model.safetensors" in files
    assert "transformers.js" not in (run / "README.md").read_text()


def test_a_dry_run_lists_exactly_what_the_push_uploads(run, hub, capsys):
    from trainer.export.uploads import push_files
    from trainer.push import main

    def dry_run(repo_id: str, *flags: str) -> dict[str, str]:
        """{path in the repo: its size column} as `push --dry_run` prints them."""
        assert main(["--run_dir", str(run), "--hub_model_id", repo_id, "--dry_run", *flags]) == 0
        return {line.split()[-1]: line.split()[0] for line in capsys.readouterr().out.splitlines()[1:-1]}

    def pushed(repo_id: str) -> dict[str, bytes]:
        return {name: data for name, data in hub.repo(repo_id).files("main").items() if name != ".gitattributes"}

    for repo_id, flags, onnx in (("alice/same", (), True), ("alice/plain", ("--no_onnx",), False)):
        listed = dry_run(repo_id, *flags)
        push_run(run, repo_id, token=TOKEN, retry_wait=0, onnx=onnx)
        assert set(listed) == set(pushed(repo_id))
        made = {name for name, size in listed.items() if size == "at"}  # "at push": the export the push makes
        shipped = {"onnx/model.onnx", "onnx/model_quantized.onnx", "onnx/model_fp16.onnx", "onnx/int8_check.json"}
        assert made == (shipped if onnx else set())
    # with the export there, the dry run's list is the pushed files byte for byte, the card included
    files = push_files(run, "alice/same", make=False)
    local = {name: source if isinstance(source, bytes) else source.read_bytes() for name, source in files}
    assert local == pushed("alice/same")


@pytest.mark.slow
def test_transformers_js_loads_the_pushed_repo_by_id_and_agrees_with_python(run, hub, tmp_path):
    """@huggingface/transformers in Node, reading the loopback Hub (env.remoteHost), fp32, q8 and fp16."""
    if shutil.which("node") is None:
        pytest.skip("node is not installed")
    assert (JS / "node_modules" / "@huggingface" / "transformers").is_dir(), "run: npm ci --prefix tests/js"
    push_run(run, "alice/tiny-js", token=TOKEN, retry_wait=0)
    reference = pipeline("text-classification", model=str(run), top_k=None)(TEXTS)
    env = {**os.environ, "TRANSFORMERS_JS_CACHE": str(tmp_path / "js-cache")}
    for dtype, tolerance in (("fp32", 1e-4), ("q8", 0.05), ("fp16", 0.01)):
        proc = subprocess.run(["node", str(JS / "classify.mjs"), hub.url, "alice/tiny-js", dtype, *TEXTS],
                              capture_output=True, text=True, cwd=JS, env=env, timeout=300)  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-2000:]
        results = json.loads(proc.stdout.strip().splitlines()[-1])
        for got, want in zip(results, reference):
            want = {s["label"]: s["score"] for s in want}
            assert got["label"] == max(want, key=want.get)
            assert all(abs(got["scores"][label] - score) < tolerance for label, score in want.items())
    cached = {path.relative_to(tmp_path / "js-cache").as_posix() for path in (tmp_path / "js-cache").rglob("*.onnx")}
    assert cached == {
        f"alice/tiny-js/onnx/{name}" for name in ("model.onnx", "model_quantized.onnx", "model_fp16.onnx")
    }


@pytest.mark.slow  # ~90 s: an export, a push, a download and Node
def test_a_multi_label_models_onnx_files_and_transformers_js_give_its_labels(tiny_multi_run, hub, tmp_path):
    """The documented rule, in every client: sigmoid scores (pipeline, ONNX Runtime, transformers.js), each label
    chosen when its score reaches config.json's decision_thresholds; the labels equal the inference core's."""
    from scipy.special import expit

    from trainer.inference import Classifier

    run = writable_copy(tiny_multi_run, tmp_path / "multi", "checkpoints", "onnx")
    push_run(run, "alice/tiny-multi", token=TOKEN, retry_wait=0)
    local = download("alice/tiny-multi", tmp_path)
    thresholds = json.loads((local / "config.json").read_text())["decision_thresholds"]
    core = Classifier(run, device="cpu")
    want = core.predict(TEXTS)
    tokenizer = AutoTokenizer.from_pretrained(local)
    import onnxruntime as ort

    session = ort.InferenceSession(str(local / "onnx" / "model.onnx"), providers=["CPUExecutionProvider"])
    for text, answer in zip(TEXTS, want):
        enc = tokenizer([text], return_tensors="np")
        logits = session.run(["logits"], {k: enc[k].astype(np.int64) for k in ("input_ids", "attention_mask")})[0][0]
        scores = dict(zip(core.labels, expit(logits.astype(np.float64))))
        np.testing.assert_allclose([scores[n] for n in core.labels], list(answer["probabilities"].values()), atol=1e-5)
        assert {n for n, s in scores.items() if s >= thresholds[n]} == set(answer["labels"])
    if shutil.which("node") is None or not (JS / "node_modules" / "@huggingface" / "transformers").is_dir():
        pytest.skip("node or tests/js/node_modules missing: npm ci --prefix tests/js")
    env = {**os.environ, "TRANSFORMERS_JS_CACHE": str(tmp_path / "js-cache")}
    proc = subprocess.run(["node", str(JS / "classify.mjs"), hub.url, "alice/tiny-multi", "fp32", *TEXTS],
                          capture_output=True, text=True, cwd=JS, env=env, timeout=300)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    for got, answer in zip(json.loads(proc.stdout.strip().splitlines()[-1]), want):
        np.testing.assert_allclose([got["scores"][n] for n in core.labels], list(answer["probabilities"].values()),
                                   atol=1e-4)  # a sigmoid per label, as config.json's problem_type says  # fmt: skip
        assert {n for n, s in got["scores"].items() if s >= thresholds[n]} == set(answer["labels"])
