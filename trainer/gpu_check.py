"""The GPU figures in one prepared command: `python -m trainer.gpu_check [--dry_run] [--output FILE]` (make gpu-check).

Each step is a subprocess of the commands users run: bert-base on SST-2 (configs/sst2-bert-base.yaml, one epoch,
bf16): dev accuracy and training samples/s; the default MiniLM preset (configs/sst2-minilm.yaml): its full training
time and dev accuracy; the two-process NCCL path (trainer.launch --nproc_per_node 2, a short run) when two GPUs are
present; a MiniLM student distilled from the bert-base run (--teacher), against the plain MiniLM. A step that fails
is recorded with its one-line reason and the check goes on; the JSON is written after every step. Where the
teacher cannot be loaded (no Hub on the machine), --teacher_fallback is trained with the same recipe instead and
named as such, and bert-base's architecture with random weights is timed (bert_shape). --dry_run does all of it on
CPU with a tiny model, a few steps on a few hundred SST-2 rows.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import tempfile
import time
from pathlib import Path

from trainer import HelpFormatter, UserError, fail, files
from trainer.gpu_models import MINILM_PRESET, TEACHER_MODEL, dry_run_model, full_precision, pack, preset_value
from trainer.gpu_steps import Plan, nvidia_smi, run_check, table, torch_devices
from trainer.provenance import redact


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("--dry_run", action="store_true", help="every step on CPU: a tiny model, a few steps")
    parser.add_argument("--output", default="gpu-check/gpu_check.json", help="the JSON; the steps' logs go to "
                        "logs/ beside it")  # fmt: skip
    parser.add_argument("--runs_dir", help="where the runs go (default runs/gpu-check, runs/gpu-check-dry)")
    parser.add_argument("--teacher_model", help=f"the teacher's base model (default {TEACHER_MODEL}; dry run: the "
                        "tiny model)")  # fmt: skip
    parser.add_argument("--teacher_fallback", help="trained as the teacher when --teacher_model fails (default: "
                        "the student's base model; 'none' for no fallback)")  # fmt: skip
    parser.add_argument("--student_model", help=f"the MiniLM runs' base model (default {MINILM_PRESET}'s; a folder "
                        "on a machine without the packaged MiniLM)")  # fmt: skip
    parser.add_argument("--pack", metavar="DIR", help="only write into DIR what a lent GPU machine needs beside the "
                        "repo (SST-2 from the data mirror, --student_model in fp16) and exit")  # fmt: skip
    parser.add_argument("--time_limit", type=float, default=0, help="seconds: no step starts after this and a "
                        "running one is stopped (0: none)")  # fmt: skip
    return parser.parse_args(argv)


def make_plan(args: argparse.Namespace, output: Path) -> Plan:
    """The plan from the flags: models checked now (one line), the dry run's tiny model built."""
    from trainer.modeling import resolve_model_path  # torch: only once the arguments are read

    if args.time_limit < 0:
        raise UserError(f"--time_limit {args.time_limit:g}: give seconds, or 0 for no limit")
    runs_dir = Path(args.runs_dir or ("runs/gpu-check-dry" if args.dry_run else "runs/gpu-check")).resolve()
    student = args.student_model  # None: the preset's own base model, as `make train` runs it
    if student is not None:  # a missing folder is one line now, not three failed steps later
        student = full_precision(resolve_model_path(student), runs_dir / "student-fp32")
    tiny = dry_run_model(runs_dir / "tiny-bert") if args.dry_run else None
    student = student or tiny
    fallback = args.teacher_fallback or student or preset_value(MINILM_PRESET, "model_name_or_path")
    return Plan(runs_dir=runs_dir, logs_dir=output.parent.resolve() / "logs",
                teacher_model=args.teacher_model or tiny or TEACHER_MODEL,
                teacher_fallback=None if fallback == "none" else fallback, student_model=student,
                gpus=torch_devices()["gpus"], dry_run=args.dry_run,
                deadline=time.monotonic() + args.time_limit if args.time_limit else None)  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s", level=logging.INFO)
    output = Path(args.output)
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=output.parent).close()  # writable? find out before training for minutes
        if args.pack:
            size = pack(Path(args.pack), args.student_model or preset_value(MINILM_PRESET, "model_name_or_path"))
            print(f"packed {size / 2**20:.1f} MiB into {args.pack}: carry it (docs/performance.md#gpu-check)")
            return 0
        plan = make_plan(args, output)
    except (UserError, OSError) as err:
        return fail(err)
    report = {
        "command": " ".join(["python -m trainer.gpu_check", *redact(sys.argv[1:] if argv is None else argv)]),
        "dry_run": args.dry_run,
        "machine": {"nvidia_smi": nvidia_smi(), "torch": torch_devices()},
        "models": {
            "teacher": plan.teacher_model,
            "teacher_fallback": plan.teacher_fallback,
            "student": plan.student_model or preset_value(MINILM_PRESET, "model_name_or_path"),
        },
    }
    # SIGTERM ends the check as Ctrl-C does, through run_logged's cleanup: the running step's processes end with it
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    try:
        run_check(plan, report, lambda done: files.write_text(output, json.dumps(done, indent=2) + "\n"))
    finally:
        signal.signal(signal.SIGTERM, previous)
    print(table(report))
    print(f"written: {output} (logs: {plan.logs_dir})")
    return 1 if any(step["status"] == "failed" for step in report["steps"].values()) else 0


if __name__ == "__main__":
    sys.exit(main())
