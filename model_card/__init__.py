"""Model cards for runs: card data + a Jinja template + a pure renderer (`render_card`)."""

from model_card.card import REQUIRED_FILES, card_data, card_facts, render_card, write_card

__all__ = ["REQUIRED_FILES", "card_data", "card_facts", "render_card", "write_card"]
