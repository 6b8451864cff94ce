"""ULip: unimodal Lipschitz forgetting (Foster et al. 2024, as adapted in WACV'25 §5.1).

Lipschitz forgetting of the image tower alone, on *real* images of the class to forget:

    for each epoch:
        draw N perturbations ε ~ N(0, σ²) of every real forget image
        loss = ‖f_img(x) − f_img(x+ε)‖ / ‖ε‖   (no text term: the text tower is untouched)
        keep the top k image tensors by mean |grad|; one Adam step
        keep the step if the forget images' accuracy fell, else revert and go to the next stage

It is Lip with the text term and the text tower switched off and real forget images instead of
synthetic ones, so it is one :class:`~clipunlearn.methods.lip.Lip` with other settings: "semi
zero-shot" (it sees real images of the class, never of the others). The paper reports that it
under-forgets and hurts other classes: forgetting through one tower breaks the link between the two.

Presets: ``paper`` uses Lip's paper settings (schedule, optimiser, keep and stop rules) on the image
tower; ``default`` uses Lip's default (fixed 4 epochs, lr 5e-4, every eligible image tensor) without
the data-free retain term, which is Lip's own addition.
"""
from __future__ import annotations

from .base import register_method
from .lip import Lip, LipConfig

_UNIMODAL = {"text_term": False, "text_tower": False, "forget_images": "real", "retain_weight": 0.0}


@register_method
class ULip(Lip):
    name = "ulip"
    title = "Lipschitz forgetting of the image tower on real forget images (Foster et al., as in WACV'25)"
    config_cls = LipConfig
    needs = frozenset({"real_forget"})
    presets = {name: {**values, **_UNIMODAL} for name, values in Lip.presets.items()}
    ablations = {}
