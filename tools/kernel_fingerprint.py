"""Save the outputs of every public xent function on fixed inputs, or compare two saves bit by bit.

A restructuring of the kernels must not change a bit of any result. Run this on the build
before the change and on the build after it, for every kernel variant the CPU runs:

    python tools/kernel_fingerprint.py save before.npz
    python tools/kernel_fingerprint.py save after.npz
    python tools/kernel_fingerprint.py compare before.npz after.npz

Each result is stored once per variant (avx512, avx2, baseline) and float type.
"""

import sys
import warnings

import numpy as np


def _cases(xent, dtype):
    """(name, thunk) for every public function, on inputs fixed by the seed."""
    import ml_dtypes

    rng = np.random.default_rng(20261201)
    out = []

    def add(name, fn):
        out.append((name, fn))

    shapes = [(37, 5), (33, 64), (19, 65), (7, 1000), (3, 70000), (1, 300000)]
    for n, c in shapes:
        x = (rng.standard_normal((n, c)) * 4).astype(dtype)
        x[0, 0] = 60
        t = rng.integers(0, c, n)
        t[-1] = -100
        w = rng.random(c)
        p = rng.random((n, c)).astype(dtype)
        p /= p.sum(axis=1, keepdims=True)
        tag = f"{n}x{c}"
        add(f"logsumexp_{tag}", lambda x=x: xent.logsumexp(x))
        add(f"log_softmax_{tag}", lambda x=x: xent.log_softmax(x))
        add(f"softmax_{tag}", lambda x=x: xent.softmax(x))
        add(f"ce_{tag}", lambda x=x, t=t: xent.cross_entropy(x, t, reduction="none"))
        add(
            f"ce_mean_{tag}",
            lambda x=x, t=t, w=w: xent.cross_entropy(x, t, weight=w, label_smoothing=0.1),
        )
        add(
            f"ce_prob_{tag}",
            lambda x=x, p=p, w=w: xent.cross_entropy(
                x, p, weight=w, label_smoothing=0.2, reduction="none"
            ),
        )
        add(
            f"ce_grad_{tag}",
            lambda x=x, t=t, w=w: xent.cross_entropy_with_grad(x, t, weight=w, label_smoothing=0.1),
        )
        add(
            f"ce_grad_none_{tag}",
            lambda x=x, t=t: xent.cross_entropy_with_grad(x, t, reduction="none"),
        )
        add(
            f"ce_prob_grad_{tag}",
            lambda x=x, p=p: xent.cross_entropy_with_grad(x, p, label_smoothing=0.05),
        )
        add(f"nll_{tag}", lambda x=x, t=t: xent.nll_loss(x, t, reduction="sum"))
        add(f"entropy_{tag}", lambda p=p: xent.info.entropy(p))
        add(f"info_ce_{tag}", lambda p=p, x=x: xent.info.cross_entropy(p, xent.softmax(x), base=2))
        add(f"kl_{tag}", lambda p=p, x=x: xent.info.kl_divergence(p, xent.softmax(x)))
        add(f"entropy_logits_{tag}", lambda x=x: xent.info.entropy_from_logits(x))
        add(f"perplexity_{tag}", lambda x=x, t=t: xent.info.perplexity(x, t))
        add(f"self_information_{tag}", lambda p=p: xent.info.self_information(p))
        add(f"binary_entropy_{tag}", lambda p=p: xent.info.binary_entropy(p, base=2))
        y = rng.random((n, c)).astype(dtype)
        bw = rng.random((n, c)).astype(dtype)
        pw = (rng.random(c) * 3).astype(dtype)
        add(
            f"bce_{tag}",
            lambda p=p, y=y, bw=bw: xent.binary_cross_entropy(p, y, weight=bw, reduction="none"),
        )
        add(f"bce_grad_{tag}", lambda p=p, y=y: xent.binary_cross_entropy_with_grad(p, y))
        add(
            f"bce_logits_{tag}",
            lambda x=x, y=y, pw=pw: xent.binary_cross_entropy_with_logits(
                x, y, pos_weight=pw, reduction="sum"
            ),
        )
        add(
            f"bce_logits_grad_{tag}",
            lambda x=x, y=y, bw=bw, pw=pw: xent.binary_cross_entropy_with_logits_with_grad(
                x, y, weight=bw, pos_weight=pw
            ),
        )
        if n * c <= 200000:
            add(f"evaluate_{tag}", lambda x=x, t=t: _report(xent.evaluate(x, t, topk=(1, 3))))
        if dtype == np.float32 and c < 262144:
            for half in (np.float16, ml_dtypes.bfloat16):
                h = x.astype(half)
                hn = np.dtype(half).name
                add(f"logsumexp_{hn}_{tag}", lambda h=h: xent.logsumexp(h))
                add(
                    f"ce_{hn}_{tag}",
                    lambda h=h, t=t: xent.cross_entropy(
                        h, t, reduction="none", label_smoothing=0.1
                    ),
                )
                add(f"log_softmax_{hn}_{tag}", lambda h=h: xent.log_softmax(h))

    for n, d, v in [(5, 16, 40), (300, 24, 1100)]:
        hidden = rng.standard_normal((n, d)).astype(dtype)
        weight = (rng.standard_normal((v, d)) / 3).astype(dtype)
        bias = rng.standard_normal(v).astype(dtype)
        t = rng.integers(0, v, n)
        tag = f"{n}x{d}x{v}"
        add(
            f"linear_{tag}",
            lambda h=hidden, w=weight, t=t: xent.linear_cross_entropy(h, w, t, reduction="none"),
        )
        add(
            f"linear_softcap_{tag}",
            lambda h=hidden, w=weight, t=t, b=bias: xent.linear_cross_entropy(
                h, w, t, bias=b, softcap=5.0, label_smoothing=0.1
            ),
        )
        add(
            f"linear_grad_{tag}",
            lambda h=hidden, w=weight, t=t, b=bias: xent.linear_cross_entropy_with_grad(
                h, w, t, bias=b, softcap=7.0
            ),
        )
        add(
            f"linear_grad_plain_{tag}",
            lambda h=hidden, w=weight, t=t: xent.linear_cross_entropy_with_grad(
                h, w, t, label_smoothing=0.2
            ),
        )

    from xent import _kernels

    v = (rng.standard_normal(5000) * 30).astype(dtype)
    pos = np.abs(v) + np.asarray(1e-30, dtype)
    for name, arg in [("exp_array", v), ("log_array", pos), ("log1p_array", pos - 1)]:
        add(f"{name}", lambda name=name, arg=arg: _elementwise(getattr(_kernels, name), arg))
    if dtype == np.float32:
        bits = rng.integers(0, 1 << 16, 5000).astype(np.uint16)
        for bfloat in (False, True):
            add(f"widen_half_{bfloat}", lambda b=bfloat: _widen(_kernels, bits, b))
            add(f"narrow_half_{bfloat}", lambda b=bfloat: _narrow(_kernels, v, b))
    return out


