"""Draw class labels as text on images: any valid label, readably, with TrueType fonts.

OpenCV's Hershey fonts have ASCII only ("Tasse à café ☕" came out as ``Tasse ?? caf?? ???``).
Labels are drawn with Pillow from TrueType fonts, character by character from the first font
whose character map covers it: DejaVu Sans (shipped inside matplotlib, a dependency, so always
present: Latin, Greek, Cyrillic, Arabic, Hebrew, many symbols and emoji in outline), then the
fonts installed on the machine (``/usr/share/fonts``, ``~/.local/share/fonts``; e.g. Debian's
``fonts-noto-cjk`` for Chinese, Japanese and Korean). A character that no font covers is drawn
as its code point (``<U+676F>``) and the class id is added (``#3``), so the label can still be
told apart and looked up with ``list_classes``; before that, its compatibility form (NFKC: a
full-width "ｍ" as "m") is tried.

Rendered text is cached per label (a label is drawn on every annotated frame), so a frame
costs array blending, not font rasterization.
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
import functools
from pathlib import Path
import unicodedata

import numpy as np
from PIL import Image, ImageDraw, ImageFont

FONT_SIZE = 18
_FONT_DIRS = ('/usr/share/fonts', '/usr/local/share/fonts', '~/.local/share/fonts',
              '~/.fonts')
_FONT_SUFFIXES = ('.ttf', '.otf', '.ttc')


def _is_ignorable(ch: str) -> bool:
    """Variation selectors and other characters that change no glyph on their own."""
    code = ord(ch)
    return 0xFE00 <= code <= 0xFE0F or 0xE0100 <= code <= 0xE01EF or code == 0x200D


@functools.lru_cache(maxsize=1)
def font_files() -> tuple[Path, ...]:
    """Return the fonts tried in order: matplotlib's DejaVu Sans, then installed fonts."""
    files = []
    try:
        import matplotlib
        files.append(Path(matplotlib.get_data_path()) / 'fonts' / 'ttf' / 'DejaVuSans.ttf')
    except ImportError:
        pass
    for directory in _FONT_DIRS:
        root = Path(directory).expanduser()
        if root.is_dir():
            found = sorted(p for p in root.rglob('*') if p.suffix.lower() in _FONT_SUFFIXES)
            # the widest-covering families first, then the rest in name order
            found.sort(key=lambda p: (not p.name.startswith(('DejaVuSans.', 'NotoSans')),
                                      'Bold' in p.name or 'Italic' in p.name
                                      or 'Oblique' in p.name))
            files += found
    return tuple(dict.fromkeys(p for p in files if p.is_file()))


@functools.lru_cache(maxsize=64)
def _coverage(path: Path) -> frozenset[int]:
    from fontTools.ttLib import TTCollection, TTFont

    try:
        if path.suffix.lower() == '.ttc':
            fonts = TTCollection(str(path), lazy=True).fonts[:1]
        else:
            fonts = [TTFont(str(path), lazy=True)]
        return frozenset(fonts[0].getBestCmap() or ())
    except Exception:  # noqa: BLE001 - an unreadable font file is simply not used
        return frozenset()


@functools.lru_cache(maxsize=64)
def _font(path: Path, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(path), size)


def font_for(ch: str) -> Path | None:
    """Return the first font file whose character map covers ``ch``, or None."""
    return next((path for path in font_files() if ord(ch) in _coverage(path)), None)


@dataclass(frozen=True)
class LabelText:
    """A label ready to draw.

    Attributes:
        text: what is drawn (the label, or its code points where no font covers them).
        runs: (text, font file) pieces in order.
        complete: every character of the label has a glyph (nothing was replaced).

    """

    text: str
    runs: tuple[tuple[str, Path], ...]
    complete: bool


