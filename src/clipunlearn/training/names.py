"""The text side of forgetting a name, two ways (Uproot's text side).

A model that never saw a class (the oracle: the zoo recipe without its images) never trained the word
pieces of its name: their rows of the token embedding are still random draws, shrunk a little by weight
decay. The original model's rows for those pieces are what it learnt the class as.

* :func:`reset_name_tokens`: give every word piece that occurs in a forgotten name, and in no name the
  model must keep, a fresh random row drawn as an untrained row is (normal, the embedding matrix's
  std), seeded. Nothing is trained; a name made only of pieces that other names use is left as it was.
* :class:`NameEraser`: the name's prompts are trained to embed as the original embeds a word it never
  learnt (a seeded string of random letters as long as the name), while every other name's prompts
  keep their embeddings.
"""
from __future__ import annotations

import string

import torch
import torch.nn.functional as F

from ..models.factory import Clip

#: token ids of the tokenizer's start, end and padding: never reset
_SPECIAL = {0, 49406, 49407}


def _pieces(clip: Clip, names: list[str]) -> set[int]:
    if not names:
        return set()
    return {int(t) for t in clip.tokenize(list(names)).flatten().tolist()} - _SPECIAL


def name_pieces(clip: Clip, forget: list[str], kept: list[str]) -> list[int]:
    """The token ids of the word pieces that occur in a forgotten name and in no kept name, sorted."""
    return sorted(_pieces(clip, forget) - _pieces(clip, kept))


def only_rows(weight: torch.Tensor, rows: list[int]):
    """A gradient hook on an embedding matrix that zeroes the gradient of every row but ``rows``: with
    Adam and no weight decay the other rows then stay exactly as they were. Returns the hook's handle."""
    keep = torch.zeros(weight.shape[0], 1, dtype=weight.dtype, device=weight.device)
    keep[rows] = 1
    return weight.register_hook(lambda grad: grad * keep)


@torch.no_grad()
def reset_name_tokens(clip: Clip, forget: list[str], kept: list[str], gen: torch.Generator) -> list[int]:
    """Redraw the token-embedding rows of the word pieces only forgotten names use (see the module
    docstring); returns their ids (sorted), empty when every piece is shared with a kept name."""
    emb = clip.model.token_embedding.weight
    ids = name_pieces(clip, forget, kept)
    if ids:
        std = float(emb.std())
        emb[ids] = (torch.randn((len(ids), emb.shape[1]), generator=gen) * std).to(emb)
    return ids


class NameEraser:
    """The text side of forgetting a name: its prompts should embed as the original model embeds a word
    it never learnt (a seeded string of random letters as long as the name), while every other name's
    prompts keep their embeddings. A model that never saw the class knows its name no better than any
    unknown word; the relearning attacks then have nothing to align the class's images with but an
    arbitrary direction, as they have for that model.

    ``losses(clip)`` -> (mean 1 − cos(prompt of the name, the unknown word's original embedding),
    mean 1 − cos(prompt of each kept name, its original embedding)), over ``templates``."""

    TEMPLATES = ("{}", "a photo of a {}.")

    def __init__(self, clip: Clip, names: list[str], kept: list[str], template: str, gen: torch.Generator,
                 generic: torch.Tensor | None = None, candidates: int = 32):
        """``generic``: images of no class (:func:`generic_images`); when given, each name's unknown word is
        the one of ``candidates`` random words whose prompt the original finds least in them (the
        lowest mean cosine), so that the name is not moved onto a hub."""
        self.templates = tuple(dict.fromkeys((template, *self.TEMPLATES)))
        with torch.no_grad():
            feats = clip.encode_image(generic, normalize=True) if generic is not None else None
            self.words = {n: unknown_word(clip, n, template, gen, feats, candidates if feats is not None else 1)
                          for n in names}
            self.forget_tokens = clip.tokenize([t.format(n) for n in names for t in self.templates])
            self.kept_tokens = clip.tokenize([t.format(n) for n in kept for t in self.templates]) if kept else None
            self.target = F.normalize(clip.model.encode_text(
                clip.tokenize([t.format(self.words[n]) for n in names for t in self.templates])), dim=-1)
            self.kept_ref = (F.normalize(clip.model.encode_text(self.kept_tokens), dim=-1)
                             if self.kept_tokens is not None else None)

    def losses(self, clip: Clip) -> tuple[torch.Tensor, torch.Tensor]:
        now = F.normalize(clip.model.encode_text(self.forget_tokens), dim=-1)
        moved = (1 - (now * self.target).sum(-1)).mean()
        if self.kept_tokens is None:
            return moved, moved.new_zeros(())
        kept = F.normalize(clip.model.encode_text(self.kept_tokens), dim=-1)
        return moved, (1 - (kept * self.kept_ref).sum(-1)).mean()


@torch.no_grad()
def unknown_word(clip: Clip, name: str, template: str, gen: torch.Generator, feats: torch.Tensor | None = None,
                 candidates: int = 1) -> str:
    """A word the model never learnt, for ``name``: a seeded string of random letters as long as the name
    (at least 4). With ``feats`` (unit-norm features of images of no class, :func:`generic_images`), the
    one of ``candidates`` such words whose prompt the model finds least in them (the lowest mean cosine),
    so that a name moved onto it does not become a hub."""
    letters = string.ascii_lowercase
    words = ["".join(letters[int(i)] for i in torch.randint(0, 26, (max(4, len(name)),), generator=gen))
             for _ in range(candidates)]
    if feats is None or len(words) == 1:
        return words[0]
    text = F.normalize(clip.model.encode_text(clip.tokenize([template.format(w) for w in words])), dim=-1)
    return words[int((feats @ text.T.to(feats)).mean(0).argmin())]


def generic_images(n: int, size: int, gen: torch.Generator, cells: int = 6) -> torch.Tensor:
    """``n`` smooth random images ([0, 1], n×3×size×size: normal noise on a ``cells``×``cells`` grid, scaled
    up bilinearly and squashed): inputs of no class. A name whose prompt starts to win on such images has
    become a hub, a prompt that attracts whatever the model is unsure of (what a name moved toward an
    unknown word does to the other classes' real images, which synthetic images of those classes, each
    recognised with near certainty, do not show)."""
    low = torch.randn((n, 3, cells, cells), generator=gen)
    return torch.sigmoid(F.interpolate(low, size=(size, size), mode="bilinear", align_corners=False))


__all__ = ["NameEraser", "generic_images", "name_pieces", "only_rows", "reset_name_tokens", "unknown_word"]
