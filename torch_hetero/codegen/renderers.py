"""The renderers' registry: per kernel language, what writes a kernel in it and how a graph's
kernels make one module.  The one place in codegen that names a language; a new language is
one renderer plus one entry here (and its loader, ``runtime.loaders``)."""
from __future__ import annotations

import dataclasses
from typing import Callable

from . import cpp, triton

HOST = "cpp"    # the language the host executor runs (compiler.choose_executor's "host")


@dataclasses.dataclass(frozen=True)
class Renderer:
    render: Callable     # (plan.KernelPlan, storage: buffer name → (elements, dtype)) → a rendered kernel:
                         # name, source, buffer_args, symbol_args, origins, launch() (the wrapper's lines)
    prelude: str         # what every module starts with (helpers the kernels call)
    join: Callable       # (prelude, the kernels' sources) → the module's source
    suffix: str          # the module's name in CompiledGraph.code: "<graph>.<suffix>"

    def module(self, sources) -> str:
        """The module of a graph's kernels: what is loaded, and what reports show."""
        return self.join(self.prelude, list(sources))


RENDERERS = {
    "cpp": Renderer(cpp.render_kernel, cpp.PRELUDE, cpp.library_source, "cpp"),
    "triton": Renderer(triton.render_kernel, triton.PRELUDE, triton.module_source, "triton.py"),
}


def render(kernel, language: str, storage: dict):
    """``kernel`` (a ``plan.KernelPlan``) rendered in ``language``, without changing the plan;
    its ``origins`` (the ATen ops it computes) start with its fused matmul's."""
    rendered = RENDERERS[language].render(kernel, storage)
    matmul = [kernel.group.matmul.name.split(".default")[0]] if kernel.group.matmul is not None else []
    return dataclasses.replace(rendered, origins=matmul + rendered.origins)
