"""The libraries ``xent bench`` measures xent against, each behind one small adapter.

Peers, each skipped with a note where it is not installed: PyTorch
(``torch.nn.functional.cross_entropy``, eager and through ``torch.compile``), SciPy (``scipy.special.logsumexp`` minus the target
logit), scikit-learn (its private ``HalfMultinomialLoss``) and JAX with optax
(``optax.softmax_cross_entropy_with_integer_labels``, jitted).
"""

import importlib
import os
import shutil
import time
import warnings
from dataclasses import dataclass, field
from collections.abc import Callable

import numpy as np


class PeerSkipped(Exception):
    """A peer that cannot run here (or on one case); the message says why."""


@dataclass
class Peer:
    """A library measured against xent.

    Attributes
    ----------
    name : str
        Short name, used as the key in the table and the JSON.
    title : str
        What is called, for the header.
    version : str
        The library's version.
    threads : str
        How many threads it runs, in words.
    prepare : callable
        ``prepare(logits, labels)`` returns a function of no argument computing the mean
        loss as a float; raises :class:`PeerSkipped` if the case is out of its reach.
    prepare_grad : callable or None
        ``prepare_grad(logits, labels)`` returns a function computing ``(loss, gradient)``.
    close : callable
        Restores what loading changed (PyTorch's thread count).
    """

    name: str
    title: str
    version: str
    threads: str
    prepare: Callable
    prepare_grad: Callable | None = None
    close: Callable = field(default=lambda: None)


def import_chain(name):
    """Import a module and each package above it (``a``, then ``a.b``), by name.

    A module that is absent, or blocked with ``sys.modules[name] = None``, raises
    ImportError even when a submodule of it was imported before.
    """
    parts = name.split(".")
    module = None
    for i in range(1, len(parts) + 1):
        module = importlib.import_module(".".join(parts[:i]))
    return module


def load_torch(threads):
    """PyTorch's ``F.cross_entropy``, on ``threads`` threads until ``close()``."""
    torch = import_chain("torch")
    functional = import_chain("torch.nn.functional")
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)

    def tensor(logits):
        if logits.dtype.name == "bfloat16":  # no numpy bfloat16 in torch: share the bits
            return torch.from_numpy(logits.view(np.int16)).view(torch.bfloat16)
        return torch.from_numpy(logits)

    def prepare(logits, labels):
        x, t = tensor(logits), torch.from_numpy(labels)
        return lambda: float(functional.cross_entropy(x, t))

    def prepare_grad(logits, labels):
        t = torch.from_numpy(labels)

        def forward_backward():
            x = tensor(logits).requires_grad_(True)
            loss = functional.cross_entropy(x, t)
            loss.backward()
            grad = x.grad
            if grad.dtype == torch.bfloat16:
                return float(loss.detach()), grad.view(torch.int16).numpy().view(logits.dtype)
            return float(loss.detach()), grad.numpy()

        return forward_backward

    return Peer(
        "torch",
        "torch.nn.functional.cross_entropy",
        torch.__version__,
        f"{threads} thread{'s' * (threads != 1)}",
        prepare,
        prepare_grad,
        close=lambda: torch.set_num_threads(previous),
    )


def cpp_compiler():
    """The C++ compiler torch.compile's CPU backend (inductor) would find, or None."""
    for name in (os.environ.get("CXX"), "c++", "g++", "clang++"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def load_torch_compile(threads):
    """``torch.compile(F.cross_entropy)``, default mode, on ``threads`` threads.

    Compiling takes seconds: it happens in the untimed warm-up call of each case, once per
    shape, specialised to it (``dynamic=False``). Skipped where no C++ compiler is found:
    inductor writes C++ for the CPU.
    """
    torch = import_chain("torch")
    functional = import_chain("torch.nn.functional")
    if cpp_compiler() is None:
        raise PeerSkipped("torch.compile needs a C++ compiler for the CPU (inductor); none found")
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)

    def prepare(logits, labels):
        if logits.dtype.name == "bfloat16":
            x = torch.from_numpy(logits.view(np.int16)).view(torch.bfloat16)
        else:
            x = torch.from_numpy(logits)
        t = torch.from_numpy(labels)
        # A fresh compilation for each shape, specialised to it (the best case for
        # torch.compile): without the reset the shapes before would count towards its
        # recompile limit, past which it falls back to eager without a word.
        # Compile now, hushing the warnings torch's compiler raises about its own internals
        # as it imports them (deprecations: under "-W error", as in xent's tests, they would
        # stop it).
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.compiler.reset()
            compiled = torch.compile(functional.cross_entropy, dynamic=False)
            compiled(x, t)
        return lambda: float(compiled(x, t))

    return Peer(
        "torch.compile",
        "torch.compile(torch.nn.functional.cross_entropy), compiled and warmed up before "
        "the timing",
        torch.__version__,
        f"{threads} thread{'s' * (threads != 1)}",
        prepare,
        close=lambda: torch.set_num_threads(previous),
    )


