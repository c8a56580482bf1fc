"""Photo-like digit images, and how well a digits run reads them with and without preprocessing.

MNIST test digits and printed digits are put on paper the way a phone photo shows them: dark ink
of several colours on tinted, textured paper, uneven light, at various sizes and off-centre, with
perspective, blur, sensor noise and JPEG compression, sometimes with a darker table at the edge.
Printed digits use the system's TrueType fonts (DejaVu, Liberation) at several weights and pen
(stroke) widths. Nothing here is used for training: it is a test set unlike the training data.

    python benchmarks/digit_photos.py mnist-airbench --runs-dir /tmp/serve-runs --n 600 --save /tmp/photos

prints accuracy with the digit preprocessing (cnnkit.data.preprocess.digit_image) and with a
naive resize to 28x28 (what the tutorials' servers do).
"""
from __future__ import annotations

import argparse
import glob
import io
import json
import random
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

FONT_GLOBS = ("/usr/share/fonts/truetype/dejavu/*.ttf", "/usr/share/fonts/truetype/liberation/*.ttf")
INKS = [(20, 20, 25), (25, 35, 110), (10, 10, 10), (120, 20, 20), (40, 40, 40), (60, 60, 140)]


def fonts() -> list[str]:
    found = sorted(p for g in FONT_GLOBS for p in glob.glob(g) if "Math" not in p)
    return found


