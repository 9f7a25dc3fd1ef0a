"""The ``torch_hetero`` log, switched on through ``TORCH_LOGS`` as Inductor's is:
``torch_hetero`` (INFO) names each compiled graph with its profile, kernels, extern calls,
fallbacks and compile time, and gives the full error of a graph that ran eagerly;
``+torch_hetero`` (DEBUG) adds each graph's plan (kernels, tiles, every fusion decision with
its reason) and each fallback as it is lowered; ``output_code`` prints the generated code.
``output_code`` is torch's own artifact, shared with Inductor: ``import torch`` parses
``TORCH_LOGS`` before any backend is imported and rejects names it does not know, so an
artifact of our own could never be switched on from the environment."""
from __future__ import annotations

import functools
import logging
import os

import torch._logging

from .planning.plan import schedule_text

NAME = "torch_hetero"
log = logging.getLogger(NAME)
code_log = torch._logging.getArtifactLogger(NAME, "output_code")


@functools.lru_cache(maxsize=None)
def register() -> None:
    """Make the log known to ``torch._logging`` (its ``set_logs`` and ``TORCH_LOGS``).  Called
    when the backend first runs: torch is imported by then.  If ``TORCH_LOGS`` was parsed before
    the log existed (it names only ``output_code``, say), torch's handlers are set up again."""
    internal = torch._logging._internal
    internal.register_log(NAME, NAME)
    if os.environ.get("TORCH_LOGS") and not log.handlers:
        internal._init_logs()


def compiled(kind: str, graph, profile: str) -> None:
    """One INFO line per compiled graph; its plan at DEBUG; its code as ``output_code``."""
    if log.isEnabledFor(logging.INFO):
        fallbacks = ", ".join(f"{op} x{n}" for op, n in sorted(graph.fallbacks.items())) or "none"
        externs = sum(extern.call.kind == "extern" for extern in graph.plan.externs)
        log.info("compiled the %s graph for profile %s: %d kernel(s), %d extern call(s), fallbacks: %s; %.3f s",
                 kind, profile, len(graph.plan.kernels), externs, fallbacks, graph.compile_s)
    if log.isEnabledFor(logging.DEBUG):
        log.debug("the %s graph's plan for profile %s:\n%s", kind, profile, schedule_text(graph.plan, graph.fused_ops))
    if code_log.isEnabledFor(logging.DEBUG):
        for name, source in graph.code.items():
            code_log.debug("%s for profile %s:\n%s", name, profile, source)


def ran_eagerly(kind: str, error: BaseException, profile: str) -> None:
    """The full error of a graph that could not be compiled (its warning has one line)."""
    log.info("the %s graph for profile %s could not be compiled and runs eagerly:\n%s: %s",
             kind, profile, type(error).__name__, error)


def loaded(loadable) -> None:
    """One INFO line per graph loaded from AOTAutograd's cache (nothing was compiled); its code
    as ``output_code``."""
    log.info("loaded a graph for profile %s from AOTAutograd's cache: %d kernel(s), fallbacks: %s",
             loadable.profile, len(loadable.kernels),
             ", ".join(sorted(loadable.fallbacks)) or "none")
    if code_log.isEnabledFor(logging.DEBUG):
        sources = [source for _, source, _, _ in loadable.kernels] + [loadable.wrapper_source]
        code_log.debug("code loaded for profile %s:\n%s", loadable.profile, "\n\n".join(sources))
