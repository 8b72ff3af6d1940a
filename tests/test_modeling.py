from pathlib import Path

import pytest

from trainer import UserError
from trainer.config import DEFAULT_MODEL, ModelConfig
from trainer.modeling import load_model, parameter_groups, resolve_model_path


def test_default_model_comes_from_its_package():
    path = Path(resolve_model_path(DEFAULT_MODEL))
    assert path.name == "model" and (path / "model.safetensors").is_file()


def test_missing_model_folder_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="no model at .*: train one with `make train`, or pass a run folder"):
        resolve_model_path(str(tmp_path / "nope"))
    with pytest.raises(UserError, match="no config.json"):
        resolve_model_path(str(tmp_path))


def test_model_carries_human_label_names(tiny_model_dir):
    model = load_model(ModelConfig(model_name_or_path=str(tiny_model_dir)), ["neg", "pos"])
    assert model.config.id2label == {0: "neg", 1: "pos"} and model.config.label2id == {"neg": 0, "pos": 1}


def test_layerwise_decay_head_multiplier_and_frozen_embeddings(tiny_model_dir):
    cfg = ModelConfig(model_name_or_path=str(tiny_model_dir), freeze_word_embeddings=True)
    model = load_model(cfg, ["neg", "pos"])
    groups = parameter_groups(model, lr=1.0, weight_decay=0.1, layer_decay=0.5, head_multiplier=10.0)
    lr_of = {id(p): (g["lr"], g["weight_decay"]) for g in groups for p in g["params"]}
    named = dict(model.named_parameters())
    assert id(named["bert.embeddings.word_embeddings.weight"]) not in lr_of  # frozen
    assert lr_of[id(named["bert.embeddings.position_embeddings.weight"])] == (0.5**3, 0.1)
    assert lr_of[id(named["bert.encoder.layer.0.attention.self.query.weight"])] == (0.5**2, 0.1)
    assert lr_of[id(named["bert.encoder.layer.1.output.dense.weight"])] == (0.5, 0.1)
    assert lr_of[id(named["bert.encoder.layer.1.output.LayerNorm.weight"])] == (0.5, 0.0)
    assert lr_of[id(named["classifier.weight"])] == (10.0, 0.1)
    assert lr_of[id(named["classifier.bias"])] == (10.0, 0.0)
