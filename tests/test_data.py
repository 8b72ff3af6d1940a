import pandas as pd
import pytest

from tests.conftest import DATA_MIRROR, SST2_DIR, read_sst2, write_tsv
from trainer import UserError
from trainer.config import DataConfig
from trainer.data import encode_labels, load_splits, read_table, stratified_sample, tokenize


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


@pytest.mark.data_mirror("sst2")
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


def splits_of(tmp_path, train_labels, dev_labels, **cfg):
    """load_splits on a train/validation CSV pair holding these labels."""
    for name, labels in (("train", train_labels), ("dev", dev_labels)):
        pd.DataFrame({"sentence": [f"text {i}" for i in range(len(labels))], "label": labels}).to_csv(
            tmp_path / f"{name}.csv", index=False
        )
    return load_splits(DataConfig(train_file=str(tmp_path / "train.csv"), validation_file=str(tmp_path / "dev.csv"),
                                  **cfg))  # fmt: skip


def test_three_string_labels_name_themselves_along_the_sentiment_scale(tmp_path):
    splits = splits_of(tmp_path, ["positive", "Neutral", "negative", "neutral", "POSITIVE"], ["neutral", "negative"])
    assert splits.label_names == ["negative", "Neutral", "positive"]  # scale order; the first spelling names it
    assert splits.train["label"].tolist() == [2, 1, 0, 1, 2] and splits.validation["label"].tolist() == [1, 0]


def test_labels_without_a_scale_are_ordered_alphabetically_and_given_names_win(tmp_path):
    assert splits_of(tmp_path, ["tech", "sports", "politics"], ["tech"]).label_names == ["politics", "sports", "tech"]
    given = splits_of(tmp_path, ["tech", "sports", "politics"], ["tech"], label_names=["tech", "sports", "politics"])
    assert given.label_names == ["tech", "sports", "politics"] and given.train["label"].tolist() == [0, 1, 2]


def test_ids_without_names(tmp_path):
    assert splits_of(tmp_path, [0, 1, 1], [0, 1]).label_names == ["negative", "positive"]  # the GLUE convention
    with pytest.raises(UserError, match=r"labels are the ids \[0, 1, 2\] and the data names none: pass --label_names"):
        splits_of(tmp_path, [0, 1, 2], [2, 0])


@pytest.mark.data_mirror("sst5")
def test_sst5_takes_its_five_names_from_the_parquet_class_label(monkeypatch):
    monkeypatch.setenv("DATA_MIRROR", str(DATA_MIRROR))
    splits = load_splits(DataConfig(dataset_name="SetFit/sst5", text_column="text", test_split="test"))
    assert splits.label_names == ["very negative", "negative", "neutral", "positive", "very positive"]
    assert (len(splits.train), len(splits.validation), len(splits.test)) == (8544, 1101, 2210)
    assert splits.train["label"].value_counts().sort_index().tolist() == [1092, 2218, 1624, 2322, 1288]


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


@pytest.mark.data_mirror("sst2")
def test_the_data_mirror_serves_hub_ids_and_records_the_file(monkeypatch):
    monkeypatch.setenv("DATA_MIRROR", str(DATA_MIRROR))
    splits = load_splits(DataConfig(max_train_samples=100, max_eval_samples=50), seed=1)
    assert (len(splits.train), len(splits.validation), splits.test, splits.data_id) == (
        100,
        50,
        None,
        "stanfordnlp/sst2",
    )
    assert splits.sources == {"train": str((SST2_DIR / "train.tsv").resolve()),
                              "validation": str((SST2_DIR / "dev.tsv").resolve())}  # fmt: skip
    again = load_splits(DataConfig(max_train_samples=100, max_eval_samples=50), seed=1)
    assert splits.train["text"].tolist() == again.train["text"].tolist()  # seeded
    other = load_splits(DataConfig(max_train_samples=100), seed=2)
    assert splits.train["text"].tolist() != other.train["text"].tolist()
    dev = read_sst2("dev", 872)["sentence"].astype(str)
    assert set(splits.validation["text"]) <= set(dev) and splits.validation["text"].tolist() != dev[:50].tolist()


@pytest.mark.data_mirror("rotten_tomatoes")
def test_rotten_tomatoes_reads_offline_with_its_test_split(monkeypatch):
    monkeypatch.setenv("DATA_MIRROR", str(DATA_MIRROR))
    cfg = DataConfig(dataset_name="cornell-movie-review-data/rotten_tomatoes", text_column="text", test_split="test")
    splits = load_splits(cfg)
    assert (len(splits.train), len(splits.validation), len(splits.test)) == (8530, 1066, 1066)
    assert splits.sources["test"].endswith("rotten_tomatoes/test.parquet")
    assert splits.test["label"].value_counts().to_dict() == {0: 533, 1: 533}


