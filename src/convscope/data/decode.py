"""Open an image file with the one pixel limit (convscope.limits.MAX_IMAGE_PIXELS).

Every decoder (predict, the folder datasets, the server) opens images here: the
size is read from the file's header and checked before a pixel is decompressed,
so a 140 kB PNG that claims 12000x12000 pixels costs nothing. Errors other than
the size (a damaged or unknown file) are the caller's to word.
"""
from __future__ import annotations

import warnings
from typing import IO, Sequence

from PIL import Image

from convscope.limits import check_image_size, too_large


def open_image(fp: str | IO[bytes], what: str, *, formats: Sequence[str] | None = None) -> Image.Image:
    """The decoded image (loaded; EXIF rotation not applied) of a path or binary file object.

    Raises convscope.errors.ImageTooLarge (a DataError) naming `what` when the
    image is over the limit; Pillow's own errors for damaged files pass through.
    """
    with warnings.catch_warnings():  # Pillow's bomb warning: the size is checked below
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            img = Image.open(fp, formats=formats)
        except Image.DecompressionBombError:  # over twice the limit: refused while opening
            raise too_large(what) from None
        try:
            check_image_size(img.width, img.height, what)
            img.load()
        except BaseException:
            img.close()
            raise
    return img


def header_size(fp: str | IO[bytes], what: str) -> tuple[int, int]:
    """(width, height) from the header alone, checked against the limit."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            with Image.open(fp) as img:
                size = img.size
        except Image.DecompressionBombError:
            raise too_large(what) from None
    check_image_size(size[0], size[1], what)
    return size
