"""Runtime behaviour of the hetero backend: the on-disk library cache, compiler discovery,
eager fallback and strict mode, entry-point registration."""

import ctypes
import errno
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import types
import warnings

import pytest
import torch

import torch_hetero
from torch_hetero.codegen.cpp import library_source
from torch_hetero.backend import collect_compiled_graphs
from torch_hetero.runtime import cache, cpp_build, loaders

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))


def pointwise(x):
    return x.sin() * 2 + 1


def example_input():
    return torch.randn(3, 5, generator=torch.Generator().manual_seed(0))


def run_compiled(fn, *args, **compile_kwargs):
    """Reset Dynamo, compile ``fn`` with the hetero backend and run it once."""
    torch._dynamo.reset()
    return torch.compile(fn, backend="hetero", **compile_kwargs)(*args)


def files(folder, pattern):
    """The library cache's files matching ``pattern``; the host calibration (written into a
    fresh cache directory by whichever test first plans for the cpu profile there: its JSON,
    and the entry of its micro-benchmark library) is not one."""
    found = list(folder.rglob(pattern)) if folder.exists() else []
    benchmark = {lib.name[:64] for lib in folder.rglob("*.so") if b"hetero_bench_stream" in lib.read_bytes()} \
        if found else set()
    return sorted(f for f in found if "calibration" not in f.relative_to(folder).parts and f.name[:64] not in benchmark)


def recorded_warnings(fn, *args, **compile_kwargs):
    """``run_compiled(fn, *args)``'s output and the messages of every warning it emitted."""
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        out = run_compiled(fn, *args, **compile_kwargs)
    return out, [str(w.message) for w in record]


def run_python(code, tmp_path, **env):
    """Run ``code`` in a fresh interpreter (cache in ``tmp_path``); return its stdout."""
    env = {**os.environ, "TORCH_HETERO_CACHE_DIR": str(tmp_path / "cache"), **env}
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                            text=True, env=env, cwd=TESTS_DIR, timeout=300)
    status = (f"killed by {signal.Signals(-result.returncode).name}" if result.returncode < 0
              else f"exit code {result.returncode}")
    assert result.returncode == 0, f"subprocess {status}:\n{result.stderr[-4000:]}"
    return result.stdout


