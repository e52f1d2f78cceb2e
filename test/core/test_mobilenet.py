import pytest
from safetensors.torch import save_file
import torch

from cl_core_ros.core import mobilenet_v1
from cl_core_ros.core.config import LearnerConfig
from cl_core_ros.core.learner import Learner


def _random_weights():
    # No package registry ships MobileNetV1 weights in this layout, so the tests use random
    # weights written to a temporary file (real users supply their own file).
    torch.manual_seed(0)
    stages = mobilenet_v1.build_stages()
    state = mobilenet_v1.stages_state_dict(stages)
    for key, value in state.items():
        if key.endswith('running_var'):
            value.uniform_(0.5, 1.5)
    state['fc.weight'] = torch.zeros(1000, 1024)  # extra classifier keys are ignored
    return {k: v.clone() for k, v in state.items()}


@pytest.mark.parametrize('suffix', ['.safetensors', '.pt'])
def test_mobilenet_from_user_file(tmp_path, suffix):
    state = _random_weights()
    path = tmp_path / f'mobilenet{suffix}'
    if suffix == '.safetensors':
        save_file(state, str(path))
    else:
        torch.save(state, path)
    learner = Learner(LearnerConfig(backbone='mobilenet_v1', mobilenet_weights=str(path),
                                    deep_epochs=1, deep_batch_size=16))
    assert learner.deep_shape == (512, 12, 12) and learner.feature_dim == 1024
    assert learner._backbone.deep_layer == 'conv5_4/dw'
    images = torch.randn(6, 3, 192, 192)
    latents = learner.encode(images)
    assert latents.pool.shape == (6, 1024)
    report = learner.learn('thing', latents)
    assert report.is_new_class and learner.predict(images)[0].labels == ['thing']
    assert learner.consolidate().changed


def test_mobilenet_bad_files(tmp_path):
    with pytest.raises(ValueError, match='mobilenet_weights'):
        LearnerConfig(backbone='mobilenet_v1').validate()
    with pytest.raises(ValueError, match='no such file'):
        Learner(LearnerConfig(backbone='mobilenet_v1', mobilenet_weights=str(tmp_path / 'x')))
    state = _random_weights()
    del state['conv1.conv.weight']
    save_file(state, str(tmp_path / 'partial.safetensors'))
    with pytest.raises(ValueError, match='lack'):
        Learner(LearnerConfig(backbone='mobilenet_v1',
                              mobilenet_weights=str(tmp_path / 'partial.safetensors')))