def _font(path: str | None, size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.truetype(path, size) if path else ImageFont.load_default(size)


def printed_glyph(digit: int, rng: random.Random, font_paths: list[str]) -> Image.Image:
    """A digit in a random font and pen width, as an L image: 255 = ink, 0 = paper, tightly cropped."""
    size = rng.randint(60, 160)
    font = _font(rng.choice(font_paths) if font_paths else None, size)
    stroke = rng.choice([0, 0, 1, 2, max(1, size // 25)])
    canvas = Image.new("L", (size * 2, size * 2), 0)
    ImageDraw.Draw(canvas).text((size // 2, size // 4), str(digit), fill=255, font=font, stroke_width=stroke, stroke_fill=255)
    box = canvas.getbbox()
    return canvas.crop(box) if box else canvas


def mnist_glyph(image: np.ndarray, rng: random.Random) -> Image.Image:
    """An MNIST digit (28x28, 255 = ink) scaled up smoothly, as a pen drawing photographed larger."""
    img = Image.fromarray(image)
    box = img.getbbox() or (0, 0, 28, 28)
    scale = rng.uniform(2.5, 7.0)
    crop = img.crop(box)
    return crop.resize((max(1, round(crop.width * scale)), max(1, round(crop.height * scale))), Image.Resampling.BICUBIC)


def _paper(w: int, h: int, rng: random.Random, nrng: np.random.Generator) -> np.ndarray:
    """Tinted paper with texture and a lighting gradient, float RGB (h, w, 3)."""
    tint = np.array([rng.uniform(200, 250), rng.uniform(195, 245), rng.uniform(170, 240)], dtype=np.float32)
    coarse = nrng.normal(0, 1, (max(2, h // 16), max(2, w // 16))).astype(np.float32)
    coarse = np.asarray(Image.fromarray(coarse).resize((w, h), Image.Resampling.BICUBIC))
    texture = coarse * rng.uniform(2, 8) + nrng.normal(0, rng.uniform(1, 5), (h, w)).astype(np.float32)
    gy, gx = np.mgrid[0:h, 0:w].astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    ramp = np.cos(angle) * gx / w + np.sin(angle) * gy / h
    light = 1.0 - rng.uniform(0.0, 0.35) * (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1e-6)
    return (tint[None, None, :] + texture[..., None]) * light[..., None]


def _perspective(img: Image.Image, rng: random.Random, fill: tuple[int, int, int]) -> Image.Image:
    w, h = img.size
    d = rng.uniform(0.0, 0.08)
    src = [(rng.uniform(0, d) * w, rng.uniform(0, d) * h), (w - rng.uniform(0, d) * w, rng.uniform(0, d) * h),
           (w - rng.uniform(0, d) * w, h - rng.uniform(0, d) * h), (rng.uniform(0, d) * w, h - rng.uniform(0, d) * h)]
    dst = [(0, 0), (w, 0), (w, h), (0, h)]
    a = []
    for (x, y), (u, v) in zip(dst, src):
        a.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        a.append([0, 0, 0, x, y, 1, -v * x, -v * y])
    coeffs = np.linalg.solve(np.array(a, dtype=np.float64), np.array([c for p in src for c in p], dtype=np.float64))
    return img.transform((w, h), Image.Transform.PERSPECTIVE, tuple(coeffs), Image.Resampling.BILINEAR, fillcolor=fill)


def photograph(glyph: Image.Image, rng: random.Random, nrng: np.random.Generator) -> Image.Image:
    """Put a glyph (L, 255 = ink) on paper, off-centre, and 'photograph' it (RGB)."""
    margin = rng.uniform(0.15, 1.6)
    w = int(glyph.width + margin * max(glyph.size) * rng.uniform(0.8, 1.6)) + 4
    h = int(glyph.height + margin * max(glyph.size) * rng.uniform(0.8, 1.6)) + 4
    paper = _paper(w, h, rng, nrng)
    pad_x, pad_y = (w - glyph.width) // 10, (h - glyph.height) // 10  # perspective must not cut the digit
    x0, y0 = rng.randint(pad_x, w - glyph.width - pad_x), rng.randint(pad_y, h - glyph.height - pad_y)
    alpha = np.zeros((h, w), dtype=np.float32)
    alpha[y0:y0 + glyph.height, x0:x0 + glyph.width] = np.asarray(glyph, dtype=np.float32) / 255.0
    alpha *= rng.uniform(0.75, 1.0)  # ink never quite covers the paper
    ink = np.array(rng.choice(INKS), dtype=np.float32)
    out = paper * (1 - alpha[..., None]) + ink[None, None, :] * alpha[..., None]
    if rng.random() < 0.25:  # the table shows at one edge
        side, depth = rng.randint(0, 3), rng.randint(2, max(3, min(w, h) // 10))
        region = [np.s_[:depth, :], np.s_[-depth:, :], np.s_[:, :depth], np.s_[:, -depth:]][side]
        out[region] = np.array([rng.uniform(40, 110)] * 3, dtype=np.float32)
    img = Image.fromarray(np.clip(out, 0, 255).astype(np.uint8), "RGB")
    if rng.random() < 0.6:
        img = _perspective(img, rng, tuple(int(c) for c in paper[0, 0]))
    if rng.random() < 0.5:
        img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.5)))
    noisy = np.asarray(img, dtype=np.float32) + nrng.normal(0, rng.uniform(0, 6), (img.height, img.width, 3))
    img = Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8), "RGB")
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=rng.randint(60, 95))
    return Image.open(io.BytesIO(buf.getvalue()))


def make_set(n: int, mnist_images: np.ndarray | None = None, mnist_labels: np.ndarray | None = None,
             seed: int = 0) -> Iterator[tuple[Image.Image, int, str]]:
    """Yield ``n`` (photo, label, kind) triples; half printed, half MNIST handwriting when given."""
    rng, nrng = random.Random(seed), np.random.default_rng(seed)
    paths = fonts()
    for i in range(n):
        if mnist_images is not None and i % 2 == 1:
            j = rng.randrange(len(mnist_images))
            yield photograph(mnist_glyph(mnist_images[j], rng), rng, nrng), int(mnist_labels[j]), "handwritten"
        else:
            digit = rng.randrange(10)
            yield photograph(printed_glyph(digit, rng, paths), rng, nrng), digit, "printed"


def evaluate(run: str, runs_dir: str | None, data_dir: str, n: int, save: str | None, seed: int) -> dict:
    import torch

    from cnnkit.data.builtins import load_builtin
    from cnnkit.predict import Predictor

    mnist = load_builtin("mnist", Path(data_dir), download=False).test
    with_pre = Predictor.from_run(run, runs_dir)
    without = Predictor.from_run(run, runs_dir, digits=False)
    rows = []
    for i, (img, label, kind) in enumerate(make_set(n, mnist.images[:, 0].numpy(), mnist.labels.numpy(), seed)):
        if save and i < 200:
            Path(save).mkdir(parents=True, exist_ok=True)
            img.save(Path(save) / f"{i:04d}_{kind}_{label}.jpg")
        rows.append((img, label, kind))
    out: dict = {"run": with_pre.loaded.ref, "images": len(rows), "seed": seed}
    for name, pred in (("digit_preprocessing", with_pre), ("naive_resize", without)):
        start = time.perf_counter()
        batch = torch.from_numpy(np.stack([pred.to_uint8(img) for img, _, _ in rows]))
        guess = pred.probabilities(batch).argmax(1).numpy()
        per_kind = {}
        for kind in ("printed", "handwritten"):
            idx = [k for k, r in enumerate(rows) if r[2] == kind]
            if idx:
                per_kind[kind] = round(float(np.mean([guess[k] == rows[k][1] for k in idx])), 4)
        out[name] = {"accuracy": round(float(np.mean([g == r[1] for g, r in zip(guess, rows)])), 4), **per_kind,
                     "ms_per_image": round((time.perf_counter() - start) * 1000 / len(rows), 2)}
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("run", help="a digits run (NAME, NAME:vN or path)")
    p.add_argument("--runs-dir")
    p.add_argument("--data-dir", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    p.add_argument("--n", type=int, default=600)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--save", help="write the first 200 photos here, to look at")
    a = p.parse_args(argv)
    print(json.dumps(evaluate(a.run, a.runs_dir, a.data_dir, a.n, a.save, a.seed), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