@pytest.fixture(autouse=True)
def host_calibrated():
    """The host calibrated once per process (its micro-benchmark library built) in the usual
    cache, before a test points the cache at an empty folder and counts the builds there."""
    torch_hetero.get_profile("cpu")


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    """An empty cache directory for this test, and an empty system temporary directory (where
    the per-user fallback cache goes)."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("TORCH_HETERO_CACHE_DIR", str(folder))
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    return folder


@pytest.fixture
def builds(monkeypatch):
    """The sources passed to ``cpp_build._compile`` (one entry per compiler invocation)."""
    calls = []
    real = cpp_build._compile

    def counting(prelude, kernels):
        calls.append(library_source(prelude, kernels))
        return real(prelude, kernels)
    monkeypatch.setattr(cpp_build, "_compile", counting)
    return calls


@pytest.fixture
def loads(monkeypatch):
    """(path, bytes) of every library handed to ``ctypes.CDLL`` by ``cpp_build``."""
    calls = []

    def recording_cdll(path, *args, **kwargs):
        with open(path, "rb") as f:
            calls.append((path, f.read()))
        return ctypes.CDLL(path, *args, **kwargs)
    monkeypatch.setattr(cpp_build, "ctypes", types.SimpleNamespace(CDLL=recording_cdll))
    return calls


@pytest.fixture
def no_compiler(monkeypatch):
    """$CXX names a compiler that does not exist (``find_compiler``'s lru_cache cleared around it)."""
    monkeypatch.setenv("CXX", "definitely-not-a-compiler")
    cpp_build.find_compiler.cache_clear()
    yield
    cpp_build.find_compiler.cache_clear()


# --- the library cache --------------------------------------------------------------------

def test_second_compile_hits_cache(cache_dir, builds):
    x = example_input()
    run_compiled(pointwise, x)
    assert len(builds) == 1 and len(files(cache_dir, "*.so")) == 1
    torch.testing.assert_close(run_compiled(pointwise, x), pointwise(x))
    assert len(builds) == 1, "second compile invoked the C++ compiler"
    assert len(files(cache_dir, "*.so")) == 1


def _truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _garble(path):
    path.write_bytes(os.urandom(path.stat().st_size))


# in place (same inode), as a disk error or another process would
CORRUPTIONS = {
    "truncated-so": ("*.so", _truncate),
    "garbage-so": ("*.so", _garble),
    "missing-json": ("*.json", lambda path: path.unlink()),
    "garbled-json": ("*.json", lambda path: path.write_bytes(b'{"sha256": "\xff\x00garbled')),
    "json-not-an-object": ("*.json", lambda path: path.write_text("null")),
}


@pytest.mark.parametrize("pattern,corrupt", CORRUPTIONS.values(), ids=CORRUPTIONS.keys())
def test_corrupt_entry_is_rebuilt(pattern, corrupt, cache_dir, builds, loads, monkeypatch):
    """A cache entry that fails verification is rebuilt, and the bad file is never loaded.

    The first compile stands in for an earlier process: it builds into a separate seed dir
    whose entry is copied into the cache, so this process has never loaded the file that is
    corrupted (for that case see test_library_corrupted_while_loaded_is_not_reused)."""
    x = example_input()
    seed = cache_dir.parent / "seed"
    monkeypatch.setenv("TORCH_HETERO_CACHE_DIR", str(seed))
    run_compiled(pointwise, x)
    shutil.copytree(seed, cache_dir)
    monkeypatch.setenv("TORCH_HETERO_CACHE_DIR", str(cache_dir))
    [target] = files(cache_dir, pattern)
    corrupt(target)
    del loads[:]

    out = run_compiled(pointwise, x, options={"strict": True})
    torch.testing.assert_close(out, pointwise(x))
    assert len(builds) == 2, "the corrupt entry was not rebuilt"
    [manifest_path] = files(cache_dir, "*.json")
    manifest = json.loads(manifest_path.read_text())
    lib = manifest_path.parent / manifest["file"]
    assert manifest["sha256"] == hashlib.sha256(lib.read_bytes()).hexdigest()
    assert loads and all(hashlib.sha256(data).hexdigest() == manifest["sha256"] for _, data in loads), \
        "loaded a library that does not match the rebuilt entry"


@pytest.mark.parametrize("corruption", ["truncated-so", "garbage-so"])
def test_library_corrupted_while_loaded_is_not_reused(corruption, tmp_path):
    """Replacing the cached library with a corrupt file after this process loaded it, then
    recompiling, must rebuild and load the new build, not the loader's stale handle for the old
    path (run in a subprocess: a crash must not kill pytest).  The corrupt file arrives by
    rename, as another process would write it: corrupting the mapped inode in place would
    crash any process using the library, whatever the compiler does."""
    out = run_python(f"""
        import torch, torch_hetero
        from torch_hetero.runtime import cpp_build
        from test_runtime import CORRUPTIONS, example_input, files, pointwise, run_compiled
        import os, pathlib
        torch_hetero.get_profile("cpu")  # calibrated first: it builds its own benchmark
        builds = []
        real = cpp_build._compile
        cpp_build._compile = lambda *parts: builds.append(parts) or real(*parts)
        x = example_input()
        run_compiled(pointwise, x)
        pattern, corrupt = CORRUPTIONS[{corruption!r}]
        [target] = files(pathlib.Path(os.environ["TORCH_HETERO_CACHE_DIR"]), pattern)
        copy = target.with_name("corrupt-copy")
        copy.write_bytes(target.read_bytes())
        corrupt(copy)
        os.replace(copy, target)
        out = run_compiled(pointwise, x, options={{"strict": True}})
        print(len(builds), torch.allclose(out, pointwise(x)))
    """, tmp_path)
    assert out.split() == ["2", "True"]


def test_build_leaves_no_temp_files(cache_dir):
    run_compiled(pointwise, example_input())
    assert files(cache_dir, "*.so") and files(cache_dir, "*.json")
    assert files(cache_dir, ".tmp_*") == []


def test_unwritable_cache_dir_falls_back_with_warning(tmp_path, cache_dir, monkeypatch):
    (tmp_path / "file").write_text("not a directory")
    monkeypatch.setenv("TORCH_HETERO_CACHE_DIR", str(tmp_path / "file" / "sub"))
    x = example_input()
    with pytest.warns(UserWarning, match="cache directory"):
        out = run_compiled(pointwise, x, options={"strict": True})
    torch.testing.assert_close(out, pointwise(x))


def test_unwritable_cache_dir_falls_back_to_one_directory_per_user(tmp_path):
    """Each process that cannot write the cache directory uses the same private directory
    under the system's temporary one (named in the warning with the fix), and nothing else:
    the second process loads the first one's library instead of building it again."""
    (tmp_path / "file").write_text("not a directory")
    (tmp_path / "tmp").mkdir()
    temp = str(tmp_path / "tmp")
    code = f"""
        import warnings, torch, torch_hetero
        from torch_hetero.runtime import cpp_build
        torch_hetero.get_profile("cpu")  # calibrated first: it builds its own benchmark
        built = []
        real = cpp_build._compile
        cpp_build._compile = lambda *parts: built.append(1) or real(*parts)
        x = torch.randn(8, 5)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            torch.testing.assert_close(torch.compile(lambda v: v.cos() + 3, backend="hetero",
                                                     options={{"strict": True}})(x), x.cos() + 3)
        print(len(built), sum("TORCH_HETERO_CACHE_DIR" in str(w.message) and {temp!r} in str(w.message)
                              for w in caught))
    """
    env = {"TORCH_HETERO_CACHE_DIR": str(tmp_path / "file" / "sub"), "TMPDIR": temp}
    assert run_python(code, tmp_path, **env).split() == ["1", "1"]
    assert run_python(code, tmp_path, **env).split() == ["0", "0"]  # loaded: nothing built, no warning
    private = tmp_path / "tmp" / f"torch_hetero-{os.getuid()}"
    assert [p.name for p in (tmp_path / "tmp").iterdir()] == [private.name]
    assert private.stat().st_mode & 0o777 == 0o700
    assert len(files(private, "*.so")) == 1


@pytest.mark.parametrize("how", ["another_owner", "writable_by_others"])
def test_fallback_directory_not_private_to_the_user_is_refused(how, tmp_path, cache_dir, monkeypatch):
    """Libraries are loaded from the fallback: one that another user owns or may write to is
    refused, with an error naming it and the fix, never used."""
    (tmp_path / "file").write_text("not a directory")
    monkeypatch.setenv("TORCH_HETERO_CACHE_DIR", str(tmp_path / "file" / "sub"))
    if how == "another_owner":  # a directory of ours, seen by a process of another uid
        uid = os.getuid() + 1
        monkeypatch.setattr(os, "getuid", lambda: uid)
    squatted = tmp_path / "tmp" / f"torch_hetero-{os.getuid()}"
    squatted.mkdir()
    squatted.chmod(0o777 if how == "writable_by_others" else 0o700)
    with pytest.raises(torch._dynamo.exc.BackendCompilerFailed, match="refusing the fallback cache directory") as error:
        run_compiled(pointwise, example_input(), options={"strict": True})
    message = str(error.value)
    assert str(squatted) in message and "TORCH_HETERO_CACHE_DIR" in message
    assert ("owned by uid" if how == "another_owner" else "others may write") in message
    assert list(squatted.iterdir()) == []


def test_full_cache_disk_falls_back_with_warning(cache_dir, monkeypatch):
    """No space left in the cache directory: built in the temporary one, with a warning."""
    real = cache._write_entry

    def full_disk(folder, key, data):
        if str(folder).startswith(str(cache_dir)):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(folder, key, data)
    monkeypatch.setattr(cache, "_write_entry", full_disk)
    x = example_input()
    with pytest.warns(UserWarning, match="not writable"):
        out = run_compiled(pointwise, x, options={"strict": True})
    torch.testing.assert_close(out, pointwise(x))


def test_two_processes_compiling_the_same_graph_build_it_once(tmp_path):
    """Both compile at once into one empty cache directory, each build taking a second: the
    second waits on the key's lock and loads the first one's library (one build in all); both
    get correct results, no temporary files are left, and a third process loads the entry."""
    go = tmp_path / "go"
    code = f"""
        import os, time, torch, torch_hetero
        from torch_hetero.runtime import cpp_build
        torch_hetero.get_profile("cpu")  # calibrated first: it builds its own benchmark
        built = []
        real = cpp_build._compile
        def slow_compile(*parts):
            built.append(1)
            time.sleep(1.0)  # both processes are past their lookup before an entry exists
            return real(*parts)
        cpp_build._compile = slow_compile
        x = torch.randn(64, 33, generator=torch.Generator().manual_seed(0))
        fn = lambda v: (v.sin() * 2 + 1).softmax(-1)
        while not os.path.exists({str(go)!r}):
            time.sleep(0.01)
        torch.testing.assert_close(torch.compile(fn, backend="hetero", options={{"strict": True}})(x), fn(x))
        print(len(built))
    """
    env = {**os.environ, "TORCH_HETERO_CACHE_DIR": str(tmp_path / "cache")}
    racers = [subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env=env, cwd=TESTS_DIR) for _ in range(2)]
    go.write_text("")
    builds = []
    for racer in racers:
        out, err = racer.communicate(timeout=300)
        assert racer.returncode == 0, err[-4000:]
        builds.append(int(out.split()[-1]))
    assert sorted(builds) == [0, 1]
    assert len(files(tmp_path / "cache", "*.so")) == 1
    assert files(tmp_path / "cache", ".tmp_*") == []
    assert run_python(code.replace(f"while not os.path.exists({str(go)!r}):", "while False:"), tmp_path).split()[-1] == "0"


