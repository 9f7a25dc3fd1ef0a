"""Each test process starts with an empty AOTAutograd cache (torch's compile cache directory,
where ``torch_hetero.aot_cache`` keeps compiled graphs), removed at exit, so that no run depends
on what an earlier one stored; within a run, a graph compiled again is loaded, as for a user."""
import atexit
import os
import shutil
import tempfile

os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(prefix="hetero_tests_torch_cache_")
atexit.register(shutil.rmtree, os.environ["TORCHINDUCTOR_CACHE_DIR"], ignore_errors=True)
