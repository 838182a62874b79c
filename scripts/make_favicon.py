"""Draw static/favicon.ico (16, 32 and 48 px): a play triangle inside a magnifier ring, in the site's colours.

Usage: .venv/bin/python scripts/make_favicon.py
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]


def draw(size: int = 256) -> Image.Image:
    image = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    pen = ImageDraw.Draw(image)
    pen.rounded_rectangle((0, 0, size - 1, size - 1), radius=size // 5, fill=(32, 35, 42, 255))
    ring = (size * 0.14, size * 0.14, size * 0.70, size * 0.70)
    pen.ellipse(ring, outline=(153, 204, 255, 255), width=max(2, size // 14))
    pen.line((size * 0.63, size * 0.63, size * 0.86, size * 0.86), fill=(153, 204, 255, 255), width=size // 9)
    pen.polygon([(size * 0.35, size * 0.28), (size * 0.35, size * 0.56), (size * 0.57, size * 0.42)], fill="white")
    return image


if __name__ == "__main__":
    draw().save(ROOT / "static" / "favicon.ico", sizes=[(16, 16), (32, 32), (48, 48)])
