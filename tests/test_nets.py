"""Encoders: channels-last changes speed, never values, and survives a checkpoint; tile encoders keep sizes."""
import copy

import torch

from selfsup.nets import build_encoder
from selfsup.nets.tiles import TileEncoder
from selfsup.runs import load_weights, save_weights


def _nchw_copy(encoder):
    plain = copy.deepcopy(encoder)
    plain.channels_last = False
    return plain.to(memory_format=torch.contiguous_format)


def test_convnet_runs_channels_last_with_the_same_outputs_and_gradients_as_nchw():
    torch.manual_seed(0)
    encoder = build_encoder("convnet", in_channels=1, image_size=28, batch_norm=True)
    conv2 = encoder.blocks["conv2"][0].weight  # conv1 has one input channel: both layouts coincide
    assert conv2.is_contiguous(memory_format=torch.channels_last) and not conv2.is_contiguous()
    plain = _nchw_copy(encoder)
    assert plain.blocks["conv2"][0].weight.is_contiguous()
    x = torch.rand(8, 1, 28, 28)
    out, ref = encoder(x), plain(x)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(encoder(x, upto="conv2"), plain(x, upto="conv2"), rtol=1e-4, atol=1e-5)
    out.square().sum().backward()
    ref.square().sum().backward()
    torch.testing.assert_close(conv2.grad, plain.blocks["conv2"][0].weight.grad, rtol=1e-3, atol=1e-4)


def test_channels_last_weights_survive_a_checkpoint_round_trip(tmp_path):
    torch.manual_seed(0)
    encoder = build_encoder("convnet", in_channels=1, image_size=28).eval()
    save_weights(encoder, tmp_path / "w.safetensors")
    torch.manual_seed(1)
    loaded = build_encoder("convnet", in_channels=1, image_size=28).eval()
    x = torch.rand(4, 1, 28, 28)
    assert not torch.allclose(loaded(x), encoder(x))
    load_weights(loaded, tmp_path / "w.safetensors")
    assert torch.equal(loaded(x), encoder(x))
    assert loaded.blocks["conv2"][0].weight.is_contiguous(memory_format=torch.channels_last)


def test_tile_encoder_sees_whole_images_like_its_inner_encoder():
    inner = build_encoder("convnet", in_channels=1, image_size=28, widths=(8, 8, 8))
    tiles = TileEncoder(inner)
    x = torch.rand(3, 1, 28, 28)
    assert torch.equal(tiles(x), inner(x)) and torch.equal(tiles(x, upto="conv2"), inner(x, upto="conv2"))
    assert tiles(torch.rand(5, 1, 7, 7)).shape == (5, tiles.feature_dim()) == (5, inner.feature_dim())
