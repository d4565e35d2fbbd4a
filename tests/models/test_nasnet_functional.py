"""nasnet_a_mobile against a functional oracle: torch.nn.functional calls only, the
weights read out of the state_dict by name, the cells of Figure 4 (Zoph et al. 2018)
written out block by block, and TensorFlow's "SAME" padding computed here by hand.

One Normal cell, one Reduction cell and the whole network (stem conv, two stem
reduction cells, 4 + 4 + 4 normal cells, two reduction cells, head) are checked.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from convscope.models import create_model

EPS = 1e-3  # TF's batch-norm epsilon


class Oracle:
    def __init__(self, state_dict: dict[str, torch.Tensor]) -> None:
        self.sd = state_dict

    def bn(self, x, p):
        sd = self.sd
        return F.batch_norm(x, sd[f"{p}.running_mean"], sd[f"{p}.running_var"], sd[f"{p}.weight"],
                            sd[f"{p}.bias"], training=False, eps=EPS)

    @staticmethod
    def same(x, k, s, value=0.0):
        """TF SAME: ceil(n / s) outputs; the total padding split with the odd pixel at the end."""
        n = x.shape[-1]
        out = -(-n // s)
        total = max((out - 1) * s + k - n, 0)
        return F.pad(x, (total // 2, total - total // 2, total // 2, total - total // 2), value=value)

    def conv(self, x, w, s=1, groups=1):
        k = w.shape[-1]
        if s == 1:
            return F.conv2d(x, w, padding=k // 2, groups=groups)
        return F.conv2d(self.same(x, k, s), w, stride=s, groups=groups)

    def sep(self, x, p, s=1):
        """(ReLU, depthwise KxK, pointwise 1x1, BN) twice; the stride in the first."""
        sd = self.sd
        for j, stride in ((1, s), (2, 1)):
            dw = sd[f"{p}.separable_{j}.depthwise_conv2d.weight"]
            x = self.conv(F.relu(x), dw, stride, groups=dw.shape[0])
            x = F.conv2d(x, sd[f"{p}.separable_{j}.pointwise_conv2d.weight"])
            x = self.bn(x, f"{p}.bn_sep_{j}")
        return x

    def avg(self, x, s=1):
        if s == 1:
            return F.avg_pool2d(x, 3, 1, padding=1, count_include_pad=False)
        return F.avg_pool2d(self.same(x, 3, 2), 3, 2)  # the zero pads counted, as in the released code

    def max(self, x, s=1):
        return F.max_pool2d(self.same(x, 3, s, value=float("-inf")), 3, s)

    def relu_conv_bn(self, x, p):
        return self.bn(F.conv2d(F.relu(x), self.sd[f"{p}.conv.weight"]), f"{p}.bn")

    def factorized_reduce(self, x, p):
        x = F.relu(x)
        even = x[:, :, ::2, ::2]
        odd = F.pad(x[:, :, 1:, 1:], (0, 1, 0, 1))[:, :, ::2, ::2]  # shifted by one, zero at the end
        a = F.conv2d(even, self.sd[f"{p}.path_1.conv.weight"])
        b = F.conv2d(odd, self.sd[f"{p}.path_2.conv.weight"])
        return self.bn(torch.cat([a, b], 1), f"{p}.final_path_bn")

    def inputs(self, x, x_prev, p, prev_mode):
        cur = self.relu_conv_bn(x, f"{p}.conv_1x1")
        if prev_mode == "conv":
            prev = self.relu_conv_bn(x_prev, f"{p}.conv_prev_1x1")
        elif prev_mode == "reduce":
            prev = self.factorized_reduce(x_prev, f"{p}.prev_reduce")
        else:
            prev = x_prev
        return cur, prev

    def normal(self, x, x_prev, p, prev_mode):
        """Figure 4, left: five blocks, the cell's input h_{i-1} and all blocks concatenated."""
        h, hp = self.inputs(x, x_prev, p, prev_mode)
        b0 = self.sep(h, f"{p}.comb_iter_0_left") + self.sep(hp, f"{p}.comb_iter_0_right")    # sep5(h) + sep3(h-1)
        b1 = self.sep(hp, f"{p}.comb_iter_1_left") + self.sep(hp, f"{p}.comb_iter_1_right")   # sep5(h-1) + sep3(h-1)
        b2 = self.avg(h) + hp                                                                  # avg3(h) + id(h-1)
        b3 = self.avg(hp) + self.avg(hp)                                                       # avg3(h-1) + avg3(h-1)
        b4 = self.sep(h, f"{p}.comb_iter_4_left") + h                                          # sep3(h) + id(h)
        return torch.cat([hp, b0, b1, b2, b3, b4], 1)

    def reduction(self, x, x_prev, p, prev_mode):
        """Figure 4, right: operations on the cell inputs have stride 2; blocks 1-4 concatenated."""
        h, hp = self.inputs(x, x_prev, p, prev_mode)
        b0 = self.sep(h, f"{p}.comb_iter_0_left", 2) + self.sep(hp, f"{p}.comb_iter_0_right", 2)  # sep5 + sep7
        b1 = self.max(h, 2) + self.sep(hp, f"{p}.comb_iter_1_right", 2)                           # max3 + sep7
        b2 = self.avg(h, 2) + self.sep(hp, f"{p}.comb_iter_2_right", 2)                           # avg3 + sep5
        b3 = b1 + self.avg(b0)                                                                     # id(b1) + avg3(b0)
        b4 = self.sep(b0, f"{p}.comb_iter_4_left") + self.max(h, 2)                               # sep3(b0) + max3(h)
        return torch.cat([b1, b2, b3, b4], 1)

    def network(self, x, *, small_input: bool):
        sd = self.sd
        if small_input:
            x = F.conv2d(x, sd["conv0.conv.weight"], stride=1, padding=1)
        else:
            x = F.conv2d(x, sd["conv0.conv.weight"], stride=2)
        x = self.bn(x, "conv0.bn")
        s0 = self.reduction(x, x, "cell_stem_0", "raw")
        s1 = self.reduction(s0, x, "cell_stem_1", "reduce")
        prev, cur = s0, s1
        cell = 0
        for stage in range(3):
            if stage:
                red = self.reduction(cur, prev, f"reduction_cell_{stage - 1}", "conv")
                # the cell after a reduction reads the reduction cell's own h_{i-1}
                prev, cur = prev, red
            for j in range(4):
                out = self.normal(cur, prev, f"cell_{cell}", "reduce" if j == 0 else "conv")
                prev, cur = cur, out
                cell += 1
        feats = F.relu(cur)
        return F.linear(feats.mean((2, 3)), sd["last_linear.weight"], sd["last_linear.bias"])


