import pandas as pd
import pytest

from tests.conftest import SST2_DIR, read_sst2, write_tsv
from trainer import UserError
from trainer.config import DataConfig
from trainer.data import encode_labels, load_data, read_table, tokenize


@pytest.fixture
def frame() -> pd.DataFrame:
    return pd.DataFrame({"sentence": ['a "quoted" gem', "it 's dull", "fine"], "label": [1, 0, 1]})


@pytest.mark.parametrize("suffix", [".tsv", ".csv", ".json", ".jsonl", ".parquet"])
def test_every_format_reads_the_same_rows(tmp_path, frame, suffix):
    path = tmp_path / f"data{suffix}"
    if suffix == ".tsv":
        write_tsv(frame, path)
    elif suffix == ".csv":
        frame.to_csv(path, index=False)
    elif suffix == ".json":
        frame.to_json(path, orient="records")
    elif suffix == ".jsonl":
        frame.to_json(path, orient="records", lines=True)
    else:
        frame.to_parquet(path)
    pd.testing.assert_frame_equal(read_table(path)[["sentence", "label"]], frame)


def test_sst2_reads_every_row_with_quote_characters_as_text():
    table = read_table(SST2_DIR / "train.tsv")
    assert len(table) == 67_349 and list(table.columns) == ["sentence", "label"]
    assert table["sentence"].str.contains("'").sum() > 10_000


def test_an_unbalanced_double_quote_does_not_swallow_rows(tmp_path):
    path = tmp_path / "q.tsv"
    path.write_text('sentence\tlabel\n"a quote that never ends\t1\nnext row\t0\n')
    assert read_table(path)["sentence"].tolist() == ['"a quote that never ends', "next row"]


def test_missing_column_lists_the_columns_found(tmp_path, frame):
    path = write_tsv(frame.rename(columns={"sentence": "review"}), tmp_path / "d.tsv")
    with pytest.raises(UserError, match=r"column 'sentence' not found \(columns: review, label\).*--text_column"):
        encode_labels(read_table(path), DataConfig(), str(path))


def test_string_labels_map_to_ids_case_insensitively():
    frame = pd.DataFrame({"sentence": ["x", "y", "z"], "label": ["Positive", "negative", "positive"]})
    assert encode_labels(frame, DataConfig(), "f")["label"].tolist() == [1, 0, 1]


@pytest.mark.parametrize("labels, shown", [(["positive", "neutral"], "neutral"), ([0, 4], "4")])
def test_unknown_or_non_binary_labels_are_named(labels, shown):
    frame = pd.DataFrame({"sentence": ["x", "y"], "label": labels})
    with pytest.raises(UserError, match=rf"values \[.*'{shown}'.*\] outside the label set.*--label_names"):
        encode_labels(frame, DataConfig(), "f")


@pytest.mark.parametrize("content", ["", "sentence\tlabel\n"])
def test_empty_files_are_user_errors(tmp_path, content):
    path = tmp_path / "empty.tsv"
    path.write_text(content)
    with pytest.raises(UserError, match="empty|no data rows"):
        read_table(path)


def test_unreadable_and_unsupported_files(tmp_path):
    bad = tmp_path / "bad.parquet"
    bad.write_text("not parquet")
    with pytest.raises(UserError, match="cannot read it as parquet"):
        read_table(bad)
    with pytest.raises(UserError, match="unsupported file type '.xlsx'"):
        read_table(tmp_path / "data.xlsx")
    with pytest.raises(UserError, match="file not found"):
        read_table(tmp_path / "missing.csv")


def test_local_sst2_mirror_and_subsampling(monkeypatch):
    monkeypatch.setenv("SST2_DIR", str(SST2_DIR))
    train, dev, data_id = load_data(DataConfig(max_train_samples=100, max_eval_samples=50), seed=1)
    assert (len(train), len(dev), data_id) == (100, 50, "stanfordnlp/sst2")
    again, _, _ = load_data(DataConfig(max_train_samples=100, max_eval_samples=50), seed=1)
    assert train["text"] == again["text"]
    assert dev["text"][:3] == read_sst2("dev", 3)["sentence"].astype(str).tolist()


def test_without_the_mirror_the_hub_is_tried_and_fails_in_one_line(monkeypatch, tmp_path):
    monkeypatch.setenv("SST2_DIR", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(UserError, match="cannot load split 'train' of dataset 'stanfordnlp/sst2'") as err:
        load_data(DataConfig())
    assert "\n" not in str(err.value)


def test_train_file_needs_a_validation_file(tiny_data):
    with pytest.raises(UserError, match="--validation_file"):
        load_data(DataConfig(train_file=str(tiny_data[0])))


def test_single_class_training_data_is_rejected(tmp_path):
    path = write_tsv(pd.DataFrame({"sentence": ["a", "b"], "label": [1, 1]}), tmp_path / "one.tsv")
    with pytest.raises(UserError, match="single label"):
        load_data(DataConfig(train_file=str(path), validation_file=str(path)))


def test_tokenize_keeps_lengths_and_truncates(tiny_model_dir, tiny_data):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    train, _, _ = load_data(DataConfig(train_file=str(tiny_data[0]), validation_file=str(tiny_data[1])))
    encoded = tokenize(train, tokenizer, max_length=8)
    assert set(encoded.column_names) >= {"input_ids", "attention_mask", "labels", "length"}
    assert all(n == len(ids) <= 8 for n, ids in zip(encoded["length"], encoded["input_ids"]))
    assert encoded["labels"] == train["label"]
