"""Turning a photo of a digit, or a canvas drawing, into the kind of image MNIST is made of.

MNIST's makers took dark-on-light scans, normalized each digit to fit a 20x20 box keeping its
aspect ratio (anti-aliased, so the ink becomes gray levels), and placed it in a 28x28 field so
that its centre of mass sits at the centre. A model trained on that has never seen paper, a
small digit in a corner, or thin pen lines; resizing a photo to 28x28 gives it something it
cannot read (about chance-level accuracy). ``digit_image`` redoes MNIST's recipe on any input:

1. grayscale;  2. shrink large photos to a working size;  3. invert if the ink is darker than
the paper;  4. remove uneven paper and lighting (white top-hat: what a morphological opening
wider than any stroke keeps is background, not ink);  5. stretch the contrast so the paper is 0
and the ink 255, zeroing the paper's noise;  6. keep the digit: drop specks, and marks along the
photo's edge (the table, the paper's edge, a ruled line) unless the digit is one of them;  7. crop
to the ink;  8. bring the pen width near MNIST's (thicken hairlines, thin bold marker);  9. fit
the ink into a 20x20 box, anti-aliased;  10. centre by centre of mass.

Each step runs only when the input needs it, and the names of those that ran are returned, so a
caller can show them. An input already in MNIST's format (``size`` x ``size`` gray, black
border, full-strength ink whose longer side fills the box, centre of mass at the centre: every
MNIST test image) skips all of it and is returned as it is, with the step "mnist-format": the
steps above would at most re-crop a faint anti-aliased rim (tests/unit/test_preprocess_fast.py
checks that the model's answers do not change). Pure functions: PIL/numpy in, numpy out, no I/O.
"""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageFilter

from cnnkit.data.imageio import _flatten  # the one place that knows how to drop alpha, 16-bit...

ImageLike = Image.Image | np.ndarray

# Inputs larger than this (longer side, pixels) are shrunk first: a 12-megapixel photo of one
# digit carries no more information than a few hundred pixels, and every step below is per pixel.
WORK_SIZE = 192
# Contrast under this (0-255 gray levels between paper and ink) means there is no digit.
MIN_CONTRAST = 24.0
# MNIST's pen: strokes are about 2.5 px wide in a 20 px tall digit. Thinner than this fraction
# of the ink's longer side and the lines are thickened towards TARGET_STROKE.
THIN_STROKE = 0.07
TARGET_STROKE = 0.11
# ... and thicker than this (a bold marker, a black font) they are thinned towards BOLD_TARGET.
BOLD_STROKE = 0.27
BOLD_TARGET = 0.17


def _best_channel(rgb: np.ndarray) -> np.ndarray:
    """The one of luminance, R, G, B in which ink and paper differ most.

    Blue ink on purple paper, or red ink on yellow paper, nearly vanishes in luminance but
    stands out in one colour channel; for black ink on white paper all four are alike.
    """
    rgb = rgb.astype(np.float32)
    candidates = [rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32), rgb[..., 0], rgb[..., 1], rgb[..., 2]]
    return max(candidates, key=_contrast)


def _contrast(x: np.ndarray) -> float:
    return max(_ink_spread(x, _border(x)))


def _ink_spread(x: np.ndarray, border: np.ndarray) -> tuple[float, float]:
    """How far the darkest and the lightest 1% of the pixels lie from the paper (median of ``border``)."""
    paper = _quantile(border, 0.5)
    levels = _Levels(x)
    return paper - (levels.percentile(1) or 0.0), (levels.percentile(99) or 0.0) - paper


def _gray(img: ImageLike, steps: list[str]) -> np.ndarray:
    """Any PIL mode or HxW / HxWxC uint8 array -> float32 HxW gray levels 0..255."""
    if isinstance(img, np.ndarray):
        arr = img.squeeze()
        if arr.ndim == 3 and arr.shape[0] in (1, 3) and arr.shape[-1] not in (1, 3):
            arr = arr.transpose(1, 2, 0)  # CHW -> HWC
        if arr.ndim == 3 and arr.shape[-1] == 3:
            steps.append("grayscale")
            return _best_channel(arr)
        if arr.ndim != 2:
            raise ValueError(f"expected a 2-D gray or 3-D color image, got shape {img.shape}")
        return arr.astype(np.float32)
    flat = _flatten(img)
    if flat.mode == "L":
        return np.asarray(flat, dtype=np.float32)
    steps.append("grayscale")
    return _best_channel(np.asarray(flat.convert("RGB")))


