"""The Gradio Space: pure helpers, then the app on 127.0.0.1 queried through gradio_client, locally and from a Hub."""

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from transformers import pipeline

from tests.conftest import ROOT, writable_copy
from tests.hub_server import FakeHub

sys.path.insert(0, str(ROOT / "space"))
import backend  # noqa: E402

TOKEN = "hf_alice_0123456789abcdef"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- pure helpers ---


def test_check_text_rejects_empty_and_over_long_input_with_the_fix():
    assert backend.check_text("  good film \n", 2000) == "good film"
    with pytest.raises(ValueError, match="Type a sentence first"):
        backend.check_text("   ", 2000)
    with pytest.raises(ValueError, match=r"2,001 characters; the limit is 2,000.*Batch tab"):
        backend.check_text("x" * 2001, 2000)


def test_the_character_limit_follows_the_models_max_length():
    # 8 reads of max_length tokens at 4 characters a token, rounded down to the thousand
    assert [backend.char_limit(n) for n in (64, 128, 512)] == [2000, 4000, 16000]
    # 2,496 words in 12,895 characters: about the longest IMDb review
    review = " ".join(["I watched this movie last night and the acting was quite good"] * 208)
    assert backend.check_text(review, backend.char_limit(512)) == review
    assert backend.window_note(1, 128) == ""
    assert "scored in **3 overlapping windows**" in backend.window_note(3, 128)


def test_the_backend_reads_a_long_text_in_windows_and_explains_only_short_ones(tiny_model_dir):
    model = backend.SentimentModel(tiny_model_dir, device="cpu", long_text="chunk")
    long = " ".join(["good film , really good"] * 40)  # 200 tokens: windows at tokens 0, 46, 92, 138 (of 62 each)
    found = model.explain(long)
    assert (found.words, found.scores.shape, found.windows) == ([], (0,), 4)
    # explain's softmax is float32, predict_proba's float64: equal to float32's precision, not to 1e-7
    np.testing.assert_allclose(found.probs, model.predict_proba([long])[0], rtol=1e-6)
    found = model.explain("good film , really good")
    assert (len(found.words), len(found.scores), len(found.supports), found.windows) == (5, 5, 5, 1)


def test_each_word_is_coloured_by_the_class_whose_probability_falls_most_without_it(tiny_model_dir):
    model = backend.SentimentModel(tiny_model_dir, device="cpu")
    text = "worst film , really good"
    found = model.explain(text)
    words = text.split()
    full = np.log(model.predict_proba([text])[0])
    for i, cls in enumerate(found.supports):
        without = np.log(model.predict_proba([" ".join(words[:i] + words[i + 1 :])])[0])
        assert cls == int(np.argmax(full - without))
    html = backend.words_html(found, ["negative", "positive"], {"negative": "#b2182b", "positive": "#2166ac"})
    spans = re.findall(r'data-class="(\w+)" data-weight="([-\d.]+)"', html)
    assert [name for name, _ in spans] == [["negative", "positive"][c] for c in found.supports]
    assert max(abs(float(w)) for _, w in spans) == 1.0  # scaled to the strongest word
    assert "pushes toward" in html and "#2166ac" in html


def test_label_value_and_highlights_format():
    assert backend.label_value(np.array([0.25, 0.75]), ["negative", "positive"]) == {"negative": 0.25, "positive": 0.75}
    assert backend.highlights(["not", "bad", "at"], np.array([2.0, -1.0, 0.0])) == [
        ("not", 1.0), ("bad", -0.5), ("at", 0.0),
    ]  # fmt: skip
    assert backend.highlights(["same"], np.array([0.0])) == [("same", 0.0)]


def test_log_odds_from_logits_matches_the_definition():
    logits = np.array([[0.0, 2.0], [1.0, 1.0]])
    p = np.exp(2.0) / (1 + np.exp(2.0))
    np.testing.assert_allclose(backend.log_odds(logits, 1), [np.log(p / (1 - p)), 0.0])
    three = np.array([[1.0, 2.0, 3.0]])  # log P(2) - log(P(0) + P(1))
    np.testing.assert_allclose(backend.log_odds(three, 2), [3.0 - np.log(np.exp(1.0) + np.exp(2.0))])


