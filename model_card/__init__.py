"""Model cards for runs: card data + a Jinja template + a pure renderer (`render_card`); nothing here writes files
or imports `trainer`."""

from model_card.render import CARD_INPUTS, card_data, card_facts, render_card

__all__ = ["CARD_INPUTS", "card_data", "card_facts", "render_card"]
