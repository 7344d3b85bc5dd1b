"""Three training processes reading one prepared dataset share its pages instead of copying them."""

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np

from farm.config import BP4D_AUS
from farm.data.store import IMAGES_DIR, DatasetMeta, DatasetWriter, ModalitySpec

READER = textwrap.dedent(
    """
    import sys
    from torch.utils.data import DataLoader
    from farm.data.dataset import FrameDataset
    from farm.data.store import FrameStore

    def anon_kb():
        for line in open("/proc/self/smaps_rollup"):
            if line.startswith("Anonymous:"):
                return int(line.split()[1])

    store = FrameStore(sys.argv[1])
    ds = FrameDataset(store, sorted(set(store.subjects)), store.meta.modality_names, store.meta.aus, crop=56)
    next(iter(DataLoader(ds, batch_size=64)))  # warm up allocators
    before = anon_kb()
    n = sum(len(y) for _, y in DataLoader(ds, batch_size=64, num_workers=0))  # touches every image
    print(n, anon_kb() - before, flush=True)
    sys.stdin.read()  # hold the mapping until the parent has measured
    """
)


def shard_memory_kb(pid: int, images_dir: Path) -> tuple[int, int]:
    """(Rss, Pss) in KiB of the process's mappings of the dataset's image shards."""
    rss = pss = 0
    current = False
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        parts = line.split()
        if parts and "-" in parts[0] and len(parts) >= 5 and not parts[0].endswith(":"):
            current = len(parts) >= 6 and parts[5].startswith(str(images_dir))
        elif current and parts[0] == "Rss:":
            rss += int(parts[1])
        elif current and parts[0] == "Pss:":
            pss += int(parts[1])
    return rss, pss


def test_three_loaders_share_the_dataset_pages(tmp_path):
    size, frames_per_subject, subjects = 64, 1000, 6
    meta = DatasetMeta("synthetic", (ModalitySpec("visual", 3, size, size), ModalitySpec("depth", 1, size, size)),
                       BP4D_AUS, subjects={f"F{i:03d}": {"sex": "F"} for i in range(subjects)})  # fmt: skip
    w = DatasetWriter(tmp_path / "ds", meta, shard_frames=1500)
    rng = np.random.default_rng(0)
    for s in meta.subjects:
        n = frames_per_subject
        w.add(s, "T1", np.arange(n), rng.integers(0, 2, (n, len(BP4D_AUS))),
              {"visual": rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8),
               "depth": rng.integers(0, 256, (n, size, size, 1), dtype=np.uint8)})  # fmt: skip
    w.close()
    images = (tmp_path / "ds" / IMAGES_DIR).resolve()
    data_kb = sum(p.stat().st_size for p in images.glob("*.arrow")) // 1024
    assert data_kb > 90_000  # ~94 MiB of images

    procs = [subprocess.Popen([sys.executable, "-c", READER, str(tmp_path / "ds")], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True) for _ in range(3)]  # fmt: skip
    try:
        reports = [p.stdout.readline().split() for p in procs]
        assert all(int(r[0]) == subjects * frames_per_subject for r in reports), reports
        mem = [shard_memory_kb(p.pid, images) for p in procs]
    finally:
        for p in procs:
            p.stdin.close()
            p.wait(timeout=60)
    rss, pss = sum(m[0] for m in mem), sum(m[1] for m in mem)
    print(f"dataset {data_kb} KiB; shard Rss per process {[m[0] for m in mem]} KiB (sum {rss}); Pss sum {pss} KiB; "
          f"anonymous growth while reading {[int(r[1]) for r in reports]} KiB")  # fmt: skip
    assert all(m[0] > 0.9 * data_kb for m in mem)  # each process has every page mapped in...
    assert pss < 1.15 * data_kb  # ...but they exist once: three readers do not triple resident memory
    assert all(int(r[1]) < 0.2 * data_kb for r in reports)  # and nobody copied the images into private memory