def test_parse_upload_reads_txt_csv_and_tsv_and_names_the_problem(tmp_path):
    (tmp_path / "a.txt").write_text("good film\n\n  bad film  \n")
    assert backend.parse_upload(tmp_path / "a.txt") == ["good film", "bad film"]
    (tmp_path / "b.csv").write_text('id,review\n1,"great, really"\n2,awful\n')
    assert backend.parse_upload(tmp_path / "b.csv") == ["great, really", "awful"]
    (tmp_path / "c.tsv").write_text('sentence\tlabel\nhe said "wow\t1\n')  # quotes are text in tsv
    assert backend.parse_upload(tmp_path / "c.tsv") == ['he said "wow']

    (tmp_path / "d.json").write_text("{}")
    (tmp_path / "e.txt").write_bytes(b"caf\xe9\n")
    (tmp_path / "f.csv").write_text("a,b\n1,2\n")
    (tmp_path / "g.txt").write_text("\n \n")
    (tmp_path / "h.txt").write_text("x\n" * (backend.MAX_ROWS + 1))
    (tmp_path / "i.txt").write_text("x" * (backend.MAX_FILE_BYTES + 1))
    cases = [("d.json", "upload a .txt"), ("e.txt", "not UTF-8"), ("f.csv", "no column named text"),
             ("g.txt", "No text found"), ("h.txt", "the limit is 5,000"), ("i.txt", "the limit is 2 MB")]  # fmt: skip
    for name, message in cases:
        with pytest.raises(ValueError, match=message):
            backend.parse_upload(tmp_path / name)


