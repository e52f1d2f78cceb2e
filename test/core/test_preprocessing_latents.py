import numpy as np
import pytest
import torch

from cl_core_ros.core.latents import Latents, QuantisedTensor
from cl_core_ros.core.preprocessing import crop_resize, preprocess, Region


def test_rgb_and_gray_to_normalised_tensor():
    rgb = np.zeros((60, 100, 3), np.uint8)
    rgb[:, 20:80] = 255  # the centre square is white
    x = preprocess(rgb, 32, 'efficientnet_lite0')
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32
    assert torch.allclose(x, torch.full_like(x, (255 - 127) / 128))
    gray = np.full((40, 40), 127, np.uint8)
    assert torch.allclose(preprocess(gray, 16, 'efficientnet_lite0'), torch.zeros(3, 16, 16))
    m = preprocess(np.full((8, 8, 3), 0, np.uint8), 8, 'mobilenet_v1')
    assert m[0, 0, 0].item() == pytest.approx(-0.485 / 0.229, rel=1e-4)


def test_region_crop_and_errors():
    image = np.zeros((50, 50, 3), np.uint8)
    image[10:20, 30:40] = 200
    out = crop_resize(image, 10, Region(30, 10, 10, 10))
    assert out.shape == (10, 10, 3) and (out == 200).all()
    with pytest.raises(ValueError, match='outside'):
        crop_resize(image, 10, Region(60, 60, 5, 5))
    with pytest.raises(ValueError, match='uint8'):
        preprocess(image.astype(np.float32), 10, 'efficientnet_lite0')
    with pytest.raises(ValueError, match='shape'):
        preprocess(np.zeros((4, 4, 5), np.uint8), 10, 'efficientnet_lite0')


@pytest.mark.parametrize('dtype, tolerance', [('uint8', 0.5 / 255 * 8.0 + 1e-6),
                                              ('float16', 1e-2), ('float32', 0.0)])
def test_quantisation_error_is_bounded(dtype, tolerance):
    x = torch.randn(5, 4, 2, 2) * 2
    q = QuantisedTensor.quantise(x, dtype)
    assert q.dtype == dtype
    span = (x.reshape(5, -1).max(1).values - x.reshape(5, -1).min(1).values).max().item()
    bound = tolerance if dtype != 'uint8' else 0.5 * span / 255 + 1e-6
    assert (q.dequantise() - x).abs().max().item() <= bound


def test_latents_cat_index_and_state():
    a = Latents(QuantisedTensor.quantise(torch.randn(3, 2, 2, 2), 'uint8'), torch.randn(3, 4))
    b = Latents(QuantisedTensor.quantise(torch.randn(2, 2, 2, 2), 'uint8'), torch.randn(2, 4))
    both = Latents.cat([a, b])
    assert len(both) == 5 and both.deep.data.dtype == torch.uint8
    assert torch.equal(both.index(torch.tensor([3])).pool, b.pool[:1])
    again = Latents.from_state_dict(both.state_dict())
    assert torch.equal(again.deep.dequantise(), both.deep.dequantise())
    with pytest.raises(ValueError, match='storage types'):
        QuantisedTensor.cat([a.deep, QuantisedTensor.quantise(torch.zeros(1, 2, 2, 2),
                                                              'float16')])
