"""convscope.geometry against the shapes torch actually produces (meta tensors: no data)."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from convscope.geometry import (GeometryError, RFStep, conv_output_size, padding_for, receptive_field,
                                same_padding, suggest_fixes)

SETTINGS = settings(max_examples=150, deadline=None)
sizes, kernels, strides = st.integers(1, 40), st.integers(1, 9), st.integers(1, 5)
paddings, dilations = st.integers(0, 6), st.integers(1, 3)


def _meta(n: int) -> torch.Tensor:
    return torch.empty(1, 1, n, n, device="meta")


def _torch_or_error(fn):
    try:
        return fn().shape[-1]
    except RuntimeError:
        return "error"


def _ours_or_error(**kw):
    try:
        return conv_output_size(**kw)
    except GeometryError:
        return "error"


# --- the lecture's questions ---------------------------------------------------

def test_lecture_7x7_with_3x3():
    assert conv_output_size(7, 3, stride=1) == 5
    assert conv_output_size(7, 3, stride=2) == 3
    assert conv_output_size(7, 3, stride=3) == 2  # what torch does: round down
    with pytest.raises(GeometryError) as info:
        conv_output_size(7, 3, stride=3, strict=True)
    msg = str(info.value)
    assert "(7 - 3)/3 + 1 = 2.33" in msg
    assert "padding 1 (gives 3)" in msg and "stride 2 (gives 3)" in msg
    assert {"padding": 1, "output": 3} in info.value.fixes["padding"]
    assert conv_output_size(7, 3, stride=3, padding=1, strict=True) == 3


def test_geometry_error_is_a_value_error():
    assert issubclass(GeometryError, ValueError)


def test_three_stacked_3x3_see_7x7():
    steps = receptive_field([(3, 1, 1)] * 3)
    assert [s.receptive_field for s in steps] == [3, 5, 7]
    assert all(isinstance(s, RFStep) and s.jump == 1 and s.start == 0.0 for s in steps)


def test_receptive_field_known_networks():
    # AlexNet's conv1 (11, stride 4) then 3x3/2 max pool: 11 + 2*4 = 19, jump 8
    steps = receptive_field([(11, 4, 2), (3, 2, 0)])
    assert (steps[-1].receptive_field, steps[-1].jump) == (19, 8)
    # dilation 2 makes a 3x3 see 5x5; dict form and pairs accepted
    assert receptive_field([{"kernel": 3, "dilation": 2}])[0].receptive_field == 5
    assert receptive_field([((3, 3), (2, 2), (1, 1))])[0].jump == 2


@pytest.mark.parametrize("chain", [
    [(3, 1, 1), (3, 2, 1), (3, 1, 1, 2)],
    [(7, 2, 3), (3, 2, 1), (3, 1, 1), (1, 1, 0)],
    [(5, 1, 0), (2, 2, 0), (5, 1, 0), (2, 2, 0)],  # LeNet-5
    [(3, 3, 2, 2), (4, 2, 1)],
])
def test_receptive_field_matches_gradient_footprint(chain):
    """Oracle: backprop from one output unit through all-ones convolutions; the input pixels
    that receive gradient span exactly [centre - (r-1)/2, centre + (r-1)/2]."""
    n = 96
    x = torch.ones(1, 1, n, requires_grad=True)
    y = x
    for k, s, p, *d in chain:
        y = F.conv1d(y, torch.ones(1, 1, k), stride=s, padding=p, dilation=d[0] if d else 1)
    unit = y.shape[-1] // 2
    y[0, 0, unit].backward()
    hit = torch.nonzero(x.grad[0, 0]).flatten()
    last = receptive_field(chain)[-1]
    centre = last.start + unit * last.jump
    assert hit.min().item() == centre - (last.receptive_field - 1) / 2
    assert hit.max().item() == centre + (last.receptive_field - 1) / 2


def test_receptive_field_bad_layer():
    with pytest.raises(GeometryError, match="per axis"):
        receptive_field([((1, 7), 1, 0)])
    with pytest.raises(GeometryError, match="stride must be a positive integer"):
        receptive_field([(3, 0)])


# --- properties against torch ----------------------------------------------------

@SETTINGS
@given(n=sizes, k=kernels, s=strides, p=paddings, d=dilations)
def test_conv_matches_torch_conv2d(n, k, s, p, d):
    w = torch.empty(1, 1, k, k, device="meta")
    theirs = _torch_or_error(lambda: F.conv2d(_meta(n), w, stride=s, padding=p, dilation=d))
    assert _ours_or_error(n=n, kernel=k, stride=s, padding=p, dilation=d) == theirs


@SETTINGS
@given(n=sizes, k=kernels, s=strides, data=st.data(), d=dilations, ceil=st.booleans())
def test_matches_torch_maxpool2d(n, k, s, data, d, ceil):
    p = data.draw(st.integers(0, k // 2))  # torch refuses padding above half the kernel
    pool = torch.nn.MaxPool2d(k, stride=s, padding=p, dilation=d, ceil_mode=ceil)
    theirs = _torch_or_error(lambda: pool(_meta(n)))
    assert _ours_or_error(n=n, kernel=k, stride=s, padding=p, dilation=d, ceil_mode=ceil) == theirs


@SETTINGS
@given(n=sizes, k=kernels, s=strides, data=st.data(), ceil=st.booleans())
def test_matches_torch_avgpool2d(n, k, s, data, ceil):
    p = data.draw(st.integers(0, k // 2))
    pool = torch.nn.AvgPool2d(k, stride=s, padding=p, ceil_mode=ceil)
    theirs = _torch_or_error(lambda: pool(_meta(n)))
    assert _ours_or_error(n=n, kernel=k, stride=s, padding=p, ceil_mode=ceil) == theirs


def _windows(n: int, k: int, s: int, p: int, d: int) -> tuple[list[int], bool]:
    """Slide the kernel by hand over the padded row of n + 2p pixels: the first input pixel
    (taps at first, first + d, ..., first + (k-1) d) of every window that fits, and whether the
    last window's last tap is the row's last pixel (no pixel left over: the division is exact)."""
    row = n + 2 * p
    firsts, first = [], 0
    while first + (k - 1) * d < row:  # the last tap still lands inside the padded row
        firsts.append(first)
        first += s
    exact = bool(firsts) and firsts[-1] + (k - 1) * d == row - 1
    return firsts, exact


def test_windows_by_hand_on_the_lectures_examples():
    assert _windows(7, 3, 1, 0, 1) == ([0, 1, 2, 3, 4], True)
    assert _windows(7, 3, 2, 0, 1) == ([0, 2, 4], True)
    assert _windows(7, 3, 3, 0, 1) == ([0, 3], False)  # (7 - 3)/3 + 1 = 2.33: pixel 6 is left over
    assert _windows(7, 3, 3, 1, 1) == ([0, 3, 6], True)


@SETTINGS
@given(n=sizes, k=kernels, s=strides, p=paddings, d=dilations)
def test_strict_raises_exactly_when_division_is_inexact(n, k, s, p, d):
    firsts, exact = _windows(n, k, s, p, d)
    if not firsts:  # the kernel does not fit at all
        return
    if exact:
        assert conv_output_size(n, k, s, p, d, strict=True) == len(firsts)
    else:
        with pytest.raises(GeometryError, match=r"is not a whole number"):
            conv_output_size(n, k, s, p, d, strict=True)


@SETTINGS
@given(n=sizes, k=kernels, s=strides, p=paddings, d=dilations)
def test_suggested_paddings_are_the_smallest_that_fit(n, k, s, p, d):
    """Every padding below max(F', S) whose windows fit exactly, smallest first (up to 3),
    padding 0 included: found by sliding the kernel by hand."""
    f_eff = (k - 1) * d + 1
    want = [{"padding": q, "output": len(_windows(n, k, s, q, d)[0])}
            for q in range(max(f_eff, s)) if _windows(n, k, s, q, d)[1]][:3]
    assert suggest_fixes(n, k, s, p, d)["padding"] == want


def test_padding_0_is_offered_when_it_fits():
    assert suggest_fixes(7, 3, 2, 1)["padding"][0] == {"padding": 0, "output": 3}
    assert suggest_fixes(8, 2, 2, 1)["padding"][0] == {"padding": 0, "output": 4}


@SETTINGS
@given(n=sizes, k=kernels, s=strides, p=paddings, d=dilations)
def test_suggested_fixes_really_fit(n, k, s, p, d):
    fixes = suggest_fixes(n, k, s, p, d)
    for fix in fixes["padding"]:
        assert conv_output_size(n, k, s, fix["padding"], d, strict=True) == fix["output"]
    for fix in fixes["stride"]:
        assert conv_output_size(n, k, fix["stride"], p, d, strict=True) == fix["output"]


@SETTINGS
@given(n=sizes, k=kernels, s=strides, out=st.integers(1, 40), d=dilations)
def test_padding_for_is_the_smallest_that_torch_agrees_with(n, k, s, out, d):
    try:
        p = padding_for(n, k, s, out, dilation=d)
    except GeometryError:
        for q in range(0, n + k * d + s):  # no padding in range gives `out`
            assert _ours_or_error(n=n, kernel=k, stride=s, padding=q, dilation=d) != out
        return
    w = torch.empty(1, 1, k, k, device="meta")
    assert F.conv2d(_meta(n), w, stride=s, padding=p, dilation=d).shape[-1] == out
    if p > 0:
        assert _ours_or_error(n=n, kernel=k, stride=s, padding=p - 1, dilation=d) != out


def test_padding_for_known_cases():
    assert padding_for(224, 7, 2, 112) == 3   # ResNet stem
    assert padding_for(28, 5, 1, 28) == 2     # LeNet-5's padded first layer
    assert padding_for(7, 3, 3, 3) == 1
    with pytest.raises(GeometryError, match="no symmetric padding"):
        padding_for(7, 2, 1, 7)


@pytest.mark.parametrize("k,d", [(1, 1), (3, 1), (5, 1), (7, 1), (3, 2), (2, 2), (5, 3)])
def test_same_padding_keeps_size_like_torch_same(k, d):
    p = same_padding(k, d)
    w = torch.empty(1, 1, k, k, device="meta")
    assert F.conv2d(_meta(13), w, padding=p, dilation=d).shape == F.conv2d(_meta(13), w, padding="same",
                                                                           dilation=d).shape


def test_same_padding_even_kernel_explains():
    with pytest.raises(GeometryError, match="does not split evenly"):
        same_padding(4)


# --- bad input -------------------------------------------------------------------

@pytest.mark.parametrize("kw,match", [
    ({"n": 0, "kernel": 3}, "input size must be a positive integer: got 0"),
    ({"n": 7, "kernel": 0}, "kernel size must be a positive integer"),
    ({"n": 7, "kernel": 3, "stride": 0}, "stride must be a positive integer"),
    ({"n": 7, "kernel": 3, "padding": -1}, "padding must be a non-negative integer"),
    ({"n": 7, "kernel": 3, "dilation": 0}, "dilation must be a positive integer"),
    ({"n": 7.0, "kernel": 3}, "input size must be an integer"),
    ({"n": 2, "kernel": 3}, r"larger than the padded input: 3 > 2 \+ 2\*0 = 2; use padding >= 1"),
    ({"n": 5, "kernel": 3, "dilation": 3}, r"dilated to 7"),
])
def test_bad_input_messages(kw, match):
    with pytest.raises(GeometryError, match=match):
        conv_output_size(**kw)
