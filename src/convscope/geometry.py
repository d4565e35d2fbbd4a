"""Convolution and pooling geometry: output sizes, paddings, receptive fields.

The lecture's formula for one spatial axis, with input size N, kernel F,
stride S and padding P:

    output = (N - F + 2P)/S + 1

With dilation D the kernel spreads out to an effective size F' = D(F - 1) + 1
(a 3x3 kernel at dilation 2 covers 5x5), and F' replaces F. When the division
is not exact, frameworks round down and the last rows and columns are never covered;
`conv_output_size(..., strict=True)` refuses instead and says which paddings
or strides would make it exact. Pure Python: no NumPy or torch here.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

__all__ = [
    "GeometryError",
    "RFStep",
    "arithmetic",
    "conv_output_size",
    "effective_kernel",
    "explain",
    "explain_text",
    "padding_for",
    "receptive_field",
    "receptive_field_step",
    "same_padding",
    "suggest_fixes",
]


class GeometryError(ValueError):
    """A kernel, stride and padding that do not fit an input.

    `fixes` holds what would make it fit (see `suggest_fixes`), so a caller
    such as the CLI can show them as data as well as in the message.
    """

    def __init__(self, message: str, fixes: dict[str, list[dict[str, int]]] | None = None) -> None:
        super().__init__(message)
        self.fixes = fixes or {"padding": [], "stride": []}


def _check_int(value: Any, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):  # NumPy ints welcome
        raise GeometryError(f"{name} must be an integer: got {value!r}")
    value = int(value)
    if value < minimum:
        what = "a positive integer" if minimum == 1 else "a non-negative integer"
        raise GeometryError(f"{name} must be {what}: got {value}")
    return value


def effective_kernel(kernel: int, dilation: int = 1) -> int:
    """The span a dilated kernel covers: D(F - 1) + 1 (3 at dilation 2 -> 5)."""
    return dilation * (kernel - 1) + 1


def _fmt(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:.2f}"


def _a(number: int) -> str:
    """The article for a number read aloud: an 8, an 11, an 18, an 80, a 7."""
    return "an" if str(number).startswith("8") or number in (11, 18) else "a"


def _pixels(count: int) -> str:
    return f"{count} pixel" if count == 1 else f"{count} pixels"


def arithmetic(n: int, kernel: int, stride: int = 1, padding: int = 0, dilation: int = 1) -> str:
    """The lecture's formula filled in, e.g. `(7 - 3)/3 + 1 = 2.33`.

    Padding appears as `+ 2*P` only when non-zero; a dilated kernel shows
    its effective size F' = D(F - 1) + 1.
    """
    f_eff = effective_kernel(kernel, dilation)
    pad = f" + 2*{padding}" if padding else ""
    value = (n - f_eff + 2 * padding) / stride + 1
    return f"({n} - {f_eff}{pad})/{stride} + 1 = {_fmt(value)}"


def _out(n: int, f_eff: int, stride: int, padding: int) -> int:
    return (n + 2 * padding - f_eff) // stride + 1


def suggest_fixes(n: int, kernel: int, stride: int = 1, padding: int = 0, dilation: int = 1,
                  limit: int = 3) -> dict[str, list[dict[str, int]]]:
    """Settings that make `(N - F' + 2P)/S` a whole number, changing one thing at a time.

    Returns `{"padding": [{"padding": P, "output": O}, ...],
    "stride": [{"stride": S, "output": O}, ...]}`: up to `limit` of the
    smallest paddings at the current stride (P < max(F', S), larger ones only
    add zeros), and the strides 1..F' (a stride above the kernel skips input
    pixels) that fit at the current padding.
    """
    f_eff = effective_kernel(kernel, dilation)
    paddings = []
    for p in range(max(f_eff, stride)):
        span = n + 2 * p - f_eff
        if span >= 0 and span % stride == 0:
            paddings.append({"padding": p, "output": _out(n, f_eff, stride, p)})
        if len(paddings) == limit:
            break
    strides = []
    span = n + 2 * padding - f_eff
    if span >= 0:
        for s in range(1, f_eff + 1):
            if span % s == 0:
                strides.append({"stride": s, "output": _out(n, f_eff, s, padding)})
    return {"padding": paddings, "stride": strides}


def _describe_fixes(fixes: dict[str, list[dict[str, int]]], stride: int) -> str:
    pads = ", ".join(f"padding {d['padding']} (gives {d['output']})" for d in fixes["padding"])
    strides = ", ".join(f"stride {d['stride']} (gives {d['output']})" for d in fixes["stride"])
    if pads and strides:
        return f"it fits with {pads}; or with {strides}"
    if pads:
        return f"it fits with {pads}"
    # only an even stride with an odd N - F' gets here: 2P is even, so N - F' + 2P stays odd
    none = (f"no symmetric padding fits at stride {stride}, since N - F' + 2P stays odd "
            f"(pad one side one pixel more than the other)")
    return f"{none}; it fits with {strides}" if strides else none


def conv_output_size(n: int, kernel: int, stride: int = 1, padding: int = 0, dilation: int = 1,
                     ceil_mode: bool = False, strict: bool = False) -> int:
    """Output size along one axis, exactly as torch's Conv2d / MaxPool2d / AvgPool2d compute it.

    floor((N + 2P - D(F - 1) - 1)/S) + 1, or with `ceil_mode` (pooling only)
    the ceiling, minus one when the last window would start past the input
    and its left padding (torch's rule: every window must start inside the
    input or the left padding). `strict=True` raises `GeometryError` when
    the division is not exact, with the arithmetic and the fixes in the
    message. Also raises when a size is not positive or the (dilated) kernel
    is larger than the padded input.
    """
    n = _check_int(n, "input size", 1)
    kernel = _check_int(kernel, "kernel size", 1)
    stride = _check_int(stride, "stride", 1)
    padding = _check_int(padding, "padding", 0)
    dilation = _check_int(dilation, "dilation", 1)
    f_eff = effective_kernel(kernel, dilation)
    span = n + 2 * padding - f_eff
    if ceil_mode:
        out = -(-span // stride) + 1
        if (out - 1) * stride >= n + padding:  # the last window would start in the right padding
            out -= 1
    else:
        out = span // stride + 1
    if out < 1:  # (with ceil_mode torch lets one window hang past the edge)
        raise _too_large(n, kernel, stride, padding, dilation)
    if strict and span % stride:
        fixes = suggest_fixes(n, kernel, stride, padding, dilation)
        if ceil_mode:
            dropped = f"add a partial window and give {out}"
        else:
            dropped = f"round down to {out}: {_uncovered_phrase(span % stride, padding)}"
        raise GeometryError(
            f"{_a(kernel)} {kernel}x{kernel} kernel at stride {stride} does not fit the {n}x{n} input"
            f"{f' with padding {padding}' if padding else ''}: {arithmetic(n, kernel, stride, padding, dilation)}"
            f" is not a whole number (PyTorch and other frameworks {dropped}); "
            f"{_describe_fixes(fixes, stride)}", fixes)
    return out


def _rows(count: int) -> str:
    return f"{count} row/column" if count == 1 else f"{count} rows/columns"


def _uncovered_phrase(uncovered: int, padding: int) -> str:
    """What flooring leaves out: the last `uncovered` rows/columns of the padded input,
    of which the last min(uncovered, padding) are padding zeros."""
    image = max(0, uncovered - padding)
    if image == 0:
        return (f"the last {_rows(uncovered)} of the padded input {'is' if uncovered == 1 else 'are'} never "
                f"covered, all of it padding, so no image pixel is lost")
    pad = uncovered - image
    return (f"the last {_rows(image)} of the image {'is' if image == 1 else 'are'} never covered"
            + (f" (and the {_rows(pad)} of padding after {'it' if image == 1 else 'them'})" if pad else ""))


def _asymmetric_paddings(n: int, f_eff: int, stride: int, padding: int, limit: int = 2) -> list[dict[str, int]]:
    """Unequal paddings (left, right = left + 1) that fit, nearest to `padding` first."""
    out = []
    for left in sorted(range(max(f_eff, stride) + padding + 1), key=lambda q: (abs(q - padding), q)):
        span = n + 2 * left + 1 - f_eff
        if span >= 0 and span % stride == 0:
            out.append({"left": left, "right": left + 1, "output": span // stride + 1})
        if len(out) == limit:
            break
    return sorted(out, key=lambda d: d["left"])


def _inputs_that_fit(n: int, f_eff: int, stride: int, padding: int) -> list[dict[str, int]]:
    """The nearest input sizes below and above n that tile exactly at this kernel, stride and padding."""
    r = (n + 2 * padding - f_eff) % stride
    sizes = [m for m in (n - r, n + (stride - r) % stride) if m >= 1 and m + 2 * padding >= f_eff]
    return [{"input": m, "output": (m + 2 * padding - f_eff) // stride + 1} for m in dict.fromkeys(sizes)]


def explain(n: int, kernel: int, stride: int = 1, padding: int = 0, dilation: int = 1) -> dict[str, Any]:
    """Everything `convscope conv` reports about one axis, as JSON-ready data.

    Keys: the five settings, "effective_kernel", "arithmetic" (the lecture's
    formula filled in), "valid" (a whole number), "output" (None when not
    valid), "message" (why not), "fixes" (`suggest_fixes`'s paddings and
    strides, plus "asymmetric_padding" [{"left", "right", "output"}] and
    "input" [{"input", "output"}]) and, when the kernel fits but does not
    tile, "pytorch": {"output" (what torch's floor gives), "uncovered" (last
    rows/columns of the padded input no window reaches), "uncovered_padding",
    "uncovered_input" (how many of them are padding, how many image),
    "skipped_between_windows" (rows in each gap when the stride exceeds the kernel)}.
    Raises GeometryError only for sizes that are not valid at all (a zero
    input, a negative stride); a kernel larger than the padded input is a
    report with "valid": False and its fixes.
    """
    report: dict[str, Any] = {"input": n, "kernel": kernel, "stride": stride, "padding": padding,
                              "dilation": dilation, "effective_kernel": None, "output": None, "valid": False,
                              "arithmetic": None, "message": None, "fixes": {"padding": [], "stride": []}}
    try:
        report["output"] = conv_output_size(n, kernel, stride, padding, dilation, strict=True)
    except GeometryError as exc:
        report["message"], report["fixes"] = str(exc), dict(exc.fixes)
        if not (n >= 1 and kernel >= 1 and stride >= 1 and dilation >= 1 and padding >= 0):
            return report  # not a geometry at all: the message says which value is wrong
    f_eff = effective_kernel(kernel, dilation)
    report["effective_kernel"] = f_eff
    report["arithmetic"] = arithmetic(n, kernel, stride, padding, dilation)
    if report["output"] is not None:
        report["valid"] = True
        report["fixes"] = suggest_fixes(n, kernel, stride, padding, dilation)
        return report
    span = n + 2 * padding - f_eff
    if span >= 0:  # fits, does not tile: what the frameworks do instead
        uncovered = span % stride
        report["pytorch"] = {"output": span // stride + 1, "uncovered": uncovered,
                             "uncovered_padding": min(uncovered, padding),
                             "uncovered_input": max(0, uncovered - padding),
                             # a stride longer than the kernel also skips rows between windows
                             "skipped_between_windows": max(0, stride - f_eff)}
        report["output_if_rounded_down"] = span // stride + 1
        report["fixes"]["asymmetric_padding"] = _asymmetric_paddings(n, f_eff, stride, padding)
        report["fixes"]["input"] = _inputs_that_fit(n, f_eff, stride, padding)
    return report


def explain_text(report: dict[str, Any]) -> str:
    """The lines `convscope conv` prints for an `explain` report (empty when the sizes are invalid)."""
    if report["arithmetic"] is None:
        return ""
    n, f, d, out = report["input"], report["kernel"], report["dilation"], report["output"]
    lines = [f"input {n}x{n}, kernel {f}x{f}, stride {report['stride']}, padding {report['padding']}"
             + (f", dilation {d} (the kernel spans {report['effective_kernel']})" if d != 1 else "")]
    if report["valid"]:
        verdict = ""
    elif "pytorch" not in report:
        verdict = "   <- the kernel is larger than the padded input"
    else:
        verdict = "   <- not a whole number: the kernel does not tile the input"
    lines.append(f"output = (N - F + 2P)/S + 1 = {report['arithmetic']}{verdict}")
    if report["valid"]:
        lines.append(f"a {n}x{n} input gives a {out}x{out} output")
        return "\n".join(lines)
    torch_ = report.get("pytorch")
    if torch_:
        value = report["arithmetic"].rsplit("= ", 1)[1]
        lines.append(f"strictly: {value} is not a whole number, so these settings are not allowed")
        lines.append(f"PyTorch (Conv2d, MaxPool2d) rounds down to {torch_['output']}x{torch_['output']}: "
                     f"{_uncovered_phrase(torch_['uncovered'], report['padding'])}")
        if torch_["skipped_between_windows"]:
            lines.append(f"(and stride {report['stride']} > kernel span {report['effective_kernel']} skips "
                         f"{_rows(torch_['skipped_between_windows'])} between neighbouring windows)")
    fixes = report["fixes"]
    if fixes["padding"]:
        lines.append("fits with padding: " + ", ".join(
            f"{x['padding']} -> {x['output']}x{x['output']}" for x in fixes["padding"]))
    elif torch_:
        lines.append(f"no equal padding on both sides fits at stride {report['stride']} "
                     f"(N - F' + 2P stays odd)")
    if fixes.get("asymmetric_padding") and not fixes["padding"]:
        lines.append("fits with unequal padding: " + ", ".join(
            f"{x['left']} before + {x['right']} after -> {x['output']}x{x['output']}"
            for x in fixes["asymmetric_padding"]))
    if fixes["stride"]:
        lines.append("fits with stride:  " + ", ".join(
            f"{x['stride']} -> {x['output']}x{x['output']}" for x in fixes["stride"]))
    if fixes.get("input"):
        lines.append("fits with input:   " + ", ".join(
            f"{x['input']} -> {x['output']}x{x['output']}" for x in fixes["input"]))
    return "\n".join(lines)


def _too_large(n: int, kernel: int, stride: int, padding: int, dilation: int) -> GeometryError:
    f_eff = effective_kernel(kernel, dilation)
    padded = n + 2 * padding
    dil = f" (dilated to {f_eff})" if dilation > 1 else ""
    need = math.ceil((f_eff - n) / 2)
    return GeometryError(
        f"the kernel{dil} is larger than the padded input: {f_eff} > {n} + 2*{padding} = {padded}; "
        f"use padding >= {need} or a kernel that spans at most {padded} pixels",
        {"padding": suggest_fixes(n, kernel, stride, max(padding, need), dilation)["padding"], "stride": []})


def padding_for(n: int, kernel: int, stride: int, out: int, *, dilation: int = 1) -> int:
    """The smallest symmetric padding P with conv_output_size(n, kernel, stride, P) == out.

    Uses torch's rounding down, so `padding_for(224, 7, 2, 112) == 3` (the
    ResNet stem). Raises `GeometryError` when no padding gives `out`.
    """
    for value, name in ((n, "input size"), (kernel, "kernel size"), (stride, "stride"),
                        (out, "output size"), (dilation, "dilation")):
        _check_int(value, name, 1)
    f_eff = effective_kernel(kernel, dilation)
    # smallest P with (N + 2P - F') // S + 1 >= out; the output never shrinks as P grows
    p = max(0, math.ceil(((out - 1) * stride + f_eff - n) / 2))
    if _out(n, f_eff, stride, p) == out:
        return p
    got = _out(n, f_eff, stride, p)
    raise GeometryError(
        f"no symmetric padding turns a {n}-pixel input into {out} with kernel {kernel}"
        f"{f' (dilation {dilation})' if dilation > 1 else ''} and stride {stride}: "
        f"padding {p} already gives {got} ({arithmetic(n, kernel, stride, p, dilation)}); "
        f"try another stride or pad one side more than the other")


def same_padding(kernel: int, dilation: int = 1) -> int:
    """Padding that keeps the size at stride 1: D(F - 1)/2 (1 for 3x3, 2 for 5x5).

    Raises `GeometryError` for an even effective kernel, which needs one more
    pixel on one side than the other (torch's `padding="same"` pads the extra
    one at the right and bottom).
    """
    kernel = _check_int(kernel, "kernel size", 1)
    dilation = _check_int(dilation, "dilation", 1)
    total = dilation * (kernel - 1)
    if total % 2:
        raise GeometryError(
            f"a kernel of effective size {effective_kernel(kernel, dilation)} needs {total} pixels of padding "
            f"in all, which does not split evenly between the two sides; use an odd kernel, or pad "
            f"{total // 2} on one side and {total // 2 + 1} on the other (torch's padding='same')")
    return total // 2


@dataclass(frozen=True)
class RFStep:
    """One step of a receptive-field walk, in input-pixel units along one axis.

    receptive_field: how many input pixels one output unit of this step sees.
    jump: the distance in input pixels between neighbouring output units (the
        product of the strides so far, the "effective stride").
    start: the centre of the first output unit's receptive field, in input
        pixel coordinates (pixel i has centre i; negative means it sits in the
        padding).
    """

    kernel: int
    stride: int
    padding: int
    dilation: int
    receptive_field: int
    jump: int
    start: float


def _as_step(layer: Any) -> tuple[int, int, int, int]:
    if isinstance(layer, dict):
        vals = [layer.get(k, d) for k, d in (("kernel", None), ("stride", 1), ("padding", 0), ("dilation", 1))]
    elif isinstance(layer, Sequence) and 1 <= len(layer) <= 4:
        vals = list(layer) + [1, 0, 1][len(layer) - 1:]
    else:
        raise GeometryError(f"each layer must be (kernel, stride, padding, dilation) or a dict: got {layer!r}")
    out = []
    for v, name, lo in zip(vals, ("kernel", "stride", "padding", "dilation"), (1, 1, 0, 1)):
        if isinstance(v, (tuple, list)):
            if len(v) != 2 or v[0] != v[1]:
                raise GeometryError(f"{name} {v!r} differs between height and width: "
                                    f"call receptive_field once per axis with that axis' values")
            v = v[0]
        out.append(_check_int(v, name, lo))
    return out[0], out[1], out[2], out[3]


def receptive_field(layers: Iterable[Any]) -> list[RFStep]:
    """Walk a chain of convolutions/poolings and return one `RFStep` per layer.

    Each layer is `(kernel, stride, padding, dilation)` (trailing items may be
    left out: stride 1, padding 0, dilation 1), or a dict with those keys.
    Pairs are accepted when height and width agree. The recurrences, with F'
    the effective kernel:

        r_out = r_in + (F' - 1) * j_in
        j_out = j_in * S
        start_out = start_in + ((F' - 1)/2 - P) * j_in

    Three stacked 3x3 convolutions at stride 1 see 7x7.
    """
    r, j, start = 1, 1, 0.0
    steps = []
    for layer in layers:
        k, s, p, d = _as_step(layer)
        r, j, start = receptive_field_step(r, j, start, k, s, p, d)
        steps.append(RFStep(k, s, p, d, r, j, start))
    return steps


def receptive_field_step(r: int, j: int, start: float, kernel: int, stride: int = 1, padding: int = 0,
                         dilation: int = 1) -> tuple[int, int, float]:
    """One sliding window (conv or pool) along one axis: (r, j, start) in -> out.

    r_out = r + (F' - 1) j,  j_out = j S,  start_out = start + ((F' - 1)/2 - P) j.
    """
    f_eff = effective_kernel(kernel, dilation)
    return r + (f_eff - 1) * j, j * stride, start + ((f_eff - 1) / 2 - padding) * j
