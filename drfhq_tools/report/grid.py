"""Contact sheets: rows of image files pasted as square tiles, with an optional header of column labels."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw

LABEL_HEIGHT = 18


def path_grid(rows: list[list[Path]], tile: int, labels: list[str] | None = None) -> Image.Image:
    """One picture row per list of files, each file resized to tile x tile (a missing file leaves its tile
    white, so a cut-short run still shows the rest); `labels` head the columns."""
    top = LABEL_HEIGHT if labels else 0
    columns = max([len(r) for r in rows] + [len(labels or []), 1])
    canvas = Image.new("RGB", (tile * columns, top + tile * max(len(rows), 1)), "white")
    if labels:
        draw = ImageDraw.Draw(canvas)
        for c, name in enumerate(labels):
            draw.text((c * tile + 4, 3), name, fill="black")
    for r, paths in enumerate(rows):
        for c, path in enumerate(paths):
            if Path(path).is_file():
                with Image.open(path) as img:
                    canvas.paste(img.convert("RGB").resize((tile, tile), Image.LANCZOS), (c * tile, top + r * tile))
    return canvas
