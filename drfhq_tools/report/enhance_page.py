"""OUT/index.html of `drfhq enhance`: every image before and after, side by side, with what was done
to each face and why anything was left alone."""

from __future__ import annotations

import hashlib
import html
from pathlib import Path

from PIL import Image

from ..io import atomic_save_image, atomic_write_text

THUMB = 480      # longest side of the page's pictures


def _thumb(src: Path, dest: Path) -> bool:
    """A JPEG thumbnail, redrawn only when the source is newer."""
    if dest.is_file() and dest.stat().st_mtime_ns >= src.stat().st_mtime_ns:
        return True
    try:
        with Image.open(src) as img:
            img = img.convert("RGB")
            img.thumbnail((THUMB, THUMB), Image.LANCZOS)
            atomic_save_image(dest, img)
        return True
    except OSError:
        return False


def write_enhance_page(out: Path, source_root: Path, rows: list[dict]) -> Path:
    by_image: dict[str, list[dict]] = {}
    for r in rows:
        by_image.setdefault(r["image"], []).append(r)
    cards = []
    for image, image_rows in by_image.items():
        tag = hashlib.sha256(image.encode()).hexdigest()[:16]
        output = next((r["output"] for r in image_rows if r["output"]), None)
        pictures = []
        if _thumb(source_root / image, out / "thumbs" / f"{tag}-before.jpg"):
            pictures.append(f'<figure><img src="thumbs/{tag}-before.jpg"><figcaption>before</figcaption></figure>')
        if output and _thumb(out / output, out / "thumbs" / f"{tag}-after.jpg"):
            pictures.append(f'<figure><img src="thumbs/{tag}-after.jpg"><figcaption>after</figcaption></figure>')
        notes = []
        for r in image_rows:
            who = f"face {r['face']}" if r["face"] is not None else "image"
            what = r["status"]
            if r["status"] == "enhanced" and r.get("lpips") is not None:
                what += f" (LPIPS {r['lpips']:.3f}, {r['steps']} steps{', collapsed' if r.get('collapsed') else ''})"
            if r.get("reason"):
                what += f": {r['reason']}"
            notes.append(f"<li class='{html.escape(r['status'])}'>{html.escape(who)}: {html.escape(what)}</li>")
        cards.append(f"<section><h2>{html.escape(image)}</h2><div class='pair'>{''.join(pictures)}</div>"
                     f"<ul>{''.join(notes)}</ul></section>")
    faces = sum(r["status"] == "enhanced" for r in rows)
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>drfhq enhance: {html.escape(str(out))}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1100px}} .pair{{display:flex;gap:1em}} figure{{margin:0}}
img{{max-width:{THUMB}px;border:1px solid #ccc}} figcaption{{text-align:center;color:#555}}
li.skipped,li.unchanged{{color:#8a6d00}} li.failed{{color:#b00}} section{{border-bottom:1px solid #ddd;padding-bottom:1em}}</style>
</head><body><h1>drfhq enhance</h1><p>{len(by_image)} images, {faces} faces enhanced. Rows: enhance.parquet.</p>
{''.join(cards)}</body></html>"""
    atomic_write_text(out / "index.html", page)
    return out / "index.html"