def test_file_lock_makes_a_second_holder_wait(tmp_path):
    """``cache.file_lock`` (also used outside the library cache) excludes other processes."""
    lock = tmp_path / "x.lock"
    code = f"""
        import time
        from torch_hetero.runtime import cache
        print("ready", flush=True)
        start = time.monotonic()
        with cache.file_lock({str(lock)!r}):
            print(round(time.monotonic() - start, 2))
    """
    with cache.file_lock(str(lock)):
        waiter = subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], stdout=subprocess.PIPE, text=True,
                                  cwd=TESTS_DIR)
        assert waiter.stdout.readline().strip() == "ready"
        time.sleep(0.5)
        assert waiter.poll() is None, "took the lock while this process held it"
    out, _ = waiter.communicate(timeout=60)
    assert waiter.returncode == 0 and float(out) >= 0.4


# --- compiler discovery, eager fallback and strict mode ----------------------------------

def test_missing_compiler_error_says_how_to_fix(no_compiler):
    with pytest.raises(torch_hetero.HeteroCompileError) as excinfo:
        cpp_build.find_compiler()
    message = str(excinfo.value)
    assert "definitely-not-a-compiler" in message
    assert "install" in message.lower() and "CXX" in message


def test_missing_compiler_falls_back_to_eager(cache_dir, no_compiler):
    x = example_input()
    out, messages = recorded_warnings(pointwise, x)
    torch.testing.assert_close(out, pointwise(x))
    [message] = messages
    assert "no C++ compiler found" in message and "definitely-not-a-compiler" in message


