"""Fine-tune BERT-family models for sentiment classification, evaluate them and publish them.

Entry points (`python -m trainer.<name>`): train, evaluate, predict, card, push, push_space, hpo, bench, launch,
history, compare.
Library: training/, evaluation/, export/, hub/, search/, over config, data, modeling and the inference core
(inference.py).
docs/architecture.md has one line per module.
"""

import argparse
import re

__version__ = "0.1.0"


class UserError(Exception):
    """A problem with the user's input, reported as one line naming the problem and the fix."""


def fail(err: Exception, show: bool = True) -> int:
    """Print the one line for a problem the user can fix and return exit code 2: a UserError, or an OSError
    such as a full disk or a read-only folder. Any other error is a bug and is raised again."""
    import sys

    if isinstance(err, OSError):
        from trainer.files import write_error

        if (line := write_error(err)) is None:
            raise err
    else:
        line = str(err)
    if show:
        print(f"error: {line}", file=sys.stderr)
    return 2


class _LiteralPercent:
    """Help text is prose: a lone `%` ("95% intervals") is printed as written, not read as a %-format."""

    def _get_help_string(self, action):
        text = super()._get_help_string(action) or ""
        return re.sub(r"%%|%\(\w+\)\w|%", lambda m: "%%" if m.group(0) == "%" else m.group(0), text)


class HelpFormatter(_LiteralPercent, argparse.RawDescriptionHelpFormatter):
    """Every entry point's help: the module docstring as written, any `%` in a flag's help safe."""


class DefaultsHelpFormatter(_LiteralPercent, argparse.ArgumentDefaultsHelpFormatter):
    """The training flags' help (built from the config dataclasses), with each default shown."""
