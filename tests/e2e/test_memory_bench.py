"""bench/memory.py: the idle-memory measurement finds the supervisor and every role process of
`courriel serve --dev` and reads a positive RSS and PSS for each (no size threshold here), and
the roles forked from the supervisor share most of their pages (PSS well below RSS)."""

import importlib.util
import sys
from pathlib import Path

from courriel.roles import ROLES

BENCH = Path(__file__).resolve().parents[2] / "bench" / "memory.py"


def _bench_module():
    spec = importlib.util.spec_from_file_location("courriel_memory_bench", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_memory_bench_samples_every_process(tmp_path):
    bench = _bench_module()
    samples = bench.measure(idle=0.5, data=tmp_path / "data")
    labels = [sample.label for sample in samples]
    assert labels.count("supervisor") == 1
    for spec in ROLES.values():
        if spec.available() and not spec.has_work:  # on-demand roles wait for work (none here)
            assert spec.name in labels, labels
    for sample in samples:
        assert sample.rss_kib > 0 and sample.pss_kib > 0 and 0 < sample.uss_kib <= sample.pss_kib, sample
    assert "total" in bench.render(samples)
    # Copy-on-write sharing works: with fork + exec the PSS total is ~80% of the RSS total
    # (only the interpreter and shared libraries are shared); forked, it is ~30%.
    rss = sum(sample.rss_kib for sample in samples)
    pss = sum(sample.pss_kib for sample in samples)
    assert pss < 0.5 * rss, bench.render(samples)
