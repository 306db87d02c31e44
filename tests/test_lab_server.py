"""The browser tests' throwaway JupyterLab: private, and gone with its kernels in every case."""

import urllib.error

import psutil
import pytest
from lab_server import NOTEBOOKS, kernel_is_installed, running_lab


def test_server_needs_its_token_and_serves_a_copy_of_the_notebooks(tmp_path):
    with running_lab(NOTEBOOKS, tmp_path) as lab:
        assert lab.url.startswith("http://127.0.0.1:")
        assert lab.root != NOTEBOOKS and (lab.root / "01_full_ft_vs_peft.ipynb").is_file()
        listing = lab.api("contents")
        assert {"05_customer_support_demo.ipynb"} <= {item["name"] for item in listing["content"]}
        stranger = lab.__class__(lab.url, "not-the-token", lab.root, lab.log, lab.pid)
        with pytest.raises(urllib.error.HTTPError, match="403"):
            stranger.api("contents")


def test_server_and_its_kernel_stop_even_when_the_test_fails(tmp_path):
    assert kernel_is_installed(), "the 'peftlab' Jupyter kernel is missing: run `make setup`"
    with pytest.raises(RuntimeError, match="the test failed"):
        with running_lab(NOTEBOOKS, tmp_path) as lab:
            kernel = lab.api("kernels", method="POST", body={"name": "peftlab"})
            assert kernel["name"] == "peftlab"
            family = [psutil.Process(lab.pid), *psutil.Process(lab.pid).children(recursive=True)]
            assert len(family) >= 2  # the server and the kernel it started
            raise RuntimeError("the test failed")
    assert not [p for p in family if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    with pytest.raises(urllib.error.URLError):
        lab.api("status")
