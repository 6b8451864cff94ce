"""Training the mini zoo: a user of ``models`` and ``data``, kept apart from the model factory.
The shipped weights and configs live in ``clipunlearn.models.zoo``."""
from .train import RECIPES, train_zoo_model

__all__ = ["RECIPES", "train_zoo_model"]
