import torch

from cnnkit.data.dataset import ImageSet, stratified_split
from cnnkit.data.loaders import DeviceData, epoch_generator, steps_per_epoch, train_batches
from cnnkit.data.transforms import AugmentPolicy, BatchPipeline, Normalization, policy_for, random_erase, random_hflip, random_translate


def _batch(n=8, c=1, s=12):
    return torch.arange(n * c * s * s, dtype=torch.float32).reshape(n, c, s, s)


def test_translate_is_a_shifted_copy_with_zero_fill():
    x = _batch()
    out = random_translate(x, 2, epoch_generator(0, 0))
    for i in range(len(x)):
        # find the shift that reproduces out[i] from the zero-padded x[i]
        padded = torch.nn.functional.pad(x[i], (2, 2, 2, 2))
        matches = [(dy, dx) for dy in range(5) for dx in range(5) if torch.equal(padded[:, dy:dy + 12, dx:dx + 12], out[i])]
        assert len(matches) == 1


def test_augmentation_is_reproducible_from_seed_and_epoch():
    x = _batch()
    pipe = BatchPipeline(Normalization((0.5,), (0.25,)), 12, AugmentPolicy(translate=2, hflip=True, rotate=10, erase=0.5))
    u8 = (x % 256).to(torch.uint8)
    a, b = pipe(u8, epoch_generator(3, 1)), pipe(u8, epoch_generator(3, 1))
    c = pipe(u8, epoch_generator(3, 2))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_hflip_flips_about_half():
    x = _batch(n=400)
    out = random_hflip(x, epoch_generator(0, 0))
    flipped = sum(torch.equal(o, xi.flip(-1)) for o, xi in zip(out, x))
    assert 150 < flipped < 250 and all(torch.equal(o, xi) or torch.equal(o, xi.flip(-1)) for o, xi in zip(out, x))


def test_erase_zeroes_one_rectangle_in_a_fraction_of_images():
    x = torch.ones(300, 1, 16, 16)
    out = random_erase(x, 0.5, epoch_generator(0, 0))
    erased = (out == 0).flatten(1).any(1)
    assert 100 < erased.sum() < 200
    img = out[erased.nonzero()[0, 0], 0]
    rows, cols = (img == 0).any(1).nonzero().flatten(), (img == 0).any(0).nonzero().flatten()
    assert (img[rows.min():rows.max() + 1, cols.min():cols.max() + 1] == 0).all()  # a filled rectangle


def test_pipeline_normalizes_and_resizes():
    u8 = torch.full((2, 3, 16, 16), 128, dtype=torch.uint8)
    norm = Normalization((0.5, 0.5, 0.5), (0.1, 0.2, 0.4))
    out = BatchPipeline(norm, 32)(u8)
    assert out.shape == (2, 3, 32, 32)
    expected = (128 / 255 - 0.5) / torch.tensor([0.1, 0.2, 0.4])
    assert torch.allclose(out[0, :, 5, 5], expected, atol=1e-5)


def test_normalization_from_images_matches_numpy():
    imgs = torch.randint(0, 256, (50, 3, 8, 8), dtype=torch.uint8)
    n = Normalization.from_images(imgs)
    ref = imgs.double().div(255).permute(1, 0, 2, 3).reshape(3, -1)
    assert torch.allclose(torch.tensor(n.mean), ref.mean(1).float(), atol=1e-5)
    assert torch.allclose(torch.tensor(n.std), ref.std(1).float(), atol=1e-5)


def test_presets_never_flip_digits():
    for preset in ("none", "light", "auto", "strong"):
        assert not policy_for("digits", preset, 28).hflip
    assert policy_for("natural", "auto", 32).hflip
    assert policy_for("natural", "strong", 64).translate == 8


def test_sharded_batches_are_equal_disjoint_and_reproducible():
    data = DeviceData(torch.zeros(103, 1, 2, 2, dtype=torch.uint8), torch.arange(103))
    shards = [[y for _, y in train_batches(data, 10, epoch_generator(1, 0), rank, 2)] for rank in (0, 1)]
    assert len(shards[0]) == len(shards[1]) == steps_per_epoch(103, 10, 2) == 5
    seen0, seen1 = torch.cat(shards[0]), torch.cat(shards[1])
    assert not set(seen0.tolist()) & set(seen1.tolist())
    again = torch.cat([y for _, y in train_batches(data, 10, epoch_generator(1, 0), 0, 2)])
    assert torch.equal(seen0, again)


def test_stratified_split_keeps_class_proportions():
    labels = torch.tensor([0] * 80 + [1] * 20)
    kept, held = stratified_split(labels, 0.25, seed=0)
    assert torch.bincount(labels[held]).tolist() == [20, 5]
    assert len(set(kept.tolist()) | set(held.tolist())) == 100
    assert torch.equal(stratified_split(labels, 0.25, seed=0)[1], held)


def test_imageset_validates_shapes():
    import pytest

    with pytest.raises(ValueError):
        ImageSet(torch.zeros(2, 1, 4, 4), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError):
        ImageSet(torch.zeros(2, 1, 4, 4, dtype=torch.uint8), torch.zeros(3, dtype=torch.long))