def _shrink(x: np.ndarray, steps: list[str]) -> np.ndarray:
    h, w = x.shape
    scale = WORK_SIZE / max(h, w)
    if scale >= 1:
        return x
    steps.append("downscale")
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.asarray(Image.fromarray(x).resize(size, Image.Resampling.BOX), dtype=np.float32)


def _border(x: np.ndarray) -> np.ndarray:
    """The outer ring of pixels (about 4% of the side), where the paper usually is, sorted."""
    r = max(1, min(x.shape) // 25)
    ring = np.concatenate([x[:r].ravel(), x[-r:].ravel(), x[:, :r].ravel(), x[:, -r:].ravel()])
    ring.sort()  # quantiles by index: np.percentile's overhead is the cost here on small images
    return ring


def _quantile(sorted_values: np.ndarray, q: float) -> float:
    return float(sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))])


class _Levels:
    """Percentiles and Otsu's threshold from one 256-bin histogram of the gray levels.

    One bincount instead of a sort per percentile: this runs on every request.
    """

    def __init__(self, x: np.ndarray) -> None:
        self.hist = np.bincount(np.clip(x, 0, 255).astype(np.uint8).ravel(), minlength=256)

    def percentile(self, q: float, lo: int = 0, hi: int = 256) -> float | None:
        """The q-th percentile of the levels in [lo, hi), or None if there are none."""
        cum = np.cumsum(self.hist[lo:hi])
        if not cum.size or cum[-1] == 0:
            return None
        return float(lo + int(np.searchsorted(cum, q / 100.0 * cum[-1])))

    def otsu(self) -> int:
        """Otsu's threshold: the level that maximizes the between-class variance."""
        levels = np.arange(256, dtype=np.float64)
        w0 = np.cumsum(self.hist).astype(np.float64)
        m = np.cumsum(self.hist * levels)
        w1 = w0[-1] - w0
        mean0 = m / np.maximum(w0, 1)
        mean1 = (m[-1] - m) / np.maximum(w1, 1)
        return int(np.argmax(w0 * w1 * (mean0 - mean1) ** 2)) + 1


def _ink_is_dark(x: np.ndarray) -> bool:
    """True when the pixels that differ most from the paper are darker than it.

    Comparing the paper (median of the border) with both tails of the histogram, not with a
    fixed 127, also gets dark ink on gray paper and light chalk on a gray board right.
    """
    border = _border(x)
    if border[-1] <= 8.0:  # a clean black background (a scan made MNIST-style): light ink
        return False
    dark, light = _ink_spread(x, border)
    return dark > light


def _opening(x: np.ndarray, span: int) -> np.ndarray:
    """Gray morphological opening (min filter then max filter) with a ``span``-pixel square."""
    size = span | 1  # PIL's rank filters take odd sizes
    img = Image.fromarray(x)
    return np.asarray(img.filter(ImageFilter.MinFilter(size)).filter(ImageFilter.MaxFilter(size)), dtype=np.float32)


