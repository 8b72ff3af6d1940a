"""How the JSON API serves: which backend scores its texts, and how requests are batched (from the environment).

`SPACE_BACKEND=onnx-int8|torch` chooses the backend; by default the API scores with the int8 ONNX file on a CPU when
the model folder ships one made from its weights (`onnx/model_quantized.onnx`, stamped with the weights' sha256 in
`onnx/export.json` or `onnx/int8_check.json`), and with torch otherwise (on a GPU, or without a fresh int8 file).
The UI's predictions and explanations stay on torch. Batching (space/batching.py) is set by `API_BATCHING` (on/off),
`API_MAX_WAIT_MS`, `API_MAX_BATCH_TOKENS` and `API_MAX_QUEUED_TEXTS`.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from inference import BACKENDS
from run_folder import INT8_CHECK, ONNX_DIR, ONNX_FILES, ONNX_STAMP, WEIGHTS


@dataclass(frozen=True)
class Serving:
    """The JSON API's settings: backend (and why), and batching (off: each request its own pass, two at a time)."""

    backend: str
    reason: str
    batching: bool = True
    max_wait_ms: float = 2.0
    max_batch_tokens: int = 8192
    max_queued_texts: int = 4096


def int8_file(folder: Path) -> Path:
    return folder / ONNX_DIR / ONNX_FILES["int8"]


def int8_stamp(folder: Path) -> dict | None:
    """The export stamp of the folder's int8 file: onnx/export.json (a run folder), else the one its int8 check
    recorded (a published repo ships the check, not export.json); None when there is neither."""
    for path, key in ((folder / ONNX_DIR / ONNX_STAMP, None), (folder / ONNX_DIR / INT8_CHECK, "export")):
        if path.is_file():
            stamp = json.loads(path.read_text())
            return stamp.get(key) if key else stamp
    return None


def weights_sha256(folder: Path) -> str:
    digest = hashlib.sha256()
    with open(folder / WEIGHTS, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def fresh_int8(folder: Path) -> str | None:
    """None when the folder ships an int8 file made from its own weights, else why it cannot be used."""
    if not int8_file(folder).is_file():
        return f"no int8 file ({ONNX_DIR}/{ONNX_FILES['int8']})"
    stamp = int8_stamp(folder)
    if not stamp or "weights_sha256" not in stamp:
        return "the int8 file carries no stamp of the weights it was made from"
    if stamp["weights_sha256"] != weights_sha256(folder):
        return "the int8 file was made from other weights (export the model again)"
    return None


def choose_backend(folder: Path, requested: str | None, device: str) -> tuple[str, str]:
    """(backend, why): SPACE_BACKEND when set (ValueError, one line, when it cannot run here); else int8 on a CPU with
    a fresh int8 file, else torch."""
    if requested:
        if requested not in BACKENDS:
            raise ValueError(f"SPACE_BACKEND={requested}: use one of {', '.join(BACKENDS)}")
        if requested == "onnx-int8":
            if device != "cpu":
                raise ValueError("SPACE_BACKEND=onnx-int8 runs on the CPU: use SPACE_BACKEND=torch on a GPU")
            if (problem := fresh_int8(folder)) is not None:
                raise ValueError(f"SPACE_BACKEND=onnx-int8 but {problem}: push the model with its ONNX files, or "
                                 "use SPACE_BACKEND=torch")  # fmt: skip
        return requested, "SPACE_BACKEND"
    if device != "cpu":
        return "torch", f"the model runs on {device}"
    problem = fresh_int8(folder)
    return ("torch", f"{problem}: scoring with torch") if problem else ("onnx-int8", "the model ships its int8 file")


def _number(env: dict, name: str, default: float, kind=float, low: float = 0):
    raw = env.get(name)
    if raw in (None, ""):
        return default
    try:
        value = kind(raw)
    except ValueError:
        raise ValueError(f"{name}={raw}: use a number (default {default})") from None
    if value < low:
        raise ValueError(f"{name}={raw}: use at least {low} (default {default})")
    return value


def serving_from_env(folder: Path, device: str, env: dict | None = None) -> Serving:
    """The API's settings from the environment; ValueError (one line naming the variable) for a bad value."""
    env = os.environ if env is None else env
    backend, reason = choose_backend(folder, env.get("SPACE_BACKEND") or None, device)
    switch = env.get("API_BATCHING", "on").lower()
    if switch not in ("on", "off", "1", "0", "true", "false"):
        raise ValueError(f"API_BATCHING={env['API_BATCHING']}: use on or off")
    return Serving(
        backend, reason, batching=switch in ("on", "1", "true"),
        max_wait_ms=_number(env, "API_MAX_WAIT_MS", 2.0),
        max_batch_tokens=_number(env, "API_MAX_BATCH_TOKENS", 8192, int, 1),
        max_queued_texts=_number(env, "API_MAX_QUEUED_TEXTS", 4096, int, 1),
    )  # fmt: skip


def int8_agreement_note(folder: Path, serving: Serving) -> str:
    """The report tab's line on what answers the API: the backend and, for int8, its measured agreement with fp32."""
    batching = (f"batched (up to {serving.max_wait_ms:g} ms, {serving.max_batch_tokens:,} tokens)" if serving.batching
                else "one request per pass")  # fmt: skip
    if serving.backend != "onnx-int8":
        return f"The JSON API scores with **torch** (fp32), {batching}: {serving.reason}."
    line = f"The JSON API scores with the **int8 ONNX file**, {batching}"
    check = folder / ONNX_DIR / INT8_CHECK
    found = json.loads(check.read_text()) if check.is_file() else {}
    if "label_agreement" in found:
        line += (f": it gives the fp32 model's label on **{100 * found['label_agreement']:.2f}%** of the "
                 f"{found['texts']:,} validation texts one at a time ({found['labels_changed']} changed)")  # fmt: skip
        if "batched" in found:
            line += (f", {100 * found['batched']['label_agreement']:.2f}% in batches "
                     f"({found['batched']['labels_changed']} changed)")  # fmt: skip
    elif "decision_agreement" in found:
        line += f": it makes the fp32 model's decision on **{100 * found['decision_agreement']:.2f}%** of the labels"
    return line + ". The page's predictions and explanations use torch (fp32)."
