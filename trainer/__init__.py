"""Fine-tune BERT-family models for sentiment classification, evaluate them and publish them."""

__version__ = "0.1.0"


class UserError(Exception):
    """A problem with the user's input, reported as one line naming the problem and the fix."""
