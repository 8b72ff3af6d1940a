"""The int8 recipe: how `onnx/model_quantized.onnx` is made from the fp32 export, faithful, fast and small.

1. The word-embedding table (the model's largest weight) is stored as int8 with one scale per row: the Gather picks
   int8 rows and their scales and multiplies them back (4x smaller than fp32).
2. Every MatMul with a weight is quantized dynamically by ONNX Runtime: int8 weights per output channel, uint8
   activations per tensor, their range taken at run time.
3. Per-tensor activations lose most to a few outlier channels: after the second LayerNorm and the GELU of BERT-like
   models one channel reaches ~30 where the median channel peaks at ~2, and that one channel sets the uint8 step.
   Those channels, measured on the run's validation texts, are divided down to `OUTLIER_RATIO` x the median before
   the int8 MatMul and the weight rows they meet multiplied up by as much: exact in real arithmetic, one Mul per
   activation at run time.
4. Mixed precision measured, not chosen by hand: when the file still gives fewer than `TARGET_AGREEMENT` of the
   fp32 labels on the validation texts (one text at a time or in batches), each MatMul is given back float
   activations alone and ranked by the agreement it recovers; they are kept float in that order until the target
   is met (at most `MAX_FLOAT_MATMULS`). Their weights are stored as fp16; ONNX Runtime folds the Cast at load.

Without validation texts (a model folder that is not a run) steps 3 and 4 are skipped. docs/performance.md has the
measurements behind each step.
"""

from __future__ import annotations

import copy
import logging
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)
INT8_RECIPE = "int8-rows-embedding+tamed-outliers+dynamic-matmul+measured-float-matmuls"
TARGET_AGREEMENT = 0.995  # of the fp32 labels, one text at a time and in batches
OUTLIER_RATIO = 3.0  # an activation channel over this x the median channel's peak is scaled down to it
MAX_TEXTS = 1000  # validation texts the recipe measures on: bounds an export's cost on large validation sets
MAX_FLOAT_MATMULS = 6  # a bound on the speed the greedy pass may give up
BATCH = 32  # the batched measurement: length-sorted batches, as the inference core scores
RISK_SHARE = 0.25  # the greedy pass ranks MatMuls on this share of texts, those nearest a decision boundary
Decide = Callable[[np.ndarray], np.ndarray]  # logits (n, labels) -> label decisions (n, labels) bools
Margin = Callable[[np.ndarray], np.ndarray]  # logits (n, labels) -> how far each text is from changing label (n,)


def quantize_int8(source: Path, target: Path, ids: list[np.ndarray] | None, decide: Decide, margin: Margin) -> dict:
    """The int8 file `target` from the fp32 file `source`, by the recipe above.

    Args:
        ids: the token ids of the run's validation texts (at most MAX_TEXTS), or None: no calibration.
        decide: the model's labels from logits, the agreement the greedy pass measures.
        margin: how far from changing label each text is (logits in, one value per text out): the greedy pass
            ranks MatMuls on the RISK_SHARE of texts nearest a boundary, as only those can change label.
    Returns:
        What was chosen: calibration texts, outlier channels scaled, MatMuls kept float, agreement, seconds.
    """
    import onnx

    start = time.perf_counter()
    model = onnx.load(str(source))
    embed_rows(model)
    if not ids:
        write_quantized(dynamic_int8(model), target)
        return {"calibration_texts": 0, "outlier_channels": 0, "float_matmuls": [], "seconds": _since(start)}
    fp32 = model_bytes(onnx.load(str(source)))
    feeds = {"one at a time": [[x] for x in ids], "batched": length_batches(ids)}
    reference = {mode: run_logits(fp32, batches) for mode, batches in feeds.items()}
    near = np.argsort(margin(reference["one at a time"]))[: max(1, int(RISK_SHARE * len(ids)))]
    feeds["ranking"] = length_batches([ids[i] for i in sorted(near)])
    reference["ranking"] = run_logits(fp32, feeds["ranking"])
    tamed = tame_outliers(model, activation_peaks(model, feeds["batched"]))
    weights = {init.name: init for init in model.graph.initializer}
    quantized = dynamic_int8(model)
    kept, agreement = choose_float_matmuls(quantized, weights, feeds, reference, decide)
    write_quantized(restore_float(quantized, weights, kept), target)
    return {"calibration_texts": len(ids), "outlier_channels": tamed, "float_matmuls": kept,
            "agreement": agreement, "seconds": _since(start)}  # fmt: skip


def _since(start: float) -> float:
    return round(time.perf_counter() - start, 1)


def model_bytes(model) -> bytes:
    return model.SerializeToString()


def write_quantized(model, target: Path) -> None:
    import onnx

    onnx.save(model, str(target))


