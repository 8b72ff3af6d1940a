"""Fine-tune a BERT-family model for sentiment classification: `python -m trainer.train --config PRESET [flags]`."""

from __future__ import annotations

import logging
import sys

from trainer import UserError, fail
from trainer.config import load_config
from trainer.provenance import redact
from trainer.training.callbacks import Interrupted
from trainer.training.loop import train
from trainer.training.run_dir import is_main_process


def main(argv: list[str] | None = None) -> int:
    level = logging.INFO if is_main_process() else logging.WARNING  # one process reports; the others only warn
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s", level=level)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        cfg = load_config(argv)
        if argv is None:  # libraries that record the command line (wandb) see token values as ***
            sys.argv[1:] = redact(sys.argv[1:])
        run_dir, metrics = train(cfg)
        pushed = push_after_training(run_dir, cfg.training) if cfg.training.push_to_hub and is_main_process() else None
    except (UserError, OSError) as err:  # every process of a distributed run hits the same one: the main one says it
        return fail(err, show=is_main_process())
    except Interrupted as stop:
        if is_main_process():
            print(stop, file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        if is_main_process():
            print("\ninterrupted: continue with `make train ARGS=--resume` (latest checkpoint of runs/latest)",
                  file=sys.stderr)  # fmt: skip
        return 130
    if not is_main_process():
        return 0
    test, key = metrics.get("test"), "f1_macro" if metrics.get("multi_label") else "accuracy"
    name = key.replace("_", " ")
    tested = f" | test {name} {test[key]['value']:.2%} on {metrics['test_samples']}" if test and key in test else ""
    print(
        f"\n{name} {metrics[key]:.2%} on {metrics['eval_samples']} validation examples{tested} | "
        f"train {metrics['train_runtime']:.0f}s, {metrics['train_samples_per_second']:.1f} samples/s | "
        f"wall {metrics['wall_time_seconds']:.0f}s\nrun folder: {run_dir}"
    )
    if pushed:
        print(f"pushed to {pushed.repo_id}: {pushed.url}")
    return 0


def push_after_training(run_dir, args):
    """`--push_to_hub`: publish the finished run once, to `args.hub_model_id`; a failed push keeps the run and says
    how to retry."""
    from trainer.hub.model_repo import push_run

    try:
        return push_run(run_dir, args.hub_model_id, private=bool(args.hub_private_repo), token=args.hub_token)
    except UserError as err:
        raise UserError(f"{err} (the run is saved: push it later with `make push RUN={run_dir}`)") from None


if __name__ == "__main__":
    sys.exit(main())
