"""How a population goes into egglog: facts inline or as fact files (on tmpfs when it has
room) give the same e-graph, hence the same dedupe result."""

from __future__ import annotations

import os
import sys

import pytest
from symcore.rules import api, language
from symcore.rules.api import dedupe

HERE = os.path.dirname(__file__)
sys.path.insert(0, os.path.join(HERE, "..", "..", "bench"))


def _population():
    from bench_dedupe import population   # seeded equivalent-variant populations
    return population(300, 11)


def _result(d):
    return d.class_of, [str(r) for r in d.representatives]


def test_inline_and_fact_files_give_one_result(monkeypatch):
    pop = _population()
    monkeypatch.setattr(api, "INLINE_NODES", 10**9)
    inline = dedupe(pop, saturation="full")
    monkeypatch.setattr(api, "INLINE_NODES", 0)
    files = dedupe(pop, saturation="full")
    assert _result(inline) == _result(files)
    assert inline.stats["enodes_inserted"] == files.stats["enodes_inserted"] > 0


@pytest.mark.skipif(not language._SHM, reason="no writable tmpfs at /dev/shm")
def test_fact_directory_uses_tmpfs_only_with_room():
    with language.fact_directory(1000) as small:
        assert os.path.dirname(small) == language.SHM_DIR
        assert os.path.isdir(small)
    assert not os.path.exists(small)
    st = os.statvfs(language.SHM_DIR)
    too_many = st.f_bavail * st.f_frsize // language.SHM_BYTES_PER_NODE + 1
    with language.fact_directory(too_many) as big:
        assert os.path.dirname(big) != language.SHM_DIR
