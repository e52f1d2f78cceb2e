"""Labels are drawn as text: every character from a font that has it, never as '?'."""

import numpy as np
import pytest

from cl_core_ros.nodes.label_drawing import _font, _patch, draw_prediction, font_for, layout

CUP = 'Tasse \u00e0 caf\u00e9 \u2615'


def _glyph(ch: str) -> np.ndarray:
    return _patch(ch, None, 18)[1]


@pytest.mark.parametrize('label', [CUP, 'Kaffeeb\u00e4cher', '\u0447\u0430\u0448\u043a\u0430',
                                   '\u03ba\u03bf\u03cd\u03c0\u03b1', '\u05db\u05d5\u05e1',
                                   'mug \U0001F600', '\u00e6\u00f8\u00e5 \u0142\u00f3d\u017a'])
def test_each_character_is_drawn_with_a_real_glyph(label):
    text = layout(label, 4)
    assert text.complete and text.text == label
    for ch in set(label) - {' '}:
        path = font_for(ch)
        assert path is not None, f'no font for {ch!r}'
        notdef = _font(path, 18).getmask('\U0010FFFD')  # the font's "missing glyph" box
        glyph = _font(path, 18).getmask(ch)
        assert glyph.size != notdef.size or bytes(glyph) != bytes(notdef), ch
        assert _glyph(ch).max() > 0.5, f'{ch!r} drew nothing'


def test_the_label_is_not_drawn_as_question_marks():
    image = np.zeros((96, 384, 3), np.uint8)
    drawn = draw_prediction(image, [CUP], [0], [0.9], False)
    mangled = draw_prediction(image, ['Tasse ?? caf?? ???'], [0], [0.9], False)
    assert drawn.any() and not np.array_equal(drawn, mangled)
    assert not np.array_equal(_glyph('\u00e9'), _glyph('?'))
    assert not np.array_equal(_glyph('\u2615'), _glyph('?'))


def test_characters_no_font_covers_are_shown_as_code_points_with_the_class_id():
    uncovered = '\U0001FAE8'  # a code point no shipped font maps (SHAKING FACE, Unicode 15)
    if font_for(uncovered) is not None:
        pytest.skip('an installed font covers it')
    text = layout(f'cup {uncovered}', 7)
    assert not text.complete and text.text == 'cup <U+1FAE8> #7'
    assert layout('\uff2d\uff55\uff47', 2).text in ('\uff2d\uff55\uff47', 'Mug #2')  # full-width


def test_text_beyond_the_border_is_clipped():
    small = draw_prediction(np.zeros((20, 30, 3), np.uint8), [CUP * 3], [0], [1.0], True)
    assert small.shape == (20, 30, 3) and small.any()
