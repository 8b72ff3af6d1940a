"""Read a run's training history: the loss, learning rate and grad norm by step, the lowest losses, the schedule and
the grad-norm spikes; writes history.csv and training_history.png.
`python -m trainer.history runs/latest` (or a checkpoint-N folder, or a trainer_state.json)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from trainer import HelpFormatter, UserError, fail
from trainer.evaluation.training_log import (
    history_summary,
    history_table,
    read_log_history,
    render_history,
    write_history,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=HelpFormatter)
    parser.add_argument("path", help="run folder, checkpoint-N folder or trainer_state.json")
    parser.add_argument("--output_dir", help="where history.csv and the plot go (default: beside the input)")
    parser.add_argument("--spike_factor", type=float, default=3.0,
                        help="a grad norm over this many times the median of the previous 20 is a spike")  # fmt: skip
    args = parser.parse_args(argv)
    try:
        logs, source = read_log_history(args.path)
        summary = history_summary(logs, args.spike_factor)
        table = history_table(logs)
        out = args.output_dir or (args.path if Path(args.path).is_dir() else source.parent)  # beside the input
        csv, png = write_history(table, summary, Path(out))
    except (UserError, OSError) as err:
        return fail(err)
    print(f"{source}: {len(table)} logged steps\n\n{render_history(table, summary)}\n\nwrote {csv} and {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
