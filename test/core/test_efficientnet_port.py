import pytest
from skimage import data
import torch

from cl_core_ros.core.backbone import build_backbone
from cl_core_ros.core.preprocessing import preprocess

CATS = {281, 282, 283, 284, 285}   # tabby, tiger cat, Persian, Siamese, Egyptian cat
COFFEE = {967, 968, 504}           # espresso, cup, coffee mug


@pytest.fixture(scope='module')
def full_network():
    """The whole network as trained (up to head_conv, global average pooling)."""
    return build_backbone('efficientnet_lite0')


@pytest.mark.parametrize('size', [128, 224])
@pytest.mark.parametrize('photo, expected', [('chelsea', CATS), ('coffee', COFFEE)])
def test_imagenet_top5_on_real_photos(full_network, photo, expected, size):
    backbone = full_network
    head = backbone.imagenet_head
    x = preprocess(getattr(data, photo)(), size, 'efficientnet_lite0')[None]
    with torch.no_grad():
        probs = torch.softmax(backbone.upper(backbone.lower(x)) @ head['_fc.weight'].T
                              + head['_fc.bias'], dim=1)
    top5 = set(probs.topk(5).indices[0].tolist())
    assert top5 & expected, f'{photo}: top-5 {sorted(top5)}'
    assert probs.argmax().item() in expected
    assert probs.max().item() > 0.3


def test_default_split_shapes(encoder):
    assert encoder.config.input_size == 192
    assert encoder.deep_shape == (112, 12, 12)  # stride 16 at block10
    assert encoder.feature_dim == 320  # block15, before the 1280-channel head_conv