def test_nearest_is_cosine_similarity_most_similar_first():
    matrix = np.array([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    idx, sims = backend.nearest(np.array([3.0, 0.0]), matrix, k=2)
    assert idx.tolist() == [0, 2]
    np.testing.assert_allclose(sims, [1.0, np.sqrt(0.5)])


def test_projection_places_new_points_with_the_fitted_pca():
    from sklearn.decomposition import PCA

    rng = np.random.default_rng(0)
    embeddings = rng.normal(size=(50, 8)) * np.arange(1, 9)
    projection = backend.Projection.fit(embeddings)
    reference = PCA(n_components=2, svd_solver="full").fit(embeddings)
    np.testing.assert_allclose(projection.transform(embeddings[:3]), reference.transform(embeddings[:3]), atol=1e-9)
    np.testing.assert_allclose(projection.transform(embeddings.mean(0)), [[0.0, 0.0]], atol=1e-9)
    np.testing.assert_allclose(projection.explained, reference.explained_variance_ratio_)
    assert projection.axis_titles()[0] == f"PC1 ({reference.explained_variance_ratio_[0]:.1%} of the variance)"


def test_filter_errors_by_type_and_confidence():
    frame = pd.DataFrame({"text": ["a", "b", "c"], "confidence": [0.95, 0.6, 0.99],
                          "error_types": ["negation;false_positive", "contrast", "negation"]})  # fmt: skip
    assert backend.filter_errors(frame, "negation", 0.9)["text"].tolist() == ["a", "c"]
    assert backend.filter_errors(frame, "all", 0.5)["text"].tolist() == ["a", "b", "c"]
    assert backend.filter_errors(frame, "neg", 0.5).empty  # whole tags only


def answers(probs, min_confidence=None):
    """Classifier.answers for a single-label model over `probs`, without a model."""
    model = backend.SentimentModel.__new__(backend.SentimentModel)
    model.labels, model.multi_label, model.thresholds = ["negative", "positive"], False, None
    return model.answers(np.array(probs), min_confidence)


def test_batch_table_and_report_text():
    table = backend.batch_table(["x", "y"], answers([[0.9, 0.1], [0.2, 0.8]]))
    assert table[["label", "confidence", "p_positive"]].values.tolist() == [
        ["negative", 0.9, 0.1],
        ["positive", 0.8, 0.8],
    ]
    table = backend.batch_table(["x", "y"], answers([[0.9, 0.1], [0.2, 0.8]], min_confidence=0.85))
    assert table["label"].tolist() == ["negative", "uncertain"]  # 0.8 < 0.85: not sure enough to answer
    assert "No `metrics.json`" in backend.report_headline(None, "alice/m")
    accuracy = {"value": 0.9, "ci_low": 0.8812, "ci_high": 0.9204}
    scores = {"accuracy": accuracy, "f1_macro": {"value": 0.8987}, "log_loss": {"value": 0.31234}}
    metrics = {"data": "glue/sst2", "eval_samples": 872, "labels": ["negative", "positive"], "evaluation": scores}
    head = backend.report_headline(metrics, "alice/m")
    # the headline first: accuracy with its interval, on which data and how many examples
    assert head.startswith("## Accuracy 90.0% (95% CI 88.1%–92.0%)\non the **872** examples of `glue/sst2`")
    assert "macro F1 0.899" in head and "[alice/m](https://huggingface.co/alice/m)" in head
    table = backend.metrics_markdown(metrics, "alice/m")
    assert "| accuracy | 0.900 | 0.881–0.920 |" in table and "| log_loss | 0.312 |  |" in table  # three decimals
    tested = {**metrics, "test": {"accuracy": {"value": 0.85, "ci_low": 0.83, "ci_high": 0.87}}, "test_samples": 1066}
    assert "validation split of `glue/sst2`" in backend.report_headline(tested, "alice/m")
    assert "**Test split:** accuracy 85.0% (95% CI 83.0%–87.0%) on 1,066 examples" in backend.report_headline(
        tested, "alice/m"
    )
    table = backend.metrics_markdown(tested, "alice/m")
    assert "| metric | validation | 95% CI | test | 95% CI |" in table
    assert "| accuracy | 0.900 | 0.881–0.920 | 0.850 | 0.830–0.870 |" in table


def test_a_bare_model_folder_has_no_artifacts(tiny_run, tmp_path):
    bare = tmp_path / "bare"
    bare.mkdir()
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"):
        shutil.copy(tiny_run / name, bare / name)
    found = backend.Artifacts.read(bare)
    assert (found.metrics, found.errors, found.points, found.slices, found.behavioral) == (None,) * 5
    assert found.plots == {} and len(found.widget) == 2  # fallback examples


# --- the app, in this process ---


# app_client (conftest.py): the app serving a copy of the tiny run, shared with test_bad_inputs.py


def test_api_names_the_endpoints(app_client):
    client, _, _ = app_client
    named = set(client.view_api(print_info=False, return_format="dict")["named_endpoints"])
    assert named == {"/predict", "/explain", "/batch", "/explore", "/export_selection", "/errors", "/relabel"}


def test_predict_returns_the_label_value_that_pipeline_agrees_with(app_client):
    client, run, _ = app_client
    text = "good film , really good"
    result = client.predict(text, api_name="/predict")
    expected = pipeline("text-classification", model=str(run), top_k=None)([text])[0]
    assert result["label"] == max(expected, key=lambda r: r["score"])["label"]
    assert {c["label"]: round(c["confidence"], 4) for c in result["confidences"]} == {
        r["label"]: round(r["score"], 4) for r in expected
    }


def test_explain_highlights_every_word_and_reports_latency(app_client):
    client, _, _ = app_client
    words, note = client.predict("worst film , really worst", api_name="/explain")
    spans = re.findall(r'data-class="(\w+)" data-weight="([-\d.]+)"[^>]*>([^<]*)</span>', words)
    assert [word for _, _, word in spans] == ["worst", "film", ",", "really", "worst"]
    assert max(abs(float(weight)) for _, weight, _ in spans) == 1.0
    assert {name for name, _, _ in spans} <= {"negative", "positive"}
    assert " ms**" in note and "occlusion" in note


def test_a_long_text_is_scored_in_windows_and_the_note_says_so(app_client):
    client, _, app = app_client
    long = " ".join(["good film , really good"] * 40)  # 959 characters, 200 tokens: 4 windows of the 64-token model
    assert app.LIMIT == 2000 and app.MODEL.long_text == "chunk"
    result = client.predict(long, api_name="/predict")
    expected = app.MODEL.predict_proba([long])[0]
    assert {c["label"]: round(c["confidence"], 4) for c in result["confidences"]} == {
        name: round(float(p), 4) for name, p in zip(app.MODEL.labels, expected)
    }
    words, note = client.predict(long, api_name="/explain")
    assert words == "" and "longer than the 64 tokens the model reads at once" in note
    assert "scored in **4 overlapping windows**" in note


def test_empty_and_over_long_text_get_a_message_not_a_trace(app_client):
    client, _, _ = app_client
    with pytest.raises(AppError, match="Type a sentence first"):
        client.predict("   ", api_name="/predict")
    with pytest.raises(AppError, match="the limit is 2,000"):
        client.predict("good " * 1000, api_name="/explain")


@pytest.mark.slow  # the load test, ~10 s
def test_load_of_200_predictions_from_20_clients_all_answered_like_offline(app_client):
    """The bounded load test: 20 concurrent clients, 200 texts with 20 over-long ones mixed in, through
    gradio_client's /predict and then the JSON API; every text is answered with the offline label and every
    over-long text gets the message. (Latencies are measured by `make bench-space`, not asserted here.)"""
    from benchmark import load_test, load_texts

    client, run, _ = app_client
    texts = load_texts(200)
    result = load_test(client.src, texts, clients=20, oversized=20)
    offline = pipeline("text-classification", model=str(run))(texts)
    assert result["labels"] == [r["label"] for r in offline]
    assert result["latency_ms"]["n"] == 200 and result["requests"] == 220
    assert len(result["rejected"]) == 20 and all("the limit is 2,000" in m for m in result["rejected"])
    # the same load through the JSON API
    result = load_test(client.src, texts, clients=20, oversized=20, via="json")
    assert result["labels"] == [r["label"] for r in offline]
    assert len(result["rejected"]) == 20 and all("the limit is 2,000" in m for m in result["rejected"])


def test_batch_scores_lines_and_uploads_and_offers_a_csv(app_client, tmp_path):
    client, _, app = app_client
    table, csv_path = client.predict("good film\nworst film", None, api_name="/batch")
    assert table["headers"][:3] == ["text", "label", "confidence"] and len(table["data"]) == 2
    downloaded = pd.read_csv(csv_path)
    assert downloaded["text"].tolist() == ["good film", "worst film"]
    probs = app.MODEL.predict_proba(["good film", "worst film"])
    assert downloaded["label"].tolist() == [app.MODEL.labels[i] for i in probs.argmax(1)]

    upload = tmp_path / "reviews.csv"
    upload.write_text("review\nbest film\nawful film\nfun\n")
    table, _ = client.predict("", handle_file(str(upload)), api_name="/batch")
    assert [row[0] for row in table["data"]] == ["best film", "awful film", "fun"]
    no_text = tmp_path / "numbers.csv"
    no_text.write_text("a,b\n1,2\n")
    with pytest.raises(AppError, match=r"numbers.csv: no column named text or sentence \(columns: a, b\)"):
        client.predict("", handle_file(str(no_text)), api_name="/batch")
    wrong_type = tmp_path / "reviews.json"
    wrong_type.write_text("{}")
    with pytest.raises(AppError, match="Invalid file type"):  # Gradio enforces file_types before our code runs
        client.predict("", handle_file(str(wrong_type)), api_name="/batch")


def figure_of(plot: dict) -> dict:
    """The plotly figure a gr.Plot output carries."""
    assert plot["type"] == "plotly"
    return json.loads(plot["plot"])


def test_explorer_places_the_sentence_and_lists_neighbours(app_client):
    client, run, app = app_client
    plot, neighbours, note = client.predict("best film , really best", "correct / incorrect", 3, api_name="/explore")
    traces = {trace["name"].split(" (")[0].split(":")[0]: trace for trace in figure_of(plot)["data"]}
    stored = pd.read_parquet(run / "embeddings.parquet")
    # Each validation point is coloured by whether the run's analysis got it right; yours is a star, its
    # neighbours are ringed.
    assert set(traces) == {"correct", "incorrect", "3 nearest neighbours", "your sentence"}
    assert len(traces["correct"]["x"]) == int(stored["correct"].sum())
    assert len(traces["correct"]["x"]) + len(traces["incorrect"]["x"]) == len(stored) == 16
    assert traces["your sentence"]["marker"]["symbol"] == "star" and traces["your sentence"]["marker"]["size"] > 20
    assert len(traces["3 nearest neighbours"]["x"]) == 3 and len(neighbours["data"]) == 3 and "cosine" in note
    # hovering shows the text, its true label, the prediction and the confidence
    text, label, predicted, confidence = traces["correct"]["customdata"][0]
    first = stored[stored["correct"]].iloc[0]
    assert (label, predicted) == (first["label"], first["predicted"]) and 0.5 <= confidence <= 1
    axes = figure_of(plot)["layout"]
    assert axes["xaxis"]["title"]["text"].startswith("PC1 (") and "of the variance" in axes["yaxis"]["title"]["text"]
    # The listed neighbours are the most similar by cosine in the full embedding space.
    pooled = app.MODEL.score(["best film , really best"], embeddings=True).embeddings
    sims = (
        np.stack(stored["embedding"])
        @ pooled[0]
        / (np.linalg.norm(np.stack(stored["embedding"]), axis=1) * np.linalg.norm(pooled[0]))
    )
    assert [row[4] for row in neighbours["data"]] == pytest.approx(sorted(sims, reverse=True)[:3], abs=1e-3)
    exported = pd.read_csv(client.predict(api_name="/export_selection"))
    assert exported["text"].tolist() == [row[1] for row in neighbours["data"]]
    # Without a sentence: the validation set alone, coloured by true label in the classes' colours.
    plot, neighbours, _ = client.predict("", "true label", 3, api_name="/explore")
    colours = {t["name"].split(" (")[0]: t["marker"]["color"] for t in figure_of(plot)["data"]}
    assert colours == {name: app.COLOURS[name] for name in set(stored["label"])} and neighbours["data"] == []


def test_errors_tab_filters_by_confidence(app_client):
    client, run, _ = app_client
    table = client.predict("all", 0.5, api_name="/errors")
    wrong = pd.read_csv(run / "incorrect_predictions.csv")
    assert len(table["data"]) == int((wrong["confidence"] >= 0.5).sum())


# --- the app as deployed: its own process, the model and artifacts from a Hub repo ---


@pytest.mark.slow  # push, push_space and the app in their own processes, ~14 s
def test_app_serves_a_pushed_model_from_the_hub(tiny_run, tmp_path):
    run = writable_copy(tiny_run, tmp_path / "run", "embeddings.parquet")
    with FakeHub(tokens={TOKEN: "alice"}) as hub:
        env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
        env.update(HF_ENDPOINT=hub.url, HF_HUB_DISABLE_XET="1", HF_HUB_OFFLINE="0", HF_TOKEN=TOKEN,
                   HF_HOME=str(tmp_path / "hf"))  # fmt: skip
        pushed = subprocess.run([sys.executable, "-m", "trainer.push", "--run_dir", str(run), "--hub_model_id",
                                 "alice/tiny"], capture_output=True, text=True, env=env, cwd=ROOT)  # fmt: skip
        assert pushed.returncode == 0, pushed.stderr
        command = [sys.executable, "-m", "trainer.push_space", "--space_id", "alice/tiny-demo"]
        command += ["--model_id", "alice/tiny"]
        space = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT)
        assert space.returncode == 0, space.stderr
        repo = hub.repo("alice/tiny-demo", "space")
        deployed = repo.files("main")
        assert set(deployed) == {".gitattributes", "app.py", "backend.py", "batching.py", "serving.py", "inference.py",
                                 "palette.py", "run_folder.py", "requirements.txt", "README.md"}  # fmt: skip
        for core in ("inference.py", "palette.py", "run_folder.py"):  # the core modules, not copies
            assert deployed[core] == (ROOT / "trainer" / core).read_bytes(), core
        assert repo.variables == {"MODEL_ID": "alice/tiny"} and repo.sdk == "gradio"
        assert "models:\n- alice/tiny\n" in deployed["README.md"].decode()
        space_dir = tmp_path / "deployed"  # the Space runs from the pushed files alone
        space_dir.mkdir()
        for name, data in deployed.items():
            (space_dir / name).write_bytes(data)

        port = free_port()
        env.update(MODEL_ID="alice/tiny", GRADIO_SERVER_PORT=str(port))
        proc = subprocess.Popen([sys.executable, "app.py"], cwd=space_dir, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip
        try:
            client = None
            for _ in range(600):
                if proc.poll() is not None:
                    pytest.fail(proc.stderr.read())
                try:
                    client = Client(f"http://127.0.0.1:{port}/", verbose=False)
                    break
                except Exception:  # noqa: BLE001 - not up yet
                    time.sleep(0.1)
            assert client is not None
            # The Space's answer is the one the pushed run gives offline: same label, same probabilities.
            served = client.predict("good film", api_name="/predict")
            offline = pipeline("text-classification", model=str(run), top_k=None)(["good film"])[0]
            assert served["label"] == max(offline, key=lambda r: r["score"])["label"]
            probabilities = {c["label"]: c["confidence"] for c in served["confidences"]}
            assert probabilities == pytest.approx({r["label"]: r["score"] for r in offline}, abs=1e-4)
            # The JSON API scores with the pushed int8 file, which the Space downloaded with the model.
            import httpx

            from trainer.inference import Classifier

            answer = httpx.post(f"http://127.0.0.1:{port}/api/classify", json={"inputs": "good film"}).json()[0]
            int8 = Classifier(run, device="cpu", backend="onnx-int8").predict_proba(["good film"])[0]
            assert {r["label"]: r["score"] for r in answer} == pytest.approx(
                dict(zip(["negative", "positive"], int8.tolist())), abs=1e-6
            )
            # Only predictions.parquet was pushed: the explorer embeds the validation texts on first use.
            plot, _, _ = client.predict("", "true label", 5, api_name="/explore")
            assert sum(len(trace["x"]) for trace in figure_of(plot)["data"]) == 16
        finally:
            proc.terminate()
            proc.wait(timeout=30)


def test_the_space_shares_the_trainers_inference_core_and_imports_nothing_else_of_the_repo():
    for core in ("inference.py", "palette.py", "run_folder.py"):
        assert (ROOT / "space" / core).is_symlink(), core
        assert (ROOT / "space" / core).resolve() == (ROOT / "trainer" / core).resolve(), core
    probe = "import sys, backend; print(sorted({m.split('.')[0] for m in sys.modules} & {'trainer', 'model_card'}))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=ROOT / "space")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_push_space_refuses_a_local_model_path(tiny_run, tmp_path):
    done = subprocess.run([sys.executable, "-m", "trainer.push_space", "--model_id", str(tiny_run)],
                          capture_output=True, text=True, cwd=ROOT)  # fmt: skip
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "push the model first" in done.stderr


# --- the JSON API beside the UI ---


def post(url: str, body) -> tuple[int, object]:
    import httpx

    sent = httpx.post(url + "api/classify", content=body if isinstance(body, bytes) else json.dumps(body),
                      headers={"content-type": "application/json"}, timeout=30)  # fmt: skip
    return sent.status_code, sent.json()


def test_the_json_api_answers_as_hugging_face_inference_servers_do(app_client):
    client, run, app = app_client
    texts = ["good film , really good", "worst film"]
    status, one = post(client.src, {"inputs": texts[0]})
    offline = pipeline("text-classification", model=str(run), top_k=None)(texts)
    assert status == 200 and len(one) == 1
    assert [r["label"] for r in one[0]] == [r["label"] for r in offline[0]]  # most likely first
    assert [r["score"] for r in one[0]] == pytest.approx([r["score"] for r in offline[0]], abs=1e-5)
    status, both = post(client.src, {"inputs": texts})
    assert status == 200 and [[r["label"] for r in row] for row in both] == [
        [r["label"] for r in row] for row in offline
    ]
    status, top = post(client.src, {"inputs": texts, "parameters": {"top_k": 1}})
    assert status == 200 and [row[0]["label"] for row in top] == [row[0]["label"] for row in offline]
    assert {len(row) for row in top} == {1}
    # the same answer as the UI's /predict
    ui = client.predict(texts[0], api_name="/predict")
    assert ui["label"] == one[0][0]["label"]


def test_the_json_api_answers_uncertain_below_min_confidence_and_only_there(app_client):
    client, _, app = app_client
    texts = ["good film , really good", "worst film", "the plot", "fun , but dull", "best acting", "a movie"]
    probs = app.MODEL.predict_proba(texts)
    cut = float(np.median(probs.max(1)))
    assert (probs.max(1) < cut).any() and (probs.max(1) >= cut).any()
    status, answer = post(client.src, {"inputs": texts, "parameters": {"min_confidence": cut}})
    assert status == 200
    for row, p in zip(answer, probs):
        classes = [app.MODEL.labels[j] for j in np.argsort(-p, kind="stable")]
        if p.max() < cut:  # led by the answer, then the classes as always
            assert row[0] == {"label": "uncertain", "score": pytest.approx(p.max(), abs=1e-6)}
            assert [r["label"] for r in row[1:]] == classes
        else:
            assert [r["label"] for r in row] == classes
    status, answer = post(client.src, {"inputs": texts})  # no minimum: today's answer, never uncertain
    assert status == 200 and all(r["label"] != "uncertain" for row in answer for r in row)


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (b"{not json", 400, "the body is not JSON"),
        ({"text": "good"}, 400, "no inputs: send JSON like"),
        ({"inputs": 3}, 400, "inputs must be a string or a list of strings"),
        ({"inputs": "   "}, 422, "the text is empty"),
        ({"inputs": ["good", ""]}, 422, "inputs[1] is empty"),
        ({"inputs": []}, 422, "inputs is an empty list"),
        ({"inputs": "good " * 500}, 422, "the text has 2,500 characters; the limit is 2,000"),
        ({"inputs": ["good"] * 5001}, 413, "5,001 texts in one request; the limit is 5,000"),
        ({"inputs": "good", "parameters": {"top_k": 0}}, 400, "parameters.top_k must be a whole number"),
        ({"inputs": "good", "parameters": {"min_confidence": 1.5}}, 422, "min_confidence 1.5: use a probability in"),
        ({"inputs": "good", "parameters": []}, 400, "parameters must be an object"),
    ],
)
def test_the_json_api_rejects_bad_input_with_a_4xx_and_one_line(app_client, body, status, message):
    client, _, _ = app_client
    got, answer = post(client.src, body)
    assert got == status and set(answer) == {"error"}
    assert message in answer["error"] and "\n" not in answer["error"]


