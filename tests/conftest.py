import numpy as np
import pytest

from farm.config import BP4D_AUS
from farm.data.store import DatasetMeta, DatasetWriter, ModalitySpec


def write_tiny_dataset(root, num_subjects=6, frames=10, size=20, seed=0, modalities=("visual", "depth"), codec="raw"):
    """A hand-made dataset in the farm's format: AU1 brightens visual, AU2 brightens depth."""
    rng = np.random.default_rng(seed)
    chans = {"visual": 3, "depth": 1, "thermal": 1}
    subjects = {
        (f"F{i // 2 + 1:03d}" if i % 2 == 0 else f"M{i // 2 + 1:03d}"): {"sex": "FM"[i % 2]}
        for i in range(num_subjects)
    }
    meta = DatasetMeta(
        "synthetic",
        tuple(ModalitySpec(m, chans[m], size, size) for m in modalities),
        BP4D_AUS,
        codec=codec,
        subjects=subjects,
        source={"tiny": seed},
    )
    w = DatasetWriter(root, meta)
    for s in subjects:
        labels = rng.integers(0, 2, (frames, len(BP4D_AUS)))
        labels[0, 3] = -1
        imgs = {}
        for m in modalities:
            base = rng.integers(0, 100, (frames, size, size, chans[m]))
            bump = labels[:, 0 if m == "visual" else 1][:, None, None, None] * 120
            imgs[m] = (base + bump).astype(np.uint8)
        w.add(s, "T1", np.arange(frames), labels, imgs)
    return w.close()


@pytest.fixture
def tiny_dataset(tmp_path):
    root = tmp_path / "tiny"
    write_tiny_dataset(root)
    return root


@pytest.fixture
def make_tiny_dataset(tmp_path):
    """`make(name, **write_tiny_dataset kwargs)` writes a tiny dataset under tmp_path and returns its root."""

    def make(name="tiny_custom", **kwargs):
        write_tiny_dataset(tmp_path / name, **kwargs)
        return tmp_path / name

    return make


def pytest_report_header(config):
    """Free disk where the tests write (end-to-end sweeps need a few GB): a full disk shows up in the header."""
    import shutil
    import tempfile

    tmp = tempfile.gettempdir()
    return f"disk: {shutil.disk_usage(tmp).free / 2**30:.1f} GiB free in {tmp}"
