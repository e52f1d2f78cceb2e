import pytest

from cl_core_ros.core.config import LearnerConfig


@pytest.mark.parametrize('field, value', [
    ('backbone', 'resnet50'), ('input_size', 0), ('input_size', 16), ('fast_epochs', 0),
    ('fast_lr', 0.0), ('fast_lr', float('nan')), ('momentum', 1.5), ('replay_dtype', 'int4'),
    ('deep_layer', 'block99'), ('unknown_threshold', 2.0), ('top_k', True), ('max_classes', 0),
    ('num_threads', 0), ('deep_batch_size', 1), ('use_si', 'yes'), ('brn_r_max', 0.5),
])
def test_validate_names_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        LearnerConfig(**{field: value}).validate()


def test_defaults_and_dict_round_trip():
    config = LearnerConfig().validate()
    assert config.resolved_deep_layer == 'block10'
    assert (config.fast_epochs, config.fast_new_per_batch, config.fast_replay_per_batch,
            config.fast_buffer_size, config.deep_buffer_size) == (8, 20, 100, 500, 1500)
    assert LearnerConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match='unknown LearnerConfig fields'):
        LearnerConfig.from_dict({'fast_epoch': 3})
    with pytest.raises(TypeError):
        LearnerConfig('efficientnet_lite0')  # keyword-only
    with pytest.raises(AttributeError):
        config.top_k = 5  # frozen