def test_the_errors_table_puts_labels_first_text_last_and_tints_labels_in_their_colours():
    frame = pd.DataFrame({"text": ["a long review"], "true_label": ["negative"], "predicted_label": ["positive"],
                          "confidence": [0.98765], "error_types": ["negation;contrast"]})  # fmt: skip
    colours = {"negative": "#b2182b", "positive": "#2166ac"}
    styled = backend.error_view(frame, colours)
    assert list(styled.data.columns) == ["true label", "predicted", "confidence", "error types", "text"]
    assert styled.data.iloc[0].tolist() == ["negative", "positive", 0.988, "negation, contrast", "a long review"]
    html = styled.to_html()
    assert "rgba(178, 24, 43, 0.30)" in html and "rgba(33, 102, 172, 0.30)" in html
    # widths add up to the table's width, the text taking what the short columns leave
    assert backend.error_widths(frame.columns) == ["11%", "11%", "9%", "18%", "51%"]
    assert backend.error_widths([*frame.columns, "class_distance"])[-2:] == ["7%", "44%"]


def test_the_errors_in_view_download_as_a_relabelling_sheet(app_client):
    """The Errors tab's download: the rows the filters show, with the given label to keep or correct, in the columns
    `train --corrections` reads back."""
    client, run, _ = app_client
    path = client.predict("all", 0.5, api_name="/relabel")
    sheet = pd.read_csv(path, keep_default_na=False)
    wrong = pd.read_csv(run / "incorrect_predictions.csv", keep_default_na=False)
    shown = wrong[wrong["confidence"] >= 0.5]
    assert list(sheet.columns) == ["text", "given", "predicted", "confidence", "why", "label"]
    assert sheet["text"].tolist() == shown["text"].tolist() and (sheet["label"] == sheet["given"]).all()
    assert set(sheet["given"]) <= {"negative", "positive"} and sheet["why"].str.startswith("mistake: ").all()
