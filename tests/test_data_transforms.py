import numpy as np
import pytest
import torch
from PIL import Image, ImageEnhance, ImageOps

from spikedistill.data import (
    DatasetInfo,
    autoaugment_cifar10,
    build_batch_transform,
    cutout,
    normalize,
    random_crop,
    random_hflip,
)
from spikedistill.data import autoaugment as aa
from spikedistill.data.transforms import random_erasing
from spikedistill.errors import ConfigError

CIFAR_INFO = DatasetInfo(10, 3, (32, 32), (0.5, 0.4, 0.3), (0.2, 0.2, 0.2))


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_random_crop_shape_and_content():
    x = torch.rand(6, 3, 32, 32)
    out = random_crop(x, 32, 4, gen())
    assert out.shape == (6, 3, 32, 32)
    padded = torch.nn.functional.pad(x, (4, 4, 4, 4))
    for i in range(6):  # every output is a window of the padded input
        windows = padded[i].unfold(1, 32, 1).unfold(2, 32, 1)  # [C, 9, 9, 32, 32]
        assert (windows == out[i][:, None, None]).flatten(3).all(-1).all(0).any()
    assert random_crop(x, (20, 24), 0, gen()).shape == (6, 3, 20, 24)
    with pytest.raises(ConfigError):
        random_crop(x, 40, 2, gen())


def test_random_crop_full_size_without_padding_is_identity():
    x = torch.rand(5, 2, 9, 7)
    assert torch.equal(random_crop(x, (9, 7), 0, gen()), x)


def test_random_crop_offsets_cover_all_positions():
    x = torch.zeros(2000, 1, 3, 3)
    x[:, :, 1, 1] = 1.0  # track where the centre pixel lands
    out = random_crop(x, 3, 1, gen())
    positions = out.flatten(1).argmax(1)
    assert set(positions.tolist()) == set(range(9))


def test_flip_flips_exactly_the_chosen_samples():
    x = torch.rand(64, 3, 4, 5)
    out = random_hflip(x, gen(3))
    chosen = torch.rand(64, generator=gen(3)) < 0.5  # the documented draw
    assert 10 < chosen.sum() < 54
    assert torch.equal(out[chosen], x[chosen].flip(-1))
    assert torch.equal(out[~chosen], x[~chosen])


def test_cutout_zeroes_one_square_per_sample():
    x = torch.ones(50, 3, 32, 32)
    out = cutout(x, 16, gen())
    holes = (out == 0).all(1)  # [B, H, W]
    sizes = holes.flatten(1).sum(1)
    assert sizes.max() == 256 and sizes.min() >= 64  # 16x16, clipped at borders to >= 8x8
    assert ((out == 0) | (out == 1)).all()
    for i in range(50):  # the hole is a rectangle
        rows, cols = holes[i].any(1).nonzero(), holes[i].any(0).nonzero()
        assert holes[i].sum() == len(rows) * len(cols)
    filled = cutout(x, 8, gen(), fill=(0.5, 0.25, 0.125))
    hole = filled != 1
    assert set(filled[hole].unique().tolist()) == {0.5, 0.25, 0.125}
    assert cutout(x, 4, gen(), holes=3).eq(0).all(1).flatten(1).sum(1).max() <= 48


def test_normalize_exact_formula():
    x = torch.tensor([[[[0.0, 1.0]], [[0.5, 0.25]]]])  # [1, 2, 1, 2]
    out = normalize(x, (0.5, 0.25), (0.5, 0.25))
    assert torch.equal(out, torch.tensor([[[[-1.0, 1.0]], [[1.0, 0.0]]]]))
    with pytest.raises(ConfigError):
        normalize(x, (0.5,) * 3, (1.0,) * 3)


def test_build_batch_transform():
    t = build_batch_transform(["cutout", "flip", "crop"], CIFAR_INFO)
    assert t.names == ("crop", "flip", "cutout")  # canonical order
    x = torch.rand(8, 3, 32, 32)
    a, b = t(x, gen(1)), t(x, gen(1))
    assert a.shape == x.shape and torch.equal(a, b)
    assert not torch.equal(a, t(x, gen(2)))
    assert build_batch_transform("crop, flip", CIFAR_INFO).names == ("crop", "flip")
    assert torch.equal(build_batch_transform([], CIFAR_INFO)(x, gen()), x)
    mnist = DatasetInfo(10, 1, (28, 28), (0.1307,), (0.3081,))
    assert build_batch_transform(["crop", "cutout"], mnist)(
        torch.rand(4, 1, 28, 28), gen()
    ).shape == (
        4,
        1,
        28,
        28,
    )
    with pytest.raises(ConfigError, match="crop, flip, roll, autoaugment, cutout") as info:
        build_batch_transform(["crop", "mixup"], CIFAR_INFO)
    assert "'mixup'" in str(info.value)


# ----------------------------------------------------------------------------- AutoAugment


def test_policy_table():
    assert len(aa.CIFAR10_POLICY) == 25 and all(len(s) == 2 for s in aa.CIFAR10_POLICY)
    assert {op for sub in aa.CIFAR10_POLICY for op, _, _ in sub} <= set(aa.OPS)
    assert aa.CIFAR10_POLICY[0] == (("Invert", 0.1, None), ("Contrast", 0.2, 6))
    assert aa.magnitude("Rotate", 9) == pytest.approx(30.0)
    assert aa.magnitude("Posterize", 7) == 5.0
    assert aa.magnitude("ShearY", 8) == pytest.approx(0.3 * 8 / 9)