def load_scipy(threads):
    """SciPy: ``logsumexp(x, axis=1) - x[arange, y]``, mean (numpy, one thread)."""
    scipy = import_chain("scipy")
    special = import_chain("scipy.special")

    def prepare(logits, labels):
        if logits.dtype.name == "bfloat16":
            raise PeerSkipped("its logsumexp takes NumPy's own dtypes, not ml_dtypes' bfloat16")
        rows = np.arange(len(labels))
        return lambda: float(np.mean(special.logsumexp(logits, axis=1) - logits[rows, labels]))

    return Peer(
        "scipy", "scipy.special.logsumexp - target logit", scipy.__version__, "1 thread", prepare
    )


def load_sklearn(threads):
    """scikit-learn's private ``HalfMultinomialLoss`` on ``threads`` threads."""
    sklearn = import_chain("sklearn")
    try:
        loss_module = import_chain("sklearn._loss.loss")
        loss_class = loss_module.HalfMultinomialLoss
    except (ImportError, AttributeError) as exc:
        raise PeerSkipped(f"its private API differs ({exc})") from exc

    def prepare(logits, labels):
        if logits.dtype.itemsize < 4:
            raise PeerSkipped("float32 and float64 only")
        try:
            loss = loss_class(n_classes=logits.shape[1])
        except TypeError as exc:
            raise PeerSkipped(f"its private API differs ({exc})") from exc
        y_true = labels.astype(logits.dtype)
        return lambda: float(
            np.mean(loss.loss(y_true=y_true, raw_prediction=logits, n_threads=threads))
        )

    return Peer(
        "sklearn",
        "sklearn._loss.loss.HalfMultinomialLoss",
        sklearn.__version__,
        f"{threads} thread{'s' * (threads != 1)}",
        prepare,
    )


def load_jax(threads):
    """JAX with optax: ``softmax_cross_entropy_with_integer_labels``, mean, jitted."""
    jax = import_chain("jax")
    optax = import_chain("optax")
    mean_loss = jax.jit(lambda x, y: optax.softmax_cross_entropy_with_integer_labels(x, y).mean())

    def prepare(logits, labels):
        if logits.dtype == np.float64 and not jax.config.jax_enable_x64:
            raise PeerSkipped("float64 needs JAX_ENABLE_X64=1")
        x = jax.device_put(logits)
        y = jax.device_put(labels.astype(np.int32))
        return lambda: float(mean_loss(x, y))

    return Peer(
        "jax",
        "optax.softmax_cross_entropy_with_integer_labels (jit)",
        f"{jax.__version__}, optax {optax.__version__}",
        "XLA's own pool",
        prepare,
    )


#: (name, loader) of every peer, in the table's order.
PEER_LOADERS = [
    ("torch", load_torch),
    ("torch.compile", load_torch_compile),
    ("scipy", load_scipy),
    ("sklearn", load_sklearn),
    ("jax", load_jax),
]


def load_peers(threads, leave_out=()):
    """Load every installed peer.

    Parameters
    ----------
    threads : int
        Threads for the peers that take a count.
    leave_out : dict, optional
        Peer name -> why it is left out (the options asked so): listed as skipped.

    Returns
    -------
    peers : list of Peer
        The peers that loaded.
    skipped : dict
        Peer name -> why it is skipped (``"not installed"``, or a note).
    """
    peers, skipped = [], {}
    for name, loader in PEER_LOADERS:
        if name in leave_out:
            skipped[name] = leave_out[name]
            continue
        try:
            peers.append(loader(threads))
        except ImportError:
            skipped[name] = "not installed"
        except PeerSkipped as exc:
            skipped[name] = str(exc)
        except Exception as exc:  # a broken install must not end the benchmark
            skipped[name] = f"failed to load: {type(exc).__name__}: {exc}"
    return peers, skipped


def prepare_peers(peers, logits, labels, grad=False, warmup_seconds=None):
    """Name -> call for each peer that runs on this data (after one untimed warm-up call).

    Returns the calls and a dict name -> why a peer sits this case out. ``warmup_seconds``,
    a dict, receives name -> seconds of the preparation and warm-up (torch.compile's
    compilation, JAX's jit).
    """
    calls, skipped = {}, {}
    for peer in peers:
        prepare = peer.prepare_grad if grad else peer.prepare
        if prepare is None:
            continue
        start = time.perf_counter()
        try:
            fn = prepare(logits, labels)
            fn()  # warm-up: thread pools, allocator arenas, jit compilation
        except PeerSkipped as exc:
            skipped[peer.name] = str(exc)
        except Exception as exc:  # e.g. MemoryError, or a private API that changed
            skipped[peer.name] = f"failed: {type(exc).__name__}: {exc}"
        else:
            calls[peer.name] = fn
        if warmup_seconds is not None:
            warmup_seconds[peer.name] = time.perf_counter() - start
    return calls, skipped
