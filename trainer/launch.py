"""torchrun with checks first: `python -m trainer.launch --nproc_per_node N [torchrun options] -m trainer.train ...`.

Takes exactly torchrun's options and runs torchrun's own launcher in this process. Before starting any worker it
checks what would otherwise end in a wall of tracebacks (a taken port, more processes than GPUs, a bad count);
on one node without an explicit port it picks a free one (torchrun --standalone). A failed worker ends in one
line: the worker's own error message, or which process failed and how.
"""

from __future__ import annotations

import logging
import os
import socket
import sys

from trainer import UserError, fail

logger = logging.getLogger(__name__)


def explicit_port(argv: list[str]) -> bool:
    """Did the user choose the rendezvous port (flag or environment)?"""
    flags = {arg.split("=", 1)[0] for arg in argv}
    return bool(flags & {"--master_port", "--master-port"}) or any(
        name in os.environ for name in ("MASTER_PORT", "PET_MASTER_PORT")
    )


def port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def process_count(value: str) -> int | None:
    """torchrun's --nproc_per_node as a number (None for its own words: auto, cpu, gpu)."""
    if value in {"auto", "cpu", "gpu", "xpu"}:
        return None
    try:
        count = int(value)
    except ValueError:
        raise UserError(f"--nproc_per_node {value!r} is not a number: pass NPROC=2 (or auto)") from None
    if count < 1:
        raise UserError(f"--nproc_per_node {count}: start at least one process (NPROC=1 or more)")
    return count


def preflight(args, argv: list[str]) -> None:
    """Check the launch before any worker starts; adjust what torchrun would get wrong on one machine."""
    import torch

    count = process_count(args.nproc_per_node)
    on_cpu = "--use_cpu" in " ".join(args.training_script_args) or not torch.cuda.is_available()
    if count is not None and not on_cpu and count > torch.cuda.device_count():
        raise UserError(
            f"NPROC={count} but this machine has {torch.cuda.device_count()} GPU(s): "
            f"use NPROC={torch.cuda.device_count()} or fewer, one process per GPU"
        )
    if count is not None and on_cpu and count > (os.cpu_count() or 1):
        logger.warning("%d processes on %d CPU cores: they will compete for the cores", count, os.cpu_count())
    single_node = str(args.nnodes) in {"1", "1:1"}
    if single_node and not args.standalone and not args.rdzv_endpoint:
        if explicit_port(argv):
            if port_in_use(args.master_addr, args.master_port):
                raise UserError(
                    f"port {args.master_port} on {args.master_addr} is in use (another training run?): "
                    "pass another --master_port (MASTER_PORT), or none to pick a free one"
                )
        else:
            args.standalone = True  # rendezvous on a free local port: two runs on one machine never collide
    if on_cpu and count is not None and "OMP_NUM_THREADS" not in os.environ:
        # torchrun's default is 1 thread per process; share the cores out instead.
        os.environ["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // count))


def describe_failure(err) -> tuple[int, str | None]:
    """The exit code to return and the line to print (None when the worker already said why)."""
    rank, failure = err.get_first_failure()
    code = failure.exitcode
    if code in (2, 130):  # our workers' one-line error, or an interrupted run that printed how to resume
        return code, None
    how = f"was killed by signal {failure.signal_name()}" if code < 0 else f"exited with code {code}"
    return (code if code > 0 else 1), f"error: training process {rank} {how}: see its output above"


def main(argv: list[str] | None = None) -> int:
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s", level=logging.INFO)
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parse_args(argv)
    try:
        preflight(args, argv)
    except UserError as err:
        return fail(err)
    # The agent logs each failure (and each Ctrl-C) with a timestamped box; we report it in one line below.
    for name in list(logging.root.manager.loggerDict):
        if name.startswith(("torch.distributed.elastic", "torch.distributed.run")):
            logging.getLogger(name).setLevel(logging.CRITICAL)
    try:
        run(args)
    except ChildFailedError as err:
        code, line = describe_failure(err)
        if line:
            print(line, file=sys.stderr)
        return code
    except (KeyboardInterrupt, SignalException):  # the workers saved a checkpoint and said how to resume
        return 130
    except Exception as err:  # the rendezvous itself failed: torchrun's own error, shortened to its first line
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        print(
            f"error: could not start the training processes ({first}): check --nnodes and the rendezvous",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
