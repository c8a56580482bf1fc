"""Corruption variants: seeded, shape-preserving, doing what their names say, refusing bad specs."""
from __future__ import annotations

import pytest
import torch

from cnnkit.errors import CnnkitError
from cnnkit.evaluation.robustness import NAMES, Variant, apply_variant, describe, parse_variants, tta_views


def _images(n: int = 40, c: int = 1, side: int = 28, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros(n, c, side, side, dtype=torch.uint8)
    x[:, :, 8:20, 10:18] = torch.randint(100, 256, (n, c, 12, 8), generator=g, dtype=torch.uint8)
    return x


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("channels", [1, 3])
def test_every_variant_is_seeded_and_keeps_shape(name: str, channels: int):
    x = _images(c=channels)
    v = Variant(name)
    a, b = apply_variant(x, v, "natural", seed=1), apply_variant(x, v, "natural", seed=1)
    assert a.shape == x.shape and a.dtype == torch.uint8 and torch.equal(a, b)
    if name == "clean":
        assert torch.equal(a, x)
    else:
        assert not torch.equal(a, x), f"{name} left the images unchanged"
    if name in ("noise", "rotate", "shift", "occlude", "augmented"):
        assert not torch.equal(a, apply_variant(x, v, "natural", seed=2)), f"{name} ignores its seed"


def test_results_do_not_depend_on_chunking():
    """The same images corrupted alone or inside a bigger set get the same pixels for deterministic ops,
    and a batch is processed in fixed chunks, so a longer set only appends draws."""
    x = _images(n=10)
    blur = Variant("blur")
    assert torch.equal(apply_variant(x, blur)[:4], apply_variant(x[:4], blur))


def test_shift_moves_content_by_the_stated_pixels():
    x = torch.zeros(64, 1, 28, 28, dtype=torch.uint8)
    x[:, :, 14, 14] = 255
    out = apply_variant(x, Variant("shift", 3))
    pos = torch.nonzero(out[:, 0] == 255)
    assert len(pos) == 64  # nothing lost or smeared: nearest-neighbour integer shifts
    dy, dx = (pos[:, 1] - 14).abs(), (pos[:, 2] - 14).abs()
    assert set(dy.tolist()) <= {0, 3} and set(dx.tolist()) <= {0, 3} and bool(((dy + dx) > 0).all())


def test_rotate_is_exactly_the_angle_either_way():
    x = torch.zeros(32, 1, 29, 29, dtype=torch.uint8)
    x[:, :, 14, 14:] = 255  # a ray from the centre to the right
    out = apply_variant(x, Variant("rotate", 90), seed=0).float()
    up, down = out[:, 0, :14, 14].sum(1), out[:, 0, 15:, 14].sum(1)
    assert bool(((up > 1000) ^ (down > 1000)).all()), "every ray should point straight up or straight down"
    assert 0 < int((up > 1000).sum()) < 32, "both signs should occur"


def test_noise_and_contrast_magnitudes():
    x = torch.full((20, 1, 28, 28), 128, dtype=torch.uint8)
    noisy = apply_variant(x, Variant("noise", 0.1)).float() / 255
    assert noisy.std().item() == pytest.approx(0.1, rel=0.1)
    y = _images()
    low = apply_variant(y, Variant("contrast", 0.5)).float()
    assert low.std().item() == pytest.approx(0.5 * y.float().std().item(), rel=0.05)


def test_occlude_blacks_out_the_stated_area():
    x = torch.full((10, 1, 20, 20), 200, dtype=torch.uint8)
    out = apply_variant(x, Variant("occlude", 0.25))
    assert ((out == 0).float().mean((1, 2, 3)) == pytest.approx(0.25, abs=1e-6))


def test_augmented_never_mirrors_digits():
    """The digits preset has no flips: a mirrored 2 is not a 2."""
    x = torch.zeros(200, 1, 28, 28, dtype=torch.uint8)
    x[:, :, 10:18, 2:6] = 255  # a bar at the left edge
    out = apply_variant(x, Variant("augmented"), "digits", seed=0).float()
    assert out[:, 0, :, 14:].sum().item() == 0 and bool((out[:, 0, :, :14].sum((1, 2)) > 0).float().mean() > 0.9)


def test_parse_variants():
    assert parse_variants("clean,noise:0.2,rotate") == [Variant("clean"), Variant("noise", 0.2), Variant("rotate")]
    assert [v.name for v in parse_variants("all")] == list(NAMES)
    assert parse_variants(None) == [Variant("clean")]
    assert Variant("noise", 0.2).key == "noise-0.2" and Variant("blur").key == "blur"
    assert "3 px" in describe(Variant("shift"), 28) and "15 degrees" in describe(Variant("rotate"), 28)
    for bad, msg in (("fog", "unknown variant 'fog'"), ("noise:lots", "not a number"), ("noise:3", "must be in"),
                     ("clean:1", "takes no value")):
        with pytest.raises(CnnkitError, match=msg):
            parse_variants(bad)


def test_tta_views_for_digits_and_photos():
    x = _images(n=3)
    digits, photos = tta_views(x, "digits"), tta_views(x, "natural")
    assert len(digits) == 5 and len(photos) == 6 and torch.equal(digits[0], x)
    assert torch.equal(photos[-1], x.flip(-1))
    assert torch.equal(digits[1][..., 1:], x[..., :-1])  # a 1-px shift to the right, zero fill
