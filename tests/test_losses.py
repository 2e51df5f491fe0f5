import torch

from napari_unet.training.losses import segmentation_loss


def test_unannotated_pixels_count_for_nothing():
    torch.manual_seed(0)
    logits = torch.randn(2, 1, 8, 8, requires_grad=True)
    target = torch.full((2, 8, 8), -1)
    target[:, :2] = 1
    target[:, -2:] = 0
    loss = segmentation_loss(logits, target)
    loss.backward()
    assert torch.all(logits.grad[:, :, 2:-2] == 0)  # no gradient from unannotated pixels
    changed = logits.detach().clone()
    changed[:, :, 2:-2] = 100.0
    assert torch.isclose(segmentation_loss(changed, target), loss.detach())


def test_perfect_prediction_has_low_loss_and_wrong_has_high():
    target = torch.zeros(1, 8, 8, dtype=torch.long)
    target[:, :4] = 1
    good = (target.float() * 2 - 1)[:, None] * 20
    assert segmentation_loss(good, target) < 0.01
    assert segmentation_loss(-good, target) > 5


def test_multiclass_and_empty_batch():
    target = torch.randint(-1, 3, (2, 8, 8))
    logits = torch.randn(2, 3, 8, 8, requires_grad=True)
    loss = segmentation_loss(logits, target, class_balance=True)
    loss.backward()
    assert torch.isfinite(loss) and logits.grad is not None
    empty = segmentation_loss(logits, torch.full((2, 8, 8), -1))
    assert empty.item() == 0.0


def test_class_balance_upweights_the_rare_class():
    target = torch.zeros(1, 10, 10, dtype=torch.long)
    target[0, 0, 0] = 1  # one foreground pixel among 99 background
    logits = torch.full((1, 1, 10, 10), -10.0)  # background confidently right
    logits[0, 0, 0, 0] = -5  # the rare pixel is wrong
    plain = segmentation_loss(logits, target, class_balance=False, dice_weight=0)
    balanced = segmentation_loss(logits, target, class_balance=True, dice_weight=0)
    assert balanced > 5 * plain
