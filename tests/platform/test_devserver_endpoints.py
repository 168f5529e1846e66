"""``make run`` serves two endpoints from one local endpoint process (issue 18), and the
single endpoint of before when ``RUNPOD_ENDPOINT_ID`` is set."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import pytest
import requests

from deploy.stack.net import wait_for_port
from deploy.stack.services import DevServer


def endpoint_urls(server: DevServer) -> dict[str, str]:
    """``{name: URL}`` from the banner's "GPU endpoint:" lines."""
    found = re.findall(r"GPU endpoint:\s+(\S+) \((\S+)\)", server.log())
    return {name: url for url, name in found}


def key(server: DevServer) -> str:
    secrets_file = (server.instance / "dev-secrets.env").read_text()
    return re.search(r"LOCAL_ENDPOINT_API_KEY=(\S+)", secrets_file).group(1)


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    ("env", "expected"),
    [({}, {"video", "light"}), ({"RUNPOD_ENDPOINT_ID": "local"}, {"default"})],
)
def test_make_run_serves_each_configured_endpoint(tmp_path, env, expected):
    server = DevServer(tmp_path, env=env)
    try:
        server.wait_for_banner()
        urls = endpoint_urls(server)
        assert set(urls) == expected, server.log()[-2000:]
        headers = {"Authorization": f"Bearer {key(server)}"}
        for url in urls.values():
            wait_for_port(urlsplit(url).port, timeout=60)  # the banner waits for web only
            health = requests.get(f"{url}/health", headers=headers, timeout=30)
            assert health.status_code == 200, (url, health.text)
        assert server.interrupt() == 0
    finally:
        server.close()