def embed_rows(model) -> None:
    """The Gather that reads the word embeddings by input_ids: an int8 table and a scale per row."""
    from onnx import TensorProto, helper, numpy_helper

    inits = {init.name: init for init in model.graph.initializer}
    readers = Counter(name for node in model.graph.node for name in node.input)
    for pos, node in enumerate(list(model.graph.node)):
        if node.op_type != "Gather" or node.input[0] not in inits or node.input[1] != "input_ids":
            continue
        if readers[node.input[0]] > 1:  # a table another op reads too (tied weights) stays as it is
            continue
        table = numpy_helper.to_array(inits[node.input[0]])
        scale = np.abs(table).max(1, keepdims=True) / 127.0
        scale[scale == 0] = 1.0  # an all-zero row stays zero
        rows = np.clip(np.round(table / scale), -127, 127).astype(np.int8)
        name, out = node.input[0], node.output[0]
        model.graph.initializer.remove(inits[name])
        scales = numpy_helper.from_array(scale.astype(np.float32), f"{name}_row_scale")
        model.graph.initializer.extend([numpy_helper.from_array(rows, f"{name}_int8"), scales])
        model.graph.node.remove(node)
        for k, new in enumerate([
            helper.make_node("Gather", [f"{name}_int8", "input_ids"], [f"{out}_int8"], name=f"{node.name}_int8"),
            helper.make_node("Cast", [f"{out}_int8"], [f"{out}_float"], name=f"{node.name}_cast", to=TensorProto.FLOAT),
            helper.make_node("Gather", [f"{name}_row_scale", "input_ids"], [f"{out}_scale"], name=f"{node.name}_scale"),
            helper.make_node("Mul", [f"{out}_float", f"{out}_scale"], [out], name=f"{node.name}_dequantize"),
        ]):  # fmt: skip
            model.graph.node.insert(pos + k, new)


def weighted_matmuls(model) -> dict[str, list]:
    """{activation tensor: the MatMul nodes with a weight that read it}."""
    inits = {init.name for init in model.graph.initializer}
    groups: dict[str, list] = {}
    for node in model.graph.node:
        if node.op_type == "MatMul" and node.input[1] in inits:
            groups.setdefault(node.input[0], []).append(node)
    return groups


def length_batches(ids: list[np.ndarray]) -> list[list[np.ndarray]]:
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    return [[ids[i] for i in order[start : start + BATCH]] for start in range(0, len(order), BATCH)]


def padded(batch: list[np.ndarray]) -> dict[str, np.ndarray]:
    """input_ids and attention_mask of a batch, right-padded with 0 (the batch's order is kept)."""
    width = max(len(x) for x in batch)
    input_ids = np.zeros((len(batch), width), dtype=np.int64)
    mask = np.zeros_like(input_ids)
    for i, x in enumerate(batch):
        input_ids[i, : len(x)], mask[i, : len(x)] = x, 1
    return {"input_ids": input_ids, "attention_mask": mask}


def session(model: bytes):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def run_logits(model: bytes, batches: list[list[np.ndarray]]) -> np.ndarray:
    """The logits of every batch, stacked in batch order."""
    scorer = session(model)
    return np.concatenate([scorer.run(["logits"], padded(batch))[0] for batch in batches])


def activation_peaks(model, batches: list[list[np.ndarray]]) -> dict[str, np.ndarray]:
    """{activation tensor a weighted MatMul reads: each channel's largest |value| on the batches}."""
    from onnx import helper

    probe = copy.deepcopy(model)
    names = list(weighted_matmuls(probe))
    probe.graph.output.extend(helper.make_empty_tensor_value_info(name) for name in names)
    scorer = session(model_bytes(probe))
    peaks = {name: 0.0 for name in names}
    for batch in batches:
        for name, value in zip(names, scorer.run(names, padded(batch))):
            peaks[name] = np.maximum(peaks[name], np.abs(value.reshape(-1, value.shape[-1])).max(0))
    return peaks


def tame_outliers(model, peaks: dict[str, np.ndarray]) -> int:
    """Scale each activation channel whose peak exceeds OUTLIER_RATIO x the median down to it, and the weight rows
    it meets up by as much (a Mul before the MatMuls); returns how many channels were scaled."""
    from onnx import helper, numpy_helper

    inits = {init.name: init for init in model.graph.initializer}
    scaled = 0
    for name, nodes in weighted_matmuls(model).items():
        factor = np.maximum(peaks[name] / (OUTLIER_RATIO * np.median(peaks[name]) + 1e-12), 1.0).astype(np.float32)
        if (factor == 1).all():
            continue
        scaled += int((factor > 1).sum())
        for node in nodes:
            weight = numpy_helper.to_array(inits[node.input[1]]) * factor[:, None]
            inits[node.input[1]].CopyFrom(numpy_helper.from_array(weight.astype(np.float32), node.input[1]))
        model.graph.initializer.append(numpy_helper.from_array(1 / factor, f"{name}_tame"))
        pos = min(list(model.graph.node).index(node) for node in nodes)
        model.graph.node.insert(pos, helper.make_node("Mul", [name, f"{name}_tame"], [f"{name}_tamed"],
                                                      name=f"{name}_tame"))  # fmt: skip
        for node in nodes:
            node.input[0] = f"{name}_tamed"
    return scaled


