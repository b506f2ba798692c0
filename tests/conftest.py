import pytest

from cli_helpers import TINY, ulmfit


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """`ulmfit run configs/cpu-small.yaml` scaled down (real WikiText-2 and TREC-6); (out, process)."""
    out = tmp_path_factory.mktemp("run") / "cpu-small"
    r = ulmfit("run", "configs/cpu-small.yaml", "--out", str(out), "--quiet", *[a for s in TINY for a in ("--set", s)])
    return out, r