@pytest.mark.parametrize("how", ["option", "env"])
def test_missing_compiler_raises_in_strict_mode(how, cache_dir, no_compiler, monkeypatch):
    kwargs = {"options": {"strict": True}} if how == "option" else {}
    if how == "env":
        monkeypatch.setenv("TORCH_HETERO_STRICT", "1")
    with pytest.raises(torch._dynamo.exc.BackendCompilerFailed) as excinfo:
        run_compiled(pointwise, example_input(), **kwargs)
    assert "HeteroCompileError" in str(excinfo.value)
    assert "no C++ compiler found" in str(excinfo.value)


@pytest.fixture
def failing_compiler(monkeypatch, tmp_path):
    """Our compile raises; AOTAutograd's cache is empty (an entry for the graph would be loaded
    instead of compiled: see test_aot_cache.py)."""
    def boom(*args, **kwargs):
        raise RuntimeError("boom")
    monkeypatch.setattr(torch_hetero.backend, "compile_graph", boom)
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "torch"))


def test_compile_failure_falls_back_with_one_warning(failing_compiler):
    x = example_input()
    out, messages = recorded_warnings(pointwise, x)
    torch.testing.assert_close(out, pointwise(x))
    [message] = messages
    assert "boom" in message


def test_compile_failure_raises_in_strict_mode(failing_compiler):
    with pytest.raises(torch._dynamo.exc.BackendCompilerFailed, match="boom"):
        run_compiled(pointwise, example_input(), options={"strict": True})


def test_compile_error_warning_names_the_first_compiler_error_and_the_log_has_all(tmp_path):
    """The warning is one line with the compiler's first ``error:`` line (not just "g++ failed
    to build generated code:"); TORCH_LOGS="torch_hetero", which it names, logs the full text."""
    code = """
        import warnings, torch
        import dataclasses
        from torch_hetero.codegen.renderers import RENDERERS
        RENDERERS["cpp"] = dataclasses.replace(RENDERERS["cpp"], prelude=RENDERERS["cpp"].prelude
                                               + "\\nstatic int broken = undeclared_name;\\n")  # every build fails
        x = torch.randn(4)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            out = torch.compile(lambda x: x.sin() + 1, backend="hetero")(x)
        torch.testing.assert_close(out, x.sin() + 1)
        for w in caught:
            print(w.category.__name__, "|", w.message)
    """
    env = {**os.environ, "TORCH_HETERO_CACHE_DIR": str(tmp_path / "cache"), "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "torch"),
           "TORCH_LOGS": "torch_hetero"}
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    [line] = [line for line in result.stdout.splitlines() if line.startswith("GraphFallbackWarning |")]
    assert "could not compile the inference graph (HeteroCompileError: " in line, line
    assert "failed to build generated code: kernels0.cpp:" in line and "error:" in line, line
    assert "undeclared_name" in line and "/tmp" not in line, line
    assert 'TORCH_LOGS="torch_hetero" logs the full error' in line, line
    assert "could not be compiled and runs eagerly" in result.stderr
    assert "static int broken = undeclared_name;" in result.stderr, result.stderr[-4000:]  # g++'s full text


