import pytest

from cl_core_ros.core.labels import LabelRegistry


@pytest.mark.parametrize('bad, message', [
    ('', 'empty'), ('   ', 'empty'), ('x' * 65, 'at most 64'), ('mug\n2', 'control'),
    ('a\x00b', 'control'), ('zero\u200bwidth', 'control'), (3, 'string'),
])
def test_invalid_names_are_rejected_with_reason(bad, message):
    with pytest.raises(ValueError, match=message):
        LabelRegistry().add(bad)


def test_add_rename_remove_and_id_reuse():
    labels = LabelRegistry(max_classes=3)
    assert labels.add('  mug ') == 0
    assert labels.add('cup') == 1
    assert 'mug' in labels and labels.name_of(0) == 'mug'
    with pytest.raises(ValueError, match='already exists'):
        labels.add('mug')
    assert labels.rename('mug', 'red mug') == 0
    assert labels.id_of('red mug') == 0 and 'mug' not in labels
    with pytest.raises(ValueError, match='already exists'):
        labels.rename('cup', 'red mug')
    assert labels.remove('red mug') == 0
    assert labels.add('bottle') == 0  # lowest free id is reused
    labels.add('plate')
    with pytest.raises(ValueError, match='max_classes'):
        labels.add('fork')
    with pytest.raises(KeyError):
        labels.id_of('fork')


def test_unicode_names_and_state_round_trip():
    labels = LabelRegistry()
    labels.add('tazza è blu')
    labels.add('杯子')
    other = LabelRegistry()
    other.load_state_dict(labels.state_dict())
    assert other.items() == labels.items()
    with pytest.raises(ValueError, match='duplicate'):
        other.load_state_dict({'ids': [0, 1], 'names': ['a', 'a ']})


CAFE_ONE = 'caf\u00e9'         # é as one code point
CAFE_TWO = 'cafe\u0301'        # e + combining acute accent


def test_one_text_is_one_label_whatever_its_code_points():
    labels = LabelRegistry()
    assert labels.add(CAFE_TWO) == 0
    assert labels.name_of(0) == CAFE_ONE and CAFE_ONE in labels and CAFE_TWO in labels
    with pytest.raises(ValueError, match='already exists'):
        labels.add(CAFE_ONE)
    assert labels.id_of(CAFE_ONE) == labels.id_of(CAFE_TWO) == 0
    assert labels.rename(CAFE_TWO, 'Tasse \u00e0 cafe\u0301 \u2615') == 0
    assert labels.name_of(0) == 'Tasse \u00e0 caf\u00e9 \u2615'
    assert labels.remove('Tasse a\u0300 caf\u00e9 \u2615') == 0


def test_case_and_width_are_kept_and_a_similar_label_is_named():
    labels = LabelRegistry()
    labels.add('Mug')
    assert labels.add('mug') == 1 and labels.add('\uff2d\uff55\uff47') == 2  # full-width
    assert labels.items() == [(0, 'Mug'), (1, 'mug'), (2, '\uff2d\uff55\uff47')]
    assert LabelRegistry().similar('mug') is None
    fresh = LabelRegistry()
    fresh.add('Mug')
    assert fresh.similar('MUG') == 'Mug' and fresh.similar('\uff4d\uff55\uff47') == 'Mug'
    assert fresh.similar('Mug') is None and fresh.similar('cup') is None


def test_length_is_counted_after_normalization():
    LabelRegistry(max_length=4).add(CAFE_TWO)  # 5 code points, 4 characters after NFC


def test_an_older_state_with_two_spellings_of_one_label_keeps_both_classes():
    older = {'ids': [0, 1, 2], 'names': [CAFE_ONE, 'cup', CAFE_TWO]}
    labels = LabelRegistry()
    notes = labels.load_state_dict(older)
    assert labels.items() == [(0, CAFE_ONE), (1, 'cup'), (2, f'{CAFE_ONE} #2')]
    assert len(notes) == 1 and 'classes 0 and 2' in notes[0] and 'rename or forget' in notes[0]
    assert LabelRegistry().load_state_dict({'ids': [3], 'names': [CAFE_TWO]}) == []
    tight = LabelRegistry(max_length=5)
    tight.load_state_dict({'ids': [0, 7], 'names': [CAFE_ONE, CAFE_TWO]})
    assert tight.name_of(7) == 'ca #7'
