"""Inception-v4 and Inception-ResNet-v2 against timm (random weights, nothing downloaded)."""
from __future__ import annotations

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

import timm  # noqa: E402  (a [dev] dependency: missing is a failure, not a skip)

from convscope.models import create_model, import_weights  # noqa: E402
from convscope.models.inception_resnet import Block35  # noqa: E402

# name -> (timm name, exact parameter count of timm's model for 1000 classes)
REFERENCES = {
    "inception_v4": ("inception_v4", 42_679_816),
    "inception_resnet_v2": ("inception_resnet_v2", 55_843_464),
}


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_weights_import_from_timm_and_outputs_match(name, calibrate_batch_norm):
    ref_name, expected_params = REFERENCES[name]
    ref = timm.create_model(ref_name, pretrained=False)
    calibrate_batch_norm(ref, torch.randn(2, 3, 160, 160))
    ours = import_weights(create_model(name), ref).eval()
    assert sum(p.numel() for p in ours.parameters()) == expected_params
    assert sum(p.numel() for p in ref.parameters()) == expected_params
    x = torch.randn(1, 3, 160, 160)  # the smallest modest size the valid-padded reductions allow easily
    with torch.no_grad():
        ours_feat, ref_feat = ours.forward_features(x), ref.forward_features(x)
        ours_out, ref_out = ours.forward_head(ours_feat), ref.forward_head(ref_feat)
    assert ours_feat.shape == ref_feat.shape == (1, 1536, 3, 3)
    with torch.no_grad():  # the oracle's output depends on its input, so equal outputs mean something
        assert (ref.forward_features(torch.randn(1, 3, 160, 160)) - ref_feat).abs().max() > 0.1
    assert (ours_feat - ref_feat).abs().max() < 1e-4
    assert (ours_out - ref_out).abs().max() < 1e-4
    assert torch.equal(ours(x), ours_out)  # forward == forward_head(forward_features)


def test_import_from_another_architecture_names_the_misfit_tensor():
    ref = timm.create_model("inception_v4", pretrained=False)
    with pytest.raises(ValueError, match=r"'stem\.conv2d_1a\.conv\.weight' .* no counterpart 'conv2d_1a\.conv\.weight'"):
        import_weights(create_model("inception_resnet_v2"), ref)


@pytest.mark.parametrize("name", sorted(REFERENCES))
@pytest.mark.parametrize("in_chans", [1, 3])
def test_small_input_28x28_forward_and_backward(name, in_chans):
    model = create_model(name, num_classes=10, in_chans=in_chans, small_input=True)
    assert model.default_input_size == (in_chans, 32, 32)
    x = torch.randn(2, in_chans, 28, 28)
    features = model.forward_features(x)
    assert features.shape == (2, 1536, 2, 2)  # 28 -> 14 -> 7 -> 4 -> 2, as the docstring says
    out = model.forward_head(features)
    assert out.shape == (2, 10) and torch.isfinite(out).all()
    out.square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, f"no gradient reached {missing[:3]}"
    assert model(torch.randn(1, in_chans, 32, 32)).shape == (1, 10)


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_reset_classifier_replaces_the_head_only(name):
    with torch.device("meta"):
        model = create_model(name)
        body = {k: v.shape for k, v in model.state_dict().items() if not k.startswith("last_linear")}
        model.reset_classifier(7)
        after = {k: v.shape for k, v in model.state_dict().items() if not k.startswith("last_linear")}
    assert after == body
    assert model.last_linear.out_features == 7 and model.last_linear.in_features == model.num_features == 1536


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_multiply_adds_at_299_match_timm(name):
    """MACs on the meta device against timm's module as the oracle (same architecture, same count)."""
    def macs(model):
        counter = FlopCounterMode(display=False)
        with counter:
            model(torch.empty(1, 3, 299, 299, device="meta"))
        return counter.get_total_flops() // 2

    with torch.device("meta"):
        ours = create_model(name).eval()
        ref = timm.create_model(REFERENCES[name][0], pretrained=False).eval()
    assert ours.default_input_size == (3, 299, 299)
    assert macs(ours) == macs(ref)


def test_wrong_channel_count_is_a_clear_error():
    model = create_model("inception_v4", in_chans=1, num_classes=10, small_input=True)
    with pytest.raises(ValueError, match=r"1 input channel.*has 3"):
        model(torch.randn(1, 3, 32, 32))


def test_residual_block_adds_the_scaled_branch_to_its_input():
    """Inception-ResNet's x -> ReLU(x + scale * branch(x)) (section 3.3): scale 0 leaves ReLU(x)."""
    block = Block35(scale=0.0).eval()
    x = torch.randn(1, 320, 5, 5)
    with torch.no_grad():
        assert torch.equal(block(x), torch.relu(x))
        block.scale = 0.5
        expected = torch.relu(x + 0.5 * block.conv2d(block.forward_branches(x)))
        assert torch.allclose(block(x), expected)