def test_autoaugment_dtypes_determinism_and_effect():
    x8 = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8)
    out8 = autoaugment_cifar10(x8, gen(5))
    assert out8.dtype == torch.uint8 and out8.shape == x8.shape
    assert torch.equal(out8, autoaugment_cifar10(x8, gen(5)))
    changed = (out8 != x8).flatten(1).any(1).float().mean()
    assert 0.5 < changed < 1.0  # most samples get at least one operation, some none
    xf = x8.float() / 255
    outf = autoaugment_cifar10(xf, gen(5))
    assert outf.dtype == torch.float32 and outf.min() >= 0 and outf.max() <= 1
    assert torch.equal((outf * 255).round().to(torch.uint8), out8)
    gray = autoaugment_cifar10(torch.rand(16, 1, 28, 28), gen(0))
    assert gray.shape == (16, 1, 28, 28)


AFFINE, NEAREST = Image.Transform.AFFINE, Image.Resampling.NEAREST


def _affine(coeffs):
    return lambda i: i.transform(i.size, AFFINE, coeffs, NEAREST, fillcolor=0)


def _pil_reference(images, fn):
    return torch.stack(
        [torch.from_numpy(np.array(fn(Image.fromarray(im)))).permute(2, 0, 1) for im in images]
    ).float()


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    imgs = rng.integers(0, 256, (4, 12, 10, 3), dtype=np.uint8)
    imgs[1] = imgs[1] // 4 + 60  # low contrast
    return imgs


def _ours(images, op, m):
    v = torch.from_numpy(images).permute(0, 3, 1, 2).float()
    return aa.OPS[op](v, torch.full((len(images),), float(m), dtype=torch.float64))


@pytest.mark.parametrize(
    ("op", "m", "reference"),
    [
        ("Equalize", 0, ImageOps.equalize),
        ("Posterize", 5, lambda i: ImageOps.posterize(i, 5)),
        ("Solarize", 128, lambda i: ImageOps.solarize(i, 128)),
        ("Invert", 0, ImageOps.invert),
        ("ShearX", -0.2, _affine((1, -0.2, 0, 0, 1, 0))),
        ("ShearY", 0.27, _affine((1, 0, 0, 0.27, 1, 0))),
        ("TranslateX", -0.45, _affine((1, 0, -4, 0, 1, 0))),  # int(-0.45 * 10 px)
        ("TranslateY", 0.3, _affine((1, 0, 0, 0, 1, 3))),  # int(0.3 * 12 px)
        ("Rotate", 20, lambda i: i.rotate(20, NEAREST, fillcolor=0)),
    ],
)
def test_ops_match_pil_exactly(images, op, m, reference):
    assert torch.equal(_ours(images, op, m), _pil_reference(images, reference))


@pytest.mark.parametrize("op", ["Brightness", "Color", "Contrast", "Sharpness", "AutoContrast"])
@pytest.mark.parametrize("m", [-0.7, 0.6])
def test_enhance_ops_match_pil_within_rounding(images, op, m):
    """PIL truncates where these round: at most one level apart."""
    if op == "AutoContrast":
        reference = ImageOps.autocontrast
    else:
        enhancer = getattr(ImageEnhance, op)
        reference = lambda i: enhancer(i).enhance(1.0 + m)  # noqa: E731
    diff = (_ours(images, op, m) - _pil_reference(images, reference)).abs()
    assert diff.max() <= 1.0


def test_random_erasing_matches_torchvisions_distribution():
    """``erase`` against torchvision's ``RandomErasing`` (p 0.5, area 2-20 %, aspect 0.3-3.3),
    sample by sample on 2000 images: the share erased, the area and the aspect of the
    rectangles agree within sampling noise; every erased region is one rectangle of ``fill``."""
    from third_party import import_torchvision

    torchvision = import_torchvision()
    n = 2000
    x = torch.ones(n, 3, 32, 32)
    ours = random_erasing(x, gen(), fill=(0.5, 0.25, 0.125)) != 1  # [N, C, H, W]
    torch.manual_seed(0)
    theirs = (
        torch.stack(
            [torchvision.transforms.RandomErasing(scale=(0.02, 0.2), value=0)(img) for img in x]
        )
        != 1
    )

    def stats(erased):
        mask = erased.all(1)  # [N, H, W]
        area = mask.flatten(1).sum(1).float()
        hit = area > 0
        rows, cols = mask.any(2).sum(1).float(), mask.any(1).sum(1).float()
        assert torch.equal(area[hit], (rows * cols)[hit])  # one rectangle each
        return hit.float().mean(), (area[hit] / 1024).mean(), (rows[hit] / cols[hit]).log().mean()

    (p1, a1, r1), (p2, a2, r2) = stats(ours), stats(theirs)
    assert abs(p1 - 0.5) < 0.04 and abs(p1 - p2) < 0.05
    assert 0.02 <= a1 <= 0.2 and abs(a1 - a2) < 0.01  # the mean area, ~0.11
    assert abs(r1) < 0.1 and abs(r1 - r2) < 0.1  # log aspect symmetric around 0
    erased = ours.all(1)[:, None].expand_as(ours)
    kept = random_erasing(x, gen(), fill=(0.5, 0.25, 0.125))[erased].unique()
    assert set(kept.tolist()) == {0.5, 0.25, 0.125}