# --- packaging -----------------------------------------------------------------------------

def test_backend_registered_through_entry_point(tmp_path):
    out = run_python("""
        import sys, torch
        assert "hetero" in torch._dynamo.list_backends(), torch._dynamo.list_backends()
        x = torch.randn(4)
        torch.testing.assert_close(torch.compile(lambda x: x.sin() + 1, backend="hetero")(x), x.sin() + 1)
        print("torch_hetero" in sys.modules)
    """, tmp_path, TORCH_HETERO_STRICT="1")
    assert out.strip() == "True"  # loaded by the entry point, not by us


def test_large_libraries_build_as_parallel_units(cache_dir, monkeypatch):
    """With more kernels than MIN_KERNELS_PER_UNIT per core, the library is compiled as one
    unit per core at once and linked; the entry points are defined once, every kernel works."""
    from torch_hetero.codegen.cpp import PRELUDE as _PRELUDE
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2})
    kernels = [f'extern "C" void k{i}(float* __restrict__ out) {{ out[0] = hetero_expf({i}.0f); }}'
               for i in range(3 * cpp_build.MIN_KERNELS_PER_UNIT)]
    units = cpp_build.units(_PRELUDE, kernels)
    assert len(units) == 3 and ["#define HETERO_SECONDARY_UNIT" in u for u in units] == [False, True, True]
    assert sorted(k for u in units for k in kernels if k in u) == sorted(kernels)
    lib = cpp_build.load_library(_PRELUDE, kernels)
    lib.hetero_set_num_threads(1)
    out = torch.zeros(1)
    for i in range(len(kernels)):
        getattr(lib, f"k{i}")(ctypes.c_void_p(out.data_ptr()))
        torch.testing.assert_close(out, torch.tensor([i], dtype=torch.float32).exp())


def test_kernels_differing_only_in_names_are_built_once(cache_dir, builds):
    """Two layers computing the same thing on their own buffers: two kernels in the graph,
    one in the library, both calls through it; the results are each layer's own."""
    def layers(x, w):
        return torch.sigmoid(torch.sigmoid(x) @ w) @ w

    x, w = torch.randn(8, 8), torch.randn(8, 8)
    with collect_compiled_graphs() as graphs:
        out = run_compiled(layers, x, w)
    torch.testing.assert_close(out, layers(x, w))
    (_, graph, _), = graphs
    assert [k.name for k in graph.kernels] == ["kernel0", "kernel1"]
    library, = builds
    assert library.count('extern "C" void kernel') == 1


def test_kernels_with_other_code_are_not_merged():
    """The canonical form numbers names only: any other difference keeps kernels apart."""
    one = 'extern "C" void kernel0(float* __restrict__ buf1, const float* __restrict__ arg0) { buf1[0] = arg0[0]; }'
    renamed = one.replace("kernel0", "kernel3").replace("buf1", "buf7").replace("arg0", "buf2")
    swapped = 'extern "C" void kernel1(float* __restrict__ buf1, const float* __restrict__ arg0) { buf1[0] = arg0[1]; }'
    assert loaders._canonical("kernel0", one) == loaders._canonical("kernel3", renamed)
    assert loaders._canonical("kernel0", one) != loaders._canonical("kernel1", swapped)


def test_gcc_only_flags_are_not_passed_to_clang(monkeypatch):
    monkeypatch.setattr(cpp_build, "compiler_version", lambda compiler: "Debian clang version 14.0.6")
    assert not set(cpp_build.GCC_FLAGS) & set(cpp_build.compile_flags(""))
    monkeypatch.setattr(cpp_build, "compiler_version", lambda compiler: "g++ (Debian 12.2.0-14) 12.2.0")
    assert set(cpp_build.GCC_FLAGS) <= set(cpp_build.compile_flags(""))
