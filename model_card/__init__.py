"""Model cards for runs: card data + a Jinja template + a pure renderer (`render_card`); nothing here writes files
or imports `trainer` but the run-folder layout (`trainer.run_folder`, a core module that imports nothing)."""

from model_card.render import card_data, card_facts, render_card

__all__ = ["card_data", "card_facts", "render_card"]