@functools.lru_cache(maxsize=1024)
def layout(label: str, class_id: int | None = None) -> LabelText:
    """Split ``label`` into runs of one font each; replace what no font covers.

    A label with characters no font covers is drawn with those as ``<U+XXXX>`` and ``#<id>``
    appended (when ``class_id`` is given).
    """
    pieces: list[tuple[str, Path | None]] = []
    complete = True
    for ch in label:
        path = font_for(ch)
        if path is None and _is_ignorable(ch):
            continue
        if unicodedata.combining(ch) and pieces and (path is None or
                                                     ord(ch) in _coverage(pieces[-1][1])):
            pieces[-1] = (pieces[-1][0] + ch, pieces[-1][1])  # stays with its base character
            continue
        if path is None:
            complete = False
            folded = unicodedata.normalize('NFKC', ch)  # full-width, ligatures, compatibility
            if folded != ch and all(font_for(c) for c in folded):
                pieces.append((folded, font_for(folded[0])))
            else:
                pieces.append((f'<U+{ord(ch):04X}>', None))
        else:
            pieces.append((ch, path))
    if not complete and class_id is not None:
        pieces.append((f' #{class_id}', None))
    base = font_files()[0] if font_files() else None
    runs: list[tuple[str, Path]] = []
    for text, path in pieces:
        path = path or base
        if path is None:
            continue
        if runs and runs[-1][1] == path:
            runs[-1] = (runs[-1][0] + text, path)
        else:
            runs.append((text, path))
    return LabelText(''.join(text for text, _ in runs), tuple(runs), complete)


@functools.lru_cache(maxsize=2048)
def _patch(text: str, class_id: int | None, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Return (outline mask, glyph mask) of ``text`` as float32 arrays in [0, 1], (h, w)."""
    runs = layout(text, class_id).runs
    if not runs:
        empty = np.zeros((size + 6, 1), np.float32)
        return empty, empty
    fonts = [_font(path, size) for _, path in runs]
    width = int(sum(font.getlength(run) for (run, _), font in zip(runs, fonts))) + 6
    height = size + 8
    masks = []
    for stroke in (2, 0):
        canvas = Image.new('L', (width, height), 0)
        draw = ImageDraw.Draw(canvas)
        x = 2.0
        for (run, _), font in zip(runs, fonts):
            draw.text((x, 2), run, font=font, fill=255, stroke_width=stroke, stroke_fill=255)
            x += font.getlength(run)
        masks.append(np.asarray(canvas, np.float32) / 255.0)
    return masks[0], masks[1]


def _blend(img: np.ndarray, mask: np.ndarray, x: int, y: int, colour) -> int:
    """Blend ``colour`` into ``img`` through ``mask`` at (x, y), clipped; return mask width."""
    h, w = mask.shape
    height, width = img.shape[:2]
    if x >= width or y >= height:
        return w
    region = img[y:y + h, x:x + w]
    m = mask[:region.shape[0], :region.shape[1], None]
    region[:] = (region * (1.0 - m) + np.asarray(colour, np.float32) * m).astype(np.uint8)
    return w


def draw_lines(rgb: np.ndarray, lines: Iterable[Sequence[tuple[str, int | None]]], *,
               origin: tuple[int, int] = (4, 2), size: int = FONT_SIZE,
               fill: tuple[int, int, int] = (255, 255, 0)) -> np.ndarray:
    """Draw text lines (outlined in black, one under the other) on a copy of an RGB image.

    Args:
        rgb: (H, W, 3) uint8 image.
        lines: per line, its segments (text, class id or None), drawn one after the other; a
            segment's id is shown only where a character of its text has no glyph in any font.
        origin: top-left corner of the first line, in pixels.
        size: font size in pixels.
        fill: text colour (RGB).

    Returns:
        a new (H, W, 3) uint8 image; text beyond its border is clipped.

    """
    img = np.array(rgb, dtype=np.uint8, copy=True)
    x0, y = origin
    for segments in lines:
        x = x0
        for text, class_id in segments:
            outline, glyphs = _patch(text, class_id, size)
            _blend(img, outline, x, y, (0, 0, 0))
            x += _blend(img, glyphs, x, y, fill)
        y += size + 6
    return img


def draw_prediction(rgb: np.ndarray, labels: Sequence[str], class_ids: Sequence[int],
                    scores: Sequence[float], unknown: bool) -> np.ndarray:
    """Draw 'unknown' (when flagged) and the top-k labels with their scores (percent)."""
    lines: list[list[tuple[str, int | None]]] = [[('unknown', None)]] if unknown else []
    lines += [[(label, int(class_id)), (f' {score * 100:.0f}%', None)]
              for label, class_id, score in zip(labels, class_ids, scores)]
    return draw_lines(rgb, lines)


__all__ = ['draw_lines', 'draw_prediction', 'font_for', 'font_files', 'layout', 'LabelText']
