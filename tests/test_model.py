import pytest
import torch

from napari_unet import InputError, UNet, count_parameters


@pytest.mark.parametrize("shape", [(33, 47), (8, 8), (64, 64), (1, 70)])
@pytest.mark.parametrize("channels,classes", [(1, 1), (3, 1), (1, 3)])
def test_forward_backward_any_size(shape, channels, classes):
    net = UNet(in_channels=channels, n_classes=classes, filters=4, depth=3)
    x = torch.randn(2, channels, *shape, requires_grad=True)
    y = net(x)
    assert y.shape == (2, 1 if classes == 1 else classes + 1, *shape)
    y.mean().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert all(p.grad is not None for p in net.parameters() if p.requires_grad)


def test_architecture_is_the_classic_unet():
    net = UNet(filters=16, depth=4, dropout=0.2)
    assert [d[1][0].out_channels for d in net.downs] == [32, 64, 128, 256]  # filters double per level
    assert all(isinstance(u.up, torch.nn.ConvTranspose2d) and u.up.kernel_size == (2, 2) for u in net.ups)
    assert any(isinstance(m, torch.nn.Dropout2d) for m in net.modules())
    assert not any(isinstance(m, torch.nn.Dropout2d) for m in UNet(dropout=0.0).modules())
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3)]
    assert all(m.bias is None for m in convs)  # batch norm follows every 3x3 conv
    assert 1_000_000 < count_parameters(net) < 3_000_000


def test_he_normal_init():
    torch.manual_seed(0)
    conv = UNet(filters=32, depth=1).inc[0]
    fan_out = conv.out_channels * 9
    assert conv.weight.std().item() == pytest.approx((2 / fan_out) ** 0.5, rel=0.15)


def test_wrong_channels_is_a_clear_error():
    with pytest.raises(InputError, match="expects a \\(batch, 1"):
        UNet(filters=4, depth=2)(torch.zeros(1, 3, 16, 16))


@pytest.mark.parametrize("kwargs", [{"depth": 0}, {"filters": 0}, {"dropout": 1.5}, {"in_channels": 2.5}, {"depth": 9}])
def test_bad_arguments(kwargs):
    with pytest.raises(InputError):
        UNet(**kwargs)
