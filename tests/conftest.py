import os
import shutil
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FIXTURES = Path(os.environ.get("DRFHQ_FIXTURES", REPO.parent / "shared" / "fixtures"))
sys.path.insert(0, str(Path(__file__).parent))   # reference_ffhq helpers


def pytest_collection_modifyitems(config, items):
    if not FIXTURES.is_dir():
        raise pytest.UsageError(f"fixtures not found at {FIXTURES}; CI needs ../shared beside the repo")


@pytest.fixture(scope="session")
def fixtures() -> Path:
    return FIXTURES


@pytest.fixture(scope="session")
def fixture_dataset(tmp_path_factory) -> Path:
    """All shared fixtures built once at 256 px (the slowest shared step, reused by many tests)."""
    from drfhq_tools.dataset.build import build_dataset
    from drfhq_tools.dataset.config import BuildConfig

    out = tmp_path_factory.mktemp("fixture_dataset")
    build_dataset(BuildConfig(src=str(FIXTURES), out=str(out), size=256, workers=2))
    return out


@pytest.fixture(scope="session")
def tiny_run(fixture_dataset, tmp_path_factory) -> Path:
    """A `drfhq train` run of the tiny network on the fixture dataset (2 steps, 64 px)."""
    from drfhq_tools.gan.train import TrainConfig, train

    out = tmp_path_factory.mktemp("tiny_run") / "run"
    train(TrainConfig(dataset=str(fixture_dataset), out=str(out), base="none", network="tiny", batch=4, mbstd_group=2, workers=0,
                      kimg=0.008, snapshot_kimg=0.008, grid=2, limit=16), log=lambda *a: None)
    return out


def copy_files(paths, dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    for p in paths:
        shutil.copy2(p, dest / p.name)
    return dest