def _elementwise(kernel, x):
    out = np.empty_like(x)
    kernel(x, out)
    return out


def _widen(_kernels, bits, bfloat):
    out = np.empty(bits.shape, np.float32)
    _kernels.widen_half(bits, bfloat, out)
    return out


def _narrow(_kernels, x, bfloat):
    out = np.empty(x.shape, np.uint16)
    _kernels.narrow_half(x, bfloat, out, 2)
    return out


def _report(report):
    return np.array(
        [getattr(report, f) for f in ("loss", "perplexity", "accuracy", "entropy")]
        + [acc for _, acc in report.topk_accuracy]
    )


def _flatten(value, prefix):
    """The arrays of a result (an array, a scalar, or a tuple of them), with their names."""
    if isinstance(value, tuple):
        for i, v in enumerate(value):
            yield from _flatten(v, f"{prefix}.{i}")
    else:
        yield prefix, np.asarray(value)


def save(path):
    import xent
    from xent import _kernels

    results = {}
    for isa in ("avx512", "avx2", "baseline"):
        if not _kernels.isa_supported(isa):
            continue
        _kernels.set_isa(isa)
        for dtype in (np.float32, np.float64):
            for name, fn in _cases(xent, dtype):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    value = fn()
                for key, array in _flatten(value, f"{isa}/{np.dtype(dtype).name}/{name}"):
                    results[key] = array
    np.savez(path, **results)
    print(f"{len(results)} arrays saved to {path}")


def compare(before, after):
    a, b = np.load(before), np.load(after)
    missing = sorted(set(a.files) ^ set(b.files))
    differ = [
        k
        for k in sorted(set(a.files) & set(b.files))
        if a[k].dtype != b[k].dtype or a[k].shape != b[k].shape or a[k].tobytes() != b[k].tobytes()
    ]
    for k in missing:
        print(f"only in one file: {k}")
    for k in differ:
        print(f"differs: {k}")
    print(f"{len(a.files)} arrays compared, {len(differ)} differ, {len(missing)} unmatched")
    return 1 if differ or missing else 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["save"]:
        save(sys.argv[2])
    elif sys.argv[1:2] == ["compare"]:
        sys.exit(compare(sys.argv[2], sys.argv[3]))
    else:
        sys.exit(__doc__)
