"""Warm compiles skip AOTAutograd's tracing and partitioning, and our own compile: torch's
AOTAutogradCache, in its bundled mode, keeps our compiled graphs (``compiler.Loadable``).

Its key covers the Dynamo graph, the inputs' metadata and torch's configs; through
``torch.compiler.config.cache_key_tag`` we add this package's sources, the compile options and
the device profile's figures, so that a changed compiler or target never loads a stale entry.
Entries live in torch's compile cache directory (TORCHINDUCTOR_CACHE_DIR); the C++ libraries
they load stay in ours.  Used on torch >= 2.13 (the version it is tested with); older versions
compile every time."""
from __future__ import annotations

import contextlib
import functools
import hashlib
import pathlib

import torch

from . import logs

MIN_TORCH = (2, 13)


@functools.lru_cache(maxsize=None)
def available() -> bool:
    """Does this torch have the bundled AOTAutograd cache we rely on?"""
    version = tuple(int(part) for part in torch.__version__.split("+")[0].split(".")[:2])
    if version < MIN_TORCH:
        return False
    try:
        from torch._functorch import config
        from torch._functorch._aot_autograd.schemas import SerializableAOTDispatchCompiler  # noqa: F401
        from torch._inductor.output_code import OutputCode  # noqa: F401
    except ImportError:
        return False
    return hasattr(config, "bundled_autograd_cache") and hasattr(torch.compiler.config, "cache_key_tag")


@functools.lru_cache(maxsize=None)
def _sources_digest() -> str:
    """The package's code and data: lowerings, code generators, the prelude, the profiles."""
    root = pathlib.Path(__file__).parent
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.suffix in (".py", ".h", ".toml")):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def key_tag(options) -> str:
    """What our compile depends on beyond AOTAutograd's own key."""
    text = "\0".join([_sources_digest(), repr(options), repr(options.profile)])
    return "torch_hetero:" + hashlib.sha256(text.encode()).hexdigest()[:32]


@contextlib.contextmanager
def caching(options):
    """AOTAutograd with its cache storing our graphs: bundled entries, the backward compiled
    with the forward (both are saved together, inside this context), our key in the tag."""
    from torch._functorch import config
    user_tag = torch.compiler.config.cache_key_tag
    tag = f"{user_tag}|{key_tag(options)}" if user_tag else key_tag(options)
    with config.patch(bundled_autograd_cache=True, force_non_lazy_backward_lowering=True), \
            torch.compiler.config.patch(cache_key_tag=tag):
        yield


def serializable(compile_fn):
    """``compile_fn`` (graph, inputs → CompiledGraph, or a plain callable: an eager fallback) as
    a compiler whose results AOTAutograd's cache can store (``HeteroOutputCode``)."""
    from torch._functorch._aot_autograd.schemas import SerializableAOTDispatchCompiler
    output_code = _output_code_type()
    return SerializableAOTDispatchCompiler(output_code, lambda gm, inputs: output_code(compile_fn(gm, inputs)))


def __getattr__(name):   # pickle finds the class by name (defined lazily: it subclasses torch internals)
    if name == "HeteroOutputCode":
        return _output_code_type()
    raise AttributeError(name)


@functools.lru_cache(maxsize=None)
def _output_code_type():
    from torch._functorch._aot_autograd.autograd_cache import BypassAOTAutogradCache
    from torch._inductor.output_code import OutputCode

    class HeteroOutputCode(OutputCode):
        """A graph for AOTAutograd's cache: pickled as its Loadable, loaded on a cache hit; an
        eager fallback runs but is not stored."""

        def __init__(self, compiled):
            self.loadable = getattr(compiled, "loadable", None)
            self._call = compiled
            self._boxed_call = True

        def __call__(self, args):
            return self._call(args)

        def prepare_for_serialization(self):
            if self.loadable is None:
                raise BypassAOTAutogradCache("torch_hetero ran this graph eagerly")

        def post_compile(self, example_inputs, constants, graph_kwargs):
            if self._call is None:  # loaded from the cache: our compile, its warnings and its log did not run
                self._call = self.loadable.load()
                self.loadable.warn_fallbacks()
                logs.loaded(self.loadable)

        def set_triton_bundle(self, triton_bundle):
            pass   # our Triton kernels are in the Loadable's source

        def __getstate__(self):
            return {"loadable": self.loadable}

        def __setstate__(self, state):
            self.loadable, self._call, self._boxed_call = state["loadable"], None, True

    HeteroOutputCode.__module__, HeteroOutputCode.__qualname__ = __name__, "HeteroOutputCode"
    return HeteroOutputCode