def dynamic_int8(model):
    """ONNX Runtime's dynamic quantization of every MatMul with a weight: int8 per output channel."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)  # ONNX Runtime's "consider pre-processing" advice, printed on every export
    try:
        with tempfile.TemporaryDirectory() as tmp:
            quantize_dynamic(copy.deepcopy(model), f"{tmp}/int8.onnx", weight_type=QuantType.QInt8, per_channel=True,
                             op_types_to_quantize=["MatMul"])  # fmt: skip
            return onnx.load(f"{tmp}/int8.onnx")
    finally:
        logging.disable(previous)


def restore_float(quantized, weights: dict, names: list[str]):
    """A copy of the quantized model where the MatMuls `names` read float activations again, their weights (from
    `weights`, the model before quantization) stored as fp16."""
    from onnx import TensorProto, helper, numpy_helper

    model = copy.deepcopy(quantized)
    nodes = {node.name: node for node in model.graph.node}
    producer = {out: node for node in model.graph.node for out in node.output}
    for name in names:
        integer = nodes[f"{name}_quant"]  # ONNX Runtime's names: MatMulInteger, Cast, scale Mul, output Mul
        cast = next(n for n in model.graph.node if n.op_type == "Cast" and n.input[0] == integer.output[0])
        scales, output = nodes[f"{name}_quant_scales_mul"], nodes[f"{name}_quant_output_scale_mul"]
        weight = integer.input[1].removesuffix("_quantized")
        half = numpy_helper.to_array(weights[weight]).astype(np.float16)
        model.graph.initializer.append(numpy_helper.from_array(half, f"{weight}_fp16"))
        pos = list(model.graph.node).index(integer)
        model.graph.node.insert(pos, helper.make_node("MatMul", [producer[integer.input[0]].input[0], f"{weight}_f32"],
                                                      [output.output[0]], name=name))  # fmt: skip
        model.graph.node.insert(pos, helper.make_node("Cast", [f"{weight}_fp16"], [f"{weight}_f32"],
                                                      name=f"{name}_weight", to=TensorProto.FLOAT))  # fmt: skip
        for node in (integer, cast, scales, output):
            model.graph.node.remove(node)
    drop_unused(model)
    return model


def drop_unused(model) -> None:
    """Activation quantizers no MatMul reads any more, then the initializers nothing reads."""
    used = {name for node in model.graph.node for name in node.input}
    for node in [n for n in model.graph.node if n.op_type == "DynamicQuantizeLinear"]:
        if not used & set(node.output):
            model.graph.node.remove(node)
    used = {name for node in model.graph.node for name in node.input} | {o.name for o in model.graph.output}
    for init in [i for i in model.graph.initializer if i.name not in used]:
        model.graph.initializer.remove(init)


def restorable(quantized, weights: dict) -> list[str]:
    """The int8 MatMuls whose float weights `weights` holds (a Gemm ONNX Runtime turned into one has none)."""
    return [node.name.removesuffix("_quant") for node in quantized.graph.node
            if node.op_type == "MatMulInteger" and node.input[1].removesuffix("_quantized") in weights]  # fmt: skip


def agreement(model, feeds: dict, reference: dict, decide: Decide) -> dict[str, float]:
    """{mode: share of texts given the fp32 labels}, one text at a time and batched."""
    data = model_bytes(model)
    return {mode: float((decide(run_logits(data, feeds[mode])) == decide(reference[mode])).all(1).mean())
            for mode in ("one at a time", "batched")}  # fmt: skip


def closeness(model, batches: list, reference: np.ndarray, decide: Decide) -> tuple[float, float]:
    """(agreement, minus the mean logit gap) with fp32 on the batches: what the greedy pass ranks MatMuls by."""
    logits = run_logits(model_bytes(model), batches)
    return float((decide(logits) == decide(reference)).all(1).mean()), -float(np.abs(logits - reference).mean())


def choose_float_matmuls(quantized, weights: dict, feeds: dict, reference: dict, decide: Decide):
    """The greedy pass: (MatMuls given float activations back, the agreement reached). Each MatMul is measured once
    alone on the texts nearest a boundary (batched: their agreement, then the logit gap); they are kept float in
    that order until the target is met on every text, one at a time and batched."""
    kept: list[str] = []
    reached = agreement(quantized, feeds, reference, decide)
    if min(reached.values()) < TARGET_AGREEMENT:
        names = restorable(quantized, weights)
        effect = {name: closeness(restore_float(quantized, weights, [name]), feeds["ranking"], reference["ranking"],
                                  decide) for name in names}  # fmt: skip
        ranked = sorted(names, key=effect.get, reverse=True)
        while min(reached.values()) < TARGET_AGREEMENT and len(kept) < min(MAX_FLOAT_MATMULS, len(ranked)):
            kept.append(ranked[len(kept)])
            reached = agreement(restore_float(quantized, weights, kept), feeds, reference, decide)
            logger.info("int8: %s kept float, agreement %s", kept[-1], reached)
    return kept, {mode: round(value, 5) for mode, value in reached.items()}