def _randomised(model: nn.Module) -> nn.Module:
    """Weights and BN statistics away from their defaults, so every term shows."""
    torch.manual_seed(3)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(torch.randn_like(p) * (0.5 if "bn" in name else 0.3) + (1.0 if name.endswith("bn.weight") else 0))
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
    return model.eval()


@pytest.fixture(scope="module")
def mobile():
    return _randomised(create_model("nasnet_a_mobile", num_classes=7, small_input=True))


def test_one_normal_cell(mobile):
    cell = mobile.cell_2  # reads two normal-cell outputs of 6C = 264 channels at C = 44
    x, x_prev = torch.randn(2, 264, 9, 9), torch.randn(2, 264, 9, 9)
    with torch.no_grad():
        got = cell(x, x_prev)
    want = Oracle({f"cell_2.{k}": v for k, v in cell.state_dict().items()}).normal(x, x_prev, "cell_2", "conv")
    assert got.shape == (2, 6 * 44, 9, 9)
    torch.testing.assert_close(got, want, atol=2e-4, rtol=2e-4)


@pytest.mark.parametrize("side", [10, 9])  # even and odd grids: SAME padding on one side or both
def test_one_reduction_cell(mobile, side):
    cell = mobile.reduction_cell_0  # C = 88: reads 6 x 44 = 264 channels
    x, x_prev = torch.randn(2, 264, side, side), torch.randn(2, 264, side, side)
    with torch.no_grad():
        got = cell(x, x_prev)
    sd = {f"reduction_cell_0.{k}": v for k, v in cell.state_dict().items()}
    want = Oracle(sd).reduction(x, x_prev, "reduction_cell_0", "conv")
    assert got.shape == (2, 4 * 88, (side + 1) // 2, (side + 1) // 2)
    torch.testing.assert_close(got, want, atol=2e-4, rtol=2e-4)


@pytest.mark.parametrize("small_input,side", [(True, 32), (True, 28), (False, 67)])
def test_the_whole_network(small_input, side):
    model = _randomised(create_model("nasnet_a_mobile", num_classes=7, small_input=small_input))
    x = torch.randn(2, 3, side, side)
    with torch.no_grad():
        got = model(x)
        want = Oracle(model.state_dict()).network(x, small_input=small_input)
    assert got.shape == (2, 7)
    assert want.std() > 1e-3  # not a degenerate constant
    torch.testing.assert_close(got, want, atol=1e-3, rtol=1e-3)