@pytest.mark.data_mirror("rotten_tomatoes")
def test_a_small_subset_of_a_label_sorted_split_has_both_classes(monkeypatch):
    """rotten_tomatoes lists every positive first: the first 100 test rows are one class, a subset is not."""
    monkeypatch.setenv("DATA_MIRROR", str(DATA_MIRROR))
    cfg = DataConfig(dataset_name="cornell-movie-review-data/rotten_tomatoes", text_column="text", test_split="test",
                     max_train_samples=1000, max_eval_samples=10, max_test_samples=100)  # fmt: skip
    splits = load_splits(cfg, seed=42)
    first = pd.read_parquet(DATA_MIRROR / "rotten_tomatoes" / "test.parquet").head(100)
    assert first["label"].nunique() == 1
    assert splits.train["label"].value_counts().to_dict() == {0: 500, 1: 500}
    assert splits.validation["label"].value_counts().to_dict() == {0: 5, 1: 5}
    assert splits.test["label"].value_counts().to_dict() == {0: 50, 1: 50}


def test_stratified_sample_keeps_proportions_and_falls_back_for_tiny_classes():
    frame = pd.DataFrame({"text": [f"t{i}" for i in range(100)], "label": [0] * 80 + [1] * 20})
    part = stratified_sample(frame, 10, seed=0)
    assert part["label"].value_counts().to_dict() == {0: 8, 1: 2} and part.index.tolist() == list(range(10))
    assert stratified_sample(frame, None, 0) is frame and stratified_sample(frame, 500, 0) is frame
    lonely = pd.DataFrame({"text": list("abcd"), "label": [0, 0, 0, 1]})  # one row of class 1: cannot stratify
    assert len(stratified_sample(lonely, 2, seed=0)) == 2


def test_validation_carved_from_train_is_stratified_and_disjoint(tmp_path):
    rows = pd.DataFrame({"sentence": [f"text {i}" for i in range(200)], "label": [1] * 150 + [0] * 50})
    train_file = write_tsv(rows, tmp_path / "train.tsv")
    test_file = write_tsv(rows.head(20), tmp_path / "test.tsv")
    cfg = DataConfig(train_file=str(train_file), test_file=str(test_file), validation_split_percentage=10)
    splits = load_splits(cfg, seed=3)
    assert (len(splits.train), len(splits.validation), len(splits.test)) == (180, 20, 20)
    assert splits.validation["label"].value_counts().to_dict() == {1: 15, 0: 5}
    assert not set(splits.train["text"]) & set(splits.validation["text"])
    assert splits.sources["validation"] == "10% of train, stratified by label (seed 3)"


def test_a_missing_split_in_the_mirror_names_the_splits_it_has(monkeypatch, tmp_path):
    folder = tmp_path / "imdb"
    folder.mkdir()
    pd.DataFrame({"text": ["good", "bad"], "label": [1, 0]}).to_parquet(folder / "train-00000-of-00001.parquet")
    pd.DataFrame({"text": ["fine"], "label": [1]}).to_parquet(folder / "test.parquet")
    monkeypatch.setenv("DATA_MIRROR", str(tmp_path))
    cfg = DataConfig(dataset_name="stanfordnlp/imdb", text_column="text")
    with pytest.raises(
        UserError, match=r"has no 'validation' split \(it has: test, train\).*--validation_split_percentage"
    ):
        load_splits(cfg)
    with pytest.raises(UserError, match="test_split 'validation' is also the train or validation split"):
        DataConfig(dataset_name="stanfordnlp/imdb", test_split="validation")


def test_without_the_mirror_the_hub_is_tried_and_fails_in_one_line(monkeypatch, tmp_path):
    monkeypatch.setenv("DATA_MIRROR", "")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(UserError, match="cannot load split 'train' of dataset 'stanfordnlp/sst2'") as err:
        load_splits(DataConfig())
    assert "\n" not in str(err.value)


def test_train_file_needs_a_validation_file(tiny_data):
    with pytest.raises(UserError, match="--validation_file.*--validation_split_percentage"):
        load_splits(DataConfig(train_file=str(tiny_data[0])))


def test_single_class_training_data_is_rejected(tmp_path):
    path = write_tsv(pd.DataFrame({"sentence": ["a", "b"], "label": [1, 1]}), tmp_path / "one.tsv")
    with pytest.raises(UserError, match="single label"):
        load_splits(DataConfig(train_file=str(path), validation_file=str(path)))


def test_tokenize_keeps_lengths_and_truncates(tiny_model_dir, tiny_data):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    train, _, _ = load_splits(DataConfig(train_file=str(tiny_data[0]), validation_file=str(tiny_data[1]))).datasets()
    encoded = tokenize(train, tokenizer, max_length=8)
    assert set(encoded.column_names) >= {"input_ids", "attention_mask", "labels", "length"}
    assert all(n == len(ids) <= 8 for n, ids in zip(encoded["length"], encoded["input_ids"]))
    assert encoded["labels"] == train["label"]
