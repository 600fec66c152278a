"""Unit tests of the e2e harness pieces that need no control plane (they always run)."""

from __future__ import annotations

import ipaddress
import os
import ssl
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from cryptography import x509

from e2e.harness import processes
from e2e.harness.binaries import BUILD_SCRIPT, Binaries, BinariesUnavailable, pinned_versions
from e2e.harness.certs import CertificateAuthority
from e2e.harness.kubeconfig import write_kubeconfig
from e2e.harness.kubelet import IpAllocator


def test_ip_allocator_hands_out_distinct_loopback_addresses_from_2() -> None:
    ips = IpAllocator(block=7)
    first = [ips.allocate() for _ in range(252)]
    assert first[:2] == ["127.7.0.2", "127.7.0.3"]
    assert first[249] == "127.7.0.251"
    assert first[250] == "127.7.1.2"
    assert len(set(first)) == len(first)
    assert all(ipaddress.ip_address(ip).is_loopback for ip in first)


def test_each_session_draws_its_own_block_away_from_the_control_plane() -> None:
    blocks = {IpAllocator().block for _ in range(200)}
    assert blocks <= set(range(1, 100))  # never 127.0.x.x (control plane, Service IPs)
    assert len(blocks) > 1  # two runs on one machine almost never share addresses


def test_issued_certificate_has_loopback_sans_and_verifies(tmp_path: Path) -> None:
    ca = CertificateAuthority(tmp_path)
    pair = ca.issue("server")
    cert = x509.load_pem_x509_certificate(pair.cert_file.read_bytes())
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["localhost"]
    assert sans.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("127.0.0.1")]
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server.load_cert_chain(pair.cert_file, pair.key_file)  # key matches certificate
    cert.verify_directly_issued_by(x509.load_pem_x509_certificate(ca.cert_file.read_bytes()))


def test_missing_binaries_name_the_recorded_build_failure(tmp_path: Path) -> None:
    (tmp_path / "bin").mkdir()
    (tmp_path / "failed").mkdir()
    (tmp_path / "failed" / "helm").write_text("build failed after 3s:\nno network\n")
    with pytest.raises(BinariesUnavailable) as err:
        Binaries(tmp_path / "bin").require("etcd", "helm")
    message = str(err.value)
    assert "helm: e2e/k8s/build failed: build failed after 3s:\nno network" in message
    assert "etcd not built (run e2e/k8s/build" in message


def test_build_script_prints_bin_dir_under_cache_dir(tmp_path: Path) -> None:
    out = subprocess.run(
        ["bash", str(BUILD_SCRIPT), "--print-bin-dir"],
        env={"SLUICE_CACHE_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert out == str(tmp_path / "k8s" / pinned_versions()["KUBE"] / "bin")
    assert not (tmp_path / "k8s").exists()  # printing builds nothing


def test_kubeconfig_holds_server_ca_and_token(tmp_path: Path) -> None:
    path = write_kubeconfig(tmp_path / "kc", "https://127.0.0.1:1", tmp_path / "ca.crt", "tok")
    config = yaml.safe_load(path.read_text())
    assert config["clusters"][0]["cluster"]["server"] == "https://127.0.0.1:1"
    assert config["users"][0]["user"]["token"] == "tok"
    assert path.stat().st_mode & 0o077 == 0


def test_managed_process_stops_its_whole_group(tmp_path: Path) -> None:
    script = (
        "import subprocess, sys, time\n"
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])\n"
        "print('up', flush=True)\n"
        "time.sleep(60)\n"
    )
    proc = processes.ManagedProcess("sleeper", [sys.executable, "-c", script], tmp_path / "log")
    processes.wait_until(lambda: "up" in proc.tail(), 10, what="child to start")
    assert proc.stop(timeout=5) is not None
    assert not proc.running()
    # The grandchild was in the same process group, so it is gone too.
    result = subprocess.run(["pgrep", "-g", str(proc.pid)], capture_output=True, check=False)
    assert result.returncode == 1


def test_a_failed_control_plane_build_fails_the_tests_that_need_it(tmp_path: Path) -> None:
    (tmp_path / "bin").mkdir()
    (tmp_path / "failed").mkdir()
    (tmp_path / "failed" / "kube-apiserver").write_text("go build exited 1: out of disk\n")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-rA",
            "e2e/test_control_plane_smoke.py::test_server_reports_pinned_version",
        ],
        env={**os.environ, "SLUICE_K8S_BIN_DIR": str(tmp_path / "bin")},
        cwd=Path(__file__).resolve().parents[1],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 1, result.stdout  # an error, never a skip
    assert "1 error" in result.stdout and "skipped" not in result.stdout
    assert "kube-apiserver: e2e/k8s/build failed: go build exited 1: out of disk" in result.stdout
