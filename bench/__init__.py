"""The benchmark suite (issue 5): `python -m bench` runs it all, `python -m bench --quick` only the
training comparison with PyTorch at the issue's shape. Tables go to stdout, JSON to bench/results/.

PyTorch is a benchmark-only extra: `pip install -e '.[bench]'` (a CPU build).
"""

TORCH_INSTALL_HINT = (
    "PyTorch is needed for the comparison (a benchmark-only extra, never a runtime dependency). "
    "Install it into this environment with:\n"
    "    .venv/bin/pip install -e '.[bench]'      (pins torch==2.13.0)\n"
    "Without a CUDA GPU, prefer PyTorch's CPU-only wheel (see pytorch.org's install selector) to "
    "a several-GB CUDA build. The other items run without it: python -m bench --items 2,3,4,5"
)


def torch_available() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True