def _remove_background(x: np.ndarray, steps: list[str]) -> np.ndarray:
    """White top-hat: ink minus the opening, i.e. minus everything wider than a stroke.

    Shading, shadows, a darker table at the edge of the photo are all wider than any stroke, so
    the opening keeps them and subtracting it leaves only the ink. The opening is computed at
    a quarter of the size (rank filters cost span^2 per pixel) and scaled back up.
    """
    h, w = x.shape
    if min(h, w) < 48:  # MNIST-sized inputs have no paper to speak of
        return x
    small_size = (max(8, w // 4), max(8, h // 4))
    small = np.asarray(Image.fromarray(x).resize(small_size, Image.Resampling.BOX), dtype=np.float32)
    span = max(3, round(min(small.shape) * 0.45))
    background = _opening(small, span)
    background = np.asarray(Image.fromarray(background).resize((w, h), Image.Resampling.BILINEAR), dtype=np.float32)
    steps.append("remove-background")
    return np.clip(x - background, 0, None)


def _stretch(x: np.ndarray, steps: list[str]) -> np.ndarray | None:
    """Paper -> 0, ink -> 255; pixels at the paper's noise level become exactly 0.

    Returns None when there is no ink (too little contrast). A clean MNIST image (paper 0,
    ink near 255) is returned unchanged and the step is not reported.
    """
    border = _border(x)
    if border[-1] <= 1.0 and float(x.max()) >= 240.0:
        return x  # already black paper and full-strength ink (MNIST itself, a canvas drawing)
    levels = _Levels(x)
    top = levels.percentile(99.9) or 0.0  # a small digit in a big photo is well under 1% of it
    if top - float(x.min()) < MIN_CONTRAST:
        return None
    threshold = levels.otsu()
    # The paper's noise level, measured where the paper is (the border), capped in case the
    # digit runs into the border; anti-aliased stroke edges keep their gray levels.
    low = min(threshold / 2, _quantile(border, 0.95))
    high = levels.percentile(99, threshold) or top
    if low <= 1.0 and high >= 240.0:
        return x
    steps.append("normalize-contrast")
    return np.clip((x - low) * (255.0 / max(high - low, 1.0)), 0, 255)


def _border_band(box: tuple[slice, slice], shape: tuple[int, int]) -> bool:
    """True for a component lying along the photo's edge: long on the edge and thin across it."""
    rows, cols = box
    h, w = shape
    height, width = rows.stop - rows.start, cols.stop - cols.start
    edge = max(1, round(0.06 * min(h, w)))
    along_top_bottom = (rows.start < edge or rows.stop > h - edge) and width > 0.5 * w and height < 0.2 * h
    along_sides = (cols.start < edge or cols.stop > w - edge) and height > 0.5 * h and width < 0.2 * w
    return along_top_bottom or along_sides


def _within(nonzero: np.ndarray, box: tuple[slice, slice], margin: int) -> bool:
    """True if every nonzero pixel lies inside ``box`` grown by ``margin`` pixels."""
    rows, cols = np.flatnonzero(nonzero.any(axis=1)), np.flatnonzero(nonzero.any(axis=0))
    return bool(rows[0] >= box[0].start - margin and rows[-1] < box[0].stop + margin
                and cols[0] >= box[1].start - margin and cols[-1] < box[1].stop + margin)


def _keep_digit(x: np.ndarray, steps: list[str]) -> np.ndarray:
    """Zero every ink component that is not part of the digit.

    The digit is the heaviest component that does not touch the photo's edge (or the heaviest
    of all when every one does, as in a tight crop); other components stay when they are not
    specks and lie near it (a "5" or a "4" drawn in two strokes), except bands along the edge.
    """
    try:
        from scipy import ndimage  # the "serve" extra; without it this step is skipped
    except ImportError:
        return x
    mask = x > 64
    labels, count = ndimage.label(mask, structure=np.ones((3, 3), dtype=bool))
    if count == 0:
        return x
    if count == 1 and _within(x > 0, ndimage.find_objects(labels)[0], 2):
        return x  # one stroke and nothing else (a clean scan or drawing): nothing to drop
    ids = np.arange(1, count + 1)
    mass = np.asarray(ndimage.sum_labels(x, labels, ids))
    boxes = ndimage.find_objects(labels)
    h, w = x.shape
    edge = max(1, round(0.03 * min(h, w)))  # perspective and blur keep edge marks a few pixels in
    touches = np.array([b[0].start < edge or b[1].start < edge or b[0].stop > h - edge or b[1].stop > w - edge for b in boxes])
    bands = np.array([_border_band(b, x.shape) for b in boxes])
    # Specks are judged against the heaviest component that is not a band along the edge (a
    # table's edge can outweigh a thin pen digit several times over).
    heaviest = mass[~bands].max() if (~bands).any() else mass.max()
    inner = np.where(~touches & ~bands & (mass >= 0.2 * heaviest))[0]
    main = int(inner[np.argmax(mass[inner])]) if inner.size else int(np.argmax(mass))
    rows, cols = boxes[main]
    reach = 0.2 * max(rows.stop - rows.start, cols.stop - cols.start)  # gaps between strokes of one digit
    keep = np.zeros(count + 1, dtype=bool)
    for i, (r, c) in enumerate(boxes):
        near = r.start < rows.stop + reach and r.stop > rows.start - reach and c.start < cols.stop + reach and c.stop > cols.start - reach
        keep[i + 1] = i == main or (near and mass[i] >= 0.02 * mass[main] and not touches[i]) or (
            near and touches[main] and touches[i] and mass[i] >= 0.02 * mass[main] and not bands[i])
    # Faint anti-aliased rims (below the labelling threshold) belong to the stroke beside them;
    # faint noise elsewhere goes with the dropped components.
    kept = ndimage.binary_dilation(keep[labels], iterations=2)
    out = np.where(kept, x, 0.0).astype(np.float32)
    if float(x.sum() - out.sum()) > 0.01 * float(x.sum()):
        steps.append("keep-digit")
    return out


def _ink_box(x: np.ndarray) -> tuple[int, int, int, int]:
    """(top, bottom, left, right), exclusive ends, holding all but 0.3% of the ink at each side.

    Trimming a sliver of mass instead of taking the bounding box of every nonzero pixel keeps a
    stray speck of dirt from deciding the crop.
    """
    def span(profile: np.ndarray) -> tuple[int, int]:
        cum = np.cumsum(profile)
        total = cum[-1]
        start = int(np.searchsorted(cum, total * 0.003, side="right"))
        end = int(np.searchsorted(cum, total * 0.997, side="left")) + 1
        return start, max(end, start + 1)

    top, bottom = span(x.sum(axis=1))
    left, right = span(x.sum(axis=0))
    return top, bottom, left, right


def _stroke_width(mask: np.ndarray) -> float:
    """Mean stroke width of a binary mask: area / (boundary length / 2)."""
    area = float(mask.sum())
    interior = mask.copy()
    interior[1:-1, 1:-1] &= mask[:-2, 1:-1] & mask[2:, 1:-1] & mask[1:-1, :-2] & mask[1:-1, 2:]
    boundary = area - float(interior[1:-1, 1:-1].sum()) if min(mask.shape) > 2 else area
    return 2.0 * area / max(boundary, 1.0)


def _pen_width(crop: np.ndarray, steps: list[str]) -> np.ndarray:
    """Bring the stroke width near MNIST's (0.10-0.25 of the digit's longer side).

    A fine pen on a big photo leaves lines that nearly vanish at 20x20 (they are dilated); a bold
    font or marker fills the digit's holes (it is eroded). Gray dilation/erosion with a square
    whose side is the difference keeps the anti-aliased edges.
    """
    side = max(crop.shape)
    if side < 8:
        return crop
    width = _stroke_width(crop > 127)
    if width < THIN_STROKE * side:
        grow = int(round(TARGET_STROKE * side - width))
        if grow >= 2:
            steps.append("thicken")
            padded = np.pad(crop, grow)  # room to grow at the edges of the crop
            return np.asarray(Image.fromarray(padded).filter(ImageFilter.MaxFilter(grow | 1)), dtype=np.float32)
    elif width > BOLD_STROKE * side:
        shrink = int(round(width - BOLD_TARGET * side))
        if shrink >= 2:
            steps.append("thin")
            return np.asarray(Image.fromarray(crop).filter(ImageFilter.MinFilter(shrink | 1)), dtype=np.float32)
    return crop


def _fit_box(crop: np.ndarray, box: int, steps: list[str]) -> np.ndarray:
    """Resize so the longer side is ``box`` pixels, keeping the aspect ratio (anti-aliased)."""
    h, w = crop.shape
    scale = box / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    steps.append(f"fit-{box}x{box}")
    if size == (w, h):
        return crop
    resized = np.asarray(Image.fromarray(crop).resize(size, Image.Resampling.LANCZOS), dtype=np.float32)
    return np.clip(resized, 0, 255)


def _centre_by_mass(digit: np.ndarray, size: int, steps: list[str]) -> np.ndarray:
    """Place ``digit`` in a size x size field with its centre of mass at the centre."""
    h, w = digit.shape
    total = float(digit.sum())
    ys, xs = np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64)
    cy = float((digit.sum(axis=1) * ys).sum() / total) if total else (h - 1) / 2
    cx = float((digit.sum(axis=0) * xs).sum() / total) if total else (w - 1) / 2
    # Shift so the mass centre lands on the field's centre, but never push ink off the field.
    # MNIST's digits have their centre of mass at pixel 14 of 28 (row and column means of the
    # test set are 14.0-14.2 in 0-based coordinates), i.e. size / 2, not (size - 1) / 2.
    top = int(np.clip(round(size / 2 - cy), 0, size - h))
    left = int(np.clip(round(size / 2 - cx), 0, size - w))
    out = np.zeros((size, size), dtype=np.float32)
    out[top:top + h, left:left + w] = digit
    steps.append("center-of-mass")
    return out


def _as_mnist_candidate(img: ImageLike, size: int) -> np.ndarray | None:
    """The input as a uint8 (size, size) array when it is one gray image of that size, else None."""
    if isinstance(img, Image.Image):
        return np.array(img) if img.mode == "L" and img.size == (size, size) else None
    arr = img.squeeze() if isinstance(img, np.ndarray) else None
    return arr.copy() if arr is not None and arr.dtype == np.uint8 and arr.shape == (size, size) else None


def _mnist_format(x: np.ndarray, size: int, box: int) -> bool:
    """True for a uint8 image the steps below would leave as it is, give or take a faint rim.

    A few microseconds on 28x28, where the whole recipe takes 150 or more (digit_image was a
    quarter of a server worker's GIL time per MNIST-style upload in issue 17's profile).
    """
    rows, cols = x.sum(axis=1, dtype=np.int64), x.sum(axis=0, dtype=np.int64)
    if rows[0] or rows[-1] or cols[0] or cols[-1] or x.max() < 240:
        return False  # paper that is not black, or ink that is not full strength
    r, c = np.flatnonzero(rows), np.flatnonzero(cols)
    if max(r[-1] - r[0], c[-1] - c[0]) + 1 != box:
        return False
    total, grid = float(rows.sum()), np.arange(size)
    cy, cx = float(rows @ grid) / total, float(cols @ grid) / total
    return round(size / 2 - cy) == 0 and round(size / 2 - cx) == 0  # as _centre_by_mass would place it


def digit_image(img: ImageLike, size: int = 28, box: int | None = None,
                shortcut: bool = True) -> tuple[np.ndarray, list[str]]:
    """A photo, scan or drawing of one digit -> (uint8 (size, size) MNIST-style image, steps run).

    ``box`` is the side of the box the ink is fitted into (default: 20/28 of ``size``, as MNIST).
    A blank input (no contrast) comes back as an all-zero image with the step "blank".
    ``shortcut=False`` runs every step even on an input already in MNIST's format.
    """
    if size < 8:
        raise ValueError(f"size must be at least 8, got {size}")
    box = box or max(4, round(size * 20 / 28))
    if shortcut and (raw := _as_mnist_candidate(img, size)) is not None and _mnist_format(raw, size, box):
        return raw, ["mnist-format"]
    steps: list[str] = []
    x = _shrink(_gray(img, steps), steps)
    if _ink_is_dark(x):
        steps.append("invert")
        x = 255.0 - x
    x = _remove_background(x, steps)
    stretched = _stretch(x, steps)
    if stretched is None:
        return np.zeros((size, size), dtype=np.uint8), [*steps, "blank"]
    stretched = _keep_digit(stretched, steps)
    top, bottom, left, right = _ink_box(stretched)
    if (top, bottom, left, right) != (0, x.shape[0], 0, x.shape[1]):
        steps.append("crop")
    crop = _pen_width(stretched[top:bottom, left:right], steps)
    digit = _fit_box(crop, box, steps)
    peak = float(digit.max())
    if 0 < peak < 200:  # shrinking thin lines leaves them gray: bring the ink back to full strength
        digit = digit * (255.0 / peak)
    out = _centre_by_mass(digit, size, steps)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8), steps
