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
