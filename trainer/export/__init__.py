"""Export: the model as ONNX for ONNX Runtime, optimum and transformers.js, and the list of files a push uploads.

- `onnx.py`: the fp32 export, the int8 file and the fp16 file, stamped with the weights' sha256 and the int8 recipe,
  and made again only when the stamp no longer matches (`ensure_onnx`). The inference core only loads the int8 file:
  `trainer.predict` and the bench call `export_int8(model)` first and pass its path to `load_classifier`.
- `int8.py`: the int8 recipe: per-row int8 embeddings, outlier channels scaled down, dynamic int8 MatMuls, and the
  MatMuls kept float chosen by their measured effect on agreement with fp32 on the run's validation texts.
- `int8_check.py`: how far the int8 file (one text at a time and batched) and the fp16 file stray from fp32 on the
  run's validation texts, and each file's size (`onnx/int8_check.json`, which the card states).
- `uploads.py`: every file a push uploads (`push_files`), one list for `trainer.push` and its `--dry_run`.

Nothing is imported here, so `from trainer.export.onnx import ensure_onnx` does not load the card's renderer.
"""
