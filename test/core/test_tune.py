"""Settings changed on a running learner (Learner.tune) act like a learner built with them."""

import pytest

from cl_core_ros.core.learner import Learner


def _taught(config, photo_latents):
    learner = Learner(config)
    for name in ('chelsea', 'coffee'):
        learner.learn(name, photo_latents[name, 'train'])
    return learner


def _verdicts(learner, latents, smooth=False):
    return [(p.labels, [round(s, 6) for s in p.scores], p.unknown)
            for p in learner.predict_latents(latents, smooth=smooth)]


def test_tuned_open_set_and_top_k_equal_a_learner_built_with_them(photo_latents, small_config):
    tuned = _taught(small_config(), photo_latents)
    built = _taught(small_config(unknown_ratio=0.9, unknown_threshold=0.7, top_k=1),
                    photo_latents)
    version = tuned.model_version
    tuned.tune(unknown_ratio=0.9, unknown_threshold=0.7, top_k=1)
    assert tuned.model_version == version  # settings, not a new model
    for name in ('chelsea', 'rocket'):
        frames = photo_latents[name, 'test']
        assert _verdicts(tuned, frames) == _verdicts(built, frames)
    assert all(len(p.labels) == 1 for p in tuned.predict_latents(photo_latents['coffee', 'test']))
    stranger = tuned.predict_latents(photo_latents['rocket', 'test'])
    assert all(p.unknown for p in stranger)
    tuned.tune(unknown_ratio=0.0, unknown_threshold=0.0)
    assert not any(p.unknown for p in tuned.predict_latents(photo_latents['rocket', 'test']))


def test_a_new_smoothing_window_restarts_the_average(photo_latents, small_config):
    learner = _taught(small_config(smoothing_window=5), photo_latents)
    frames = photo_latents['chelsea', 'test']
    learner.predict_latents(frames, smooth=True)  # five frames of history
    learner.tune(smoothing_window=1)
    assert _verdicts(learner, frames, smooth=True) == _verdicts(learner, frames)
    learner.tune(fast_epochs=1, deep_epochs=2)
    assert (learner.config.fast_epochs, learner.config.deep_epochs) == (1, 2)


@pytest.mark.parametrize('change, reason', [
    ({'input_size': 224}, 'cannot change input_size'),
    ({'backbone': 'mobilenet_v1'}, 'cannot change backbone'),
    ({'top_k': 0}, 'top_k'),
    ({'unknown_ratio': 1.5}, 'unknown_ratio'),
])
def test_tune_refuses_model_shaping_fields_and_bad_values(small_config, encoder, change, reason):
    learner = Learner(small_config())
    before = learner.config
    with pytest.raises(ValueError, match=reason):
        learner.tune(**change)
    assert learner.config is before
