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
tower, and so does ``default``: the sweep in docs/results/sweeps/ulip-mini-rn.md (minaret and motorbike
on mini-rn) gives it the lower mean Avg. Score (0.21: it forgets nothing, AF/BF 1.00) against Lip's
default settings without the retain term (fixed 4 epochs at lr 5e-4: AF/BF 0.14, but other classes
and datasets keep only 0.63; 0.28), which is the paper's finding: ULip under-forgets, and pushed
harder it damages the rest.
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
    presets = {"paper": {**Lip.presets["paper"], **_UNIMODAL}, "default": {**Lip.presets["paper"], **_UNIMODAL}}
    ablations = {}
