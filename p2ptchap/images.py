"""Facts about an image being sent: its dimensions and a small preview.

Made by the sender from its own file, with Pillow; receivers never decode
images (they get the numbers and the preview's bytes in the descriptor).
A file that is not an image Pillow reads safely — unknown format, damaged,
or a decompression bomb — simply gets no preview.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import warnings
from pathlib import Path
from typing import Final

from p2ptchap.core.files import MAX_DIMENSION, MAX_THUMBNAIL

log = logging.getLogger("p2ptchap.images")

#: The preview fits in this square (pixels).
THUMBNAIL_BOX: Final = 160
#: Images with more pixels are not decoded for a preview (dimensions are still read).
MAX_PIXELS: Final = 64_000_000
_FORMATS: Final = ("JPEG", "PNG", "GIF", "WEBP", "BMP")


@dataclasses.dataclass(frozen=True, slots=True)
class ImageFacts:
    width: int
    height: int
    thumbnail: bytes | None


def image_facts(path: Path, mime: str) -> ImageFacts | None:
    """Dimensions and a JPEG preview of at most 16 KiB, or ``None`` if not a readable image."""
    if not mime.startswith("image/"):
        return None
    try:
        # Imported here: only senders of images pay its start-up time.
        from PIL import Image, ImageOps  # noqa: PLC0415

        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path, formats=_FORMATS) as image:
                width, height = image.size
                if not (0 < width <= MAX_DIMENSION and 0 < height <= MAX_DIMENSION):
                    return None
                if width * height > MAX_PIXELS:
                    return ImageFacts(width, height, None)
                preview = ImageOps.exif_transpose(image).convert("RGB")
                preview.thumbnail((THUMBNAIL_BOX, THUMBNAIL_BOX))
                for quality in (70, 50, 30):
                    out = io.BytesIO()
                    preview.save(out, "JPEG", quality=quality, optimize=True)
                    if out.tell() <= MAX_THUMBNAIL:
                        return ImageFacts(width, height, out.getvalue())
                return ImageFacts(width, height, None)
    except Exception as exc:  # noqa: BLE001 - any failure of a decoder means "no preview"
        log.info("no preview for %s: %s", path.name, exc)
        return None
