"""The model folders `make gpu-check` trains from: the dry run's tiny BERT, bert-base's shape with random weights,
and what a lent GPU machine cannot fetch (SST-2 and the MiniLM in fp16, packed to carry there; its fp32 copy)."""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

from trainer import UserError, files
from trainer.run_folder import WEIGHTS

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[1]
BERT_PRESET = "configs/sst2-bert-base.yaml"
MINILM_PRESET = "configs/sst2-minilm.yaml"
TEACHER_MODEL = "bert-base-uncased"


def preset_value(preset: str, key: str):
    """One option of a preset, as its YAML gives it."""
    import yaml

    return yaml.safe_load((ROOT / preset).read_text())[key]


def dry_run_model(folder: Path) -> str:
    """The dry run's tiny model, its vocabulary from the MiniLM preset's training texts (the data mirror)."""
    from trainer.data import load_split

    texts = load_split(preset_value(MINILM_PRESET, "dataset_name"), None, "train")
    return str(tiny_model(folder, texts[preset_value(MINILM_PRESET, "text_column")].head(2000).tolist()))


def tiny_model(folder: Path, texts: list[str], words: int = 500) -> Path:
    """A 2-layer, 32-wide BERT whose vocabulary is the commonest words of `texts`, saved like a Hub model folder."""
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    common = [word for word, _ in Counter(" ".join(texts).lower().split()).most_common(words)]
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *sorted(set(common) - {"[pad]", "[unk]"})]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    BertTokenizerFast(vocab=str(folder / "vocab.txt")).save_pretrained(folder)
    config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128)  # fmt: skip
    BertForSequenceClassification(config).save_pretrained(folder)
    return folder


def pack(folder: Path, model: str) -> int:
    """What a lent GPU machine can neither fetch nor hold beside the repo, into `folder` to carry there: the MiniLM
    preset's data from the mirror, and `model` with fp16 weights (the MiniLM's fp32 file alone, 91 MB, is over the
    64 MiB that travels). Returns the bytes written."""
    from safetensors.torch import load_file, save

    from trainer.data import mirror_folder
    from trainer.modeling import resolve_model_path

    dataset = preset_value(MINILM_PRESET, "dataset_name")
    if (data := mirror_folder(dataset)) is None:
        raise UserError(f"no copy of {dataset} in the data mirror: set DATA_MIRROR to a copy of ../shared/data")
    source = Path(resolve_model_path(model))
    if not (source / WEIGHTS).is_file():
        raise UserError(f"--student_model {model} is not a model folder with {WEIGHTS} here: pack a local model")
    copies = {folder / "data" / data.name / f.name: f for f in data.iterdir() if f.is_file()}
    copies |= {folder / "model" / f.name: f for f in source.iterdir() if f.is_file() and f.name != WEIGHTS}
    for target, original in copies.items():
        target.parent.mkdir(parents=True, exist_ok=True)
        files.write_bytes(target, original.read_bytes())
    weights = load_file(source / WEIGHTS)
    files.write_bytes(folder / "model" / WEIGHTS, save({k: v.half() if v.is_floating_point() else v
                                                         for k, v in weights.items()}, {"format": "pt"}))  # fmt: skip
    return sum(path.stat().st_size for path in [*copies, folder / "model" / WEIGHTS])


def full_precision(model: str, folder: Path) -> str:
    """`model` as it is, or, for a model folder with half-precision weights (a packed one), an fp32 copy in `folder`:
    from_pretrained keeps a checkpoint's dtype, and training needs fp32 master weights."""
    import torch
    from safetensors.torch import load_file, save

    weights_file = Path(model) / WEIGHTS
    weights = load_file(weights_file) if weights_file.is_file() else {}
    if not any(v.dtype in (torch.float16, torch.bfloat16) for v in weights.values()):
        return model
    folder.mkdir(parents=True, exist_ok=True)
    for original in Path(model).iterdir():
        if original.is_file() and original.name != WEIGHTS:
            files.write_bytes(folder / original.name, original.read_bytes())
    files.write_bytes(folder / WEIGHTS, save({k: v.float() if v.is_floating_point() else v
                                              for k, v in weights.items()}, {"format": "pt"}))  # fmt: skip
    logger.info("%s has half-precision weights: training from an fp32 copy, %s", model, folder)
    return str(folder)


def bert_shape_model(folder: Path, tokenizer_from: str, **shape) -> Path:
    """bert-base-uncased's architecture (BertConfig's defaults are its shape) with random weights, and the tokenizer
    of `tokenizer_from` (the MiniLM's is bert-base-uncased's uncased WordPiece vocabulary)."""
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from trainer.modeling import resolve_model_path

    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path(tokenizer_from))
    tokenizer.save_pretrained(folder)
    BertForSequenceClassification(BertConfig(vocab_size=len(tokenizer), **shape)).save_pretrained(folder)
    return folder
