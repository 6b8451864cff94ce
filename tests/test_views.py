"""Random views of preprocessed image batches (training/views.py): the crop box's law, the crop and flip
recomputed by hand, determinism, and bad settings refused."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from clipunlearn.errors import ClipUnlearnError
from clipunlearn.training.views import Views, crop_box, random_views


@settings(max_examples=200, deadline=None)
@given(h=st.integers(4, 96), w=st.integers(4, 96), lo=st.floats(0.05, 1.0), seed=st.integers(0, 10_000))
def test_a_crop_box_lies_inside_the_image_with_an_area_near_the_asked_share(h, w, lo, seed):
    views = Views(scale=(lo, 1.0), ratio=(1.0, 1.0))
    top, left, bh, bw = crop_box(h, w, views, torch.Generator().manual_seed(seed))
    assert 0 <= top and 0 <= left and 1 <= bh and 1 <= bw and top + bh <= h and left + bw <= w
    # a square box of at least the lowest asked area, unless the image's shorter side clips it
    side = min(h, w)
    assert bh * bw <= h * w and min(bh, bw) <= side
    assert bh * bw >= min(side, (lo * h * w) ** 0.5 - 1) ** 2 - 1e-9


def test_the_whole_image_unflipped_is_the_image_itself():
    images = torch.randn(3, 3, 16, 20)
    out = random_views(images, Views(scale=(1.0, 1.0), ratio=(20 / 16, 20 / 16), flip=0.0), torch.Generator())
    torch.testing.assert_close(out, images)


def test_a_view_is_the_drawn_box_resized_back_and_flipped_when_drawn():
    """The same generator stream drawn by hand: 4 numbers for the box, 1 for the flip, per image; the box's
    pixels resized bilinearly to the image size (upsampling: no antialiasing difference) and flipped."""
    images = torch.randn(4, 3, 24, 24)
    views = Views(scale=(0.3, 0.6), flip=0.5)
    out = random_views(images, views, torch.Generator().manual_seed(5))
    g = torch.Generator().manual_seed(5)
    for image, view in zip(images, out):
        top, left, h, w = crop_box(24, 24, views, g)
        expected = F.interpolate(image[None, :, top:top + h, left:left + w], size=(24, 24), mode="bilinear",
                                 align_corners=False)[0]
        if float(torch.rand(1, generator=g)) < 0.5:
            expected = expected.flip(-1)
        torch.testing.assert_close(view, expected, atol=1e-5, rtol=1e-5)
    assert out.shape == images.shape


def test_views_are_drawn_from_the_generator_alone():
    images = torch.randn(5, 3, 16, 16)
    a = random_views(images, Views(), torch.Generator().manual_seed(1))
    b = random_views(images, Views(), torch.Generator().manual_seed(1))
    c = random_views(images, Views(), torch.Generator().manual_seed(2))
    torch.testing.assert_close(a, b)
    assert not torch.equal(a, c)


def test_flips_happen_at_the_asked_rate():
    images = torch.arange(8.0).expand(400, 1, 1, 8).contiguous()  # a ramp: flipped iff it descends
    out = random_views(images, Views(scale=(1.0, 1.0), ratio=(8.0, 8.0), flip=0.3), torch.Generator().manual_seed(0))
    share = float((out[:, 0, 0, 0] > out[:, 0, 0, -1]).float().mean())
    assert 0.22 < share < 0.38


@pytest.mark.parametrize("kwargs", [{"scale": (0.0, 1.0)}, {"scale": (0.8, 0.5)}, {"scale": (0.5, 1.5)},
                                    {"ratio": (0.0, 1.0)}, {"flip": 1.5}])
def test_bad_view_settings_are_refused(kwargs):
    with pytest.raises(ClipUnlearnError):
        Views(**kwargs)


def test_a_batch_must_have_four_dimensions():
    with pytest.raises(ClipUnlearnError, match="N, C, H, W"):
        random_views(torch.randn(3, 16, 16), Views(), torch.Generator())
