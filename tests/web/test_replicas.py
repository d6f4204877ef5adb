"""`codellama serve --dp 2`: two CPU replicas of the scripted model behind the real gateway binary
(smg, the `cluster` extra), one supervisor process on loopback, driven as a client would drive it.
The tests share that one server and run in file order: the last ones kill a replica and then stop
the whole server."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from .conftest import wait_for

ROOT = Path(__file__).resolve().parents[2]
KEY = "sk-cluster-test"
AUTH = {"Authorization": f"Bearer {KEY}"}
ROUTED_TO = "x-smg-routed-worker-id"  # the gateway names the worker that answered


class Supervisor:
    """The `codellama serve --dp 2` process, its output collected on a thread."""

    def __init__(self, model: Path):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "inference.cli", "serve", str(model), "--dp", "2", "--port", "0",
             "--capabilities", "completion,infilling,chat", "--num-kv-blocks", "128", "--max-model-len", "1024",
             "--api-keys", KEY, "--shutdown-grace", "5"],
            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, start_new_session=True)  # a terminal's process group of its own, for Ctrl-C
        self.lines: list[str] = []
        for line in self.proc.stdout:
            self.lines.append(line)
            if line.startswith("  replica 1 "):
                break
        banner = "".join(self.lines)
        assert self.proc.poll() is None, banner
        self.url = re.search(r"^codellama serve --dp 2: gateway .* at (http://\S+)", banner, re.M).group(1)
        self.gateway_pid = int(re.search(r"^  gateway .*\(pid (\d+)\)", banner, re.M).group(1))
        replicas = re.findall(r"^  replica \d  (http://\S+)  \(CPU, pid (\d+);", banner, re.M)
        self.replica_urls = [url for url, _ in replicas]
        self.replica_pids = [int(pid) for _, pid in replicas]
        threading.Thread(target=lambda: self.lines.extend(self.proc.stdout), daemon=True).start()

    def output(self) -> str:
        return "".join(self.lines)


@pytest.fixture(scope="module")
def cluster(script_model):
    server = Supervisor(script_model[1])
    yield server
    if server.proc.poll() is None:
        os.killpg(server.proc.pid, signal.SIGKILL)
        server.proc.wait()


@pytest.fixture(scope="module")
def client(cluster):
    with openai.OpenAI(base_url=cluster.url + "/v1", api_key=KEY, max_retries=0) as c:
        yield c


@pytest.fixture(scope="module")
def model_id(client):
    return client.models.list().data[0].id


def metric(replica_url: str, name: str, labels: dict | None = None) -> float:
    """One sample of a replica's own /metrics."""
    text = httpx.get(f"{replica_url}/metrics", headers=AUTH).text
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and (labels is None or s.labels == labels):
                return s.value
    return 0.0


def hits(cluster) -> list[float]:
    return [metric(url, "codellama:prefix_cache_hits_total") for url in cluster.replica_urls]


def test_the_openai_sdk_works_unchanged_through_the_gateway(client, script_model, model_id):
    script = script_model[0]
    r = client.completions.create(model=model_id, prompt=script.completion_prompt, max_tokens=50, temperature=0)
    assert r.choices[0].text == script.completion_text and r.choices[0].finish_reason == "stop"
    r = client.chat.completions.create(model=model_id, messages=[{"role": "user", "content": "hi"}], max_tokens=50,
                                       temperature=0)
    assert r.choices[0].message.content == script.chat_text
    stream = client.completions.create(model=model_id, prompt=script.completion_prompt, max_tokens=50,
                                       temperature=0, stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    assert "".join(c.choices[0].text for c in chunks if c.choices) == script.completion_text
    assert chunks[-1].usage.completion_tokens == len(script.completion_ids) + 1
    stream = client.chat.completions.create(model=model_id, messages=[{"role": "user", "content": "hi"}],
                                            max_tokens=50, temperature=0, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == script.chat_text
    r = client.completions.create(model=model_id, prompt="def f(x):\n", suffix="\n    return y\n", max_tokens=20,
                                  temperature=0)
    assert r.choices[0].text == script.infill_text


def test_errors_keep_their_status_and_keys_hold_end_to_end(cluster, client, model_id):
    with pytest.raises(openai.BadRequestError, match="context window"):  # the replica's 400, passed on
        client.completions.create(model=model_id, prompt="x", max_tokens=5000)
    with pytest.raises(openai.NotFoundError):
        client.completions.create(model="gpt-4", prompt="x", max_tokens=5)
    body = {"model": model_id, "prompt": "x", "max_tokens": 2}
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        assert httpx.post(f"{cluster.url}/v1/completions", json=body, headers=headers).status_code == 401
        assert httpx.post(f"{cluster.replica_urls[0]}/v1/completions", json=body, headers=headers).status_code == 401
    assert httpx.post(f"{cluster.replica_urls[0]}/v1/completions", json=body, headers=AUTH).status_code == 200


def test_the_replicas_report_their_load_to_the_gateway(cluster):
    assert httpx.get(f"{cluster.url}/readiness").json()["healthy_workers"] == 2
    for url in cluster.replica_urls:
        load = httpx.get(f"{url}/v1/loads", params={"include": "core"}, headers=AUTH).json()
        assert load["dp_rank_count"] == 1
        (rank,) = load["loads"]
        assert rank["max_total_num_tokens"] == 128 * 16 and rank["max_running_requests"] == 32
        assert rank["num_running_reqs"] == 0 and rank["token_usage"] == 0.0


def test_unrelated_requests_spread_over_both_replicas(client, cluster, model_id):
    served = []
    for i in range(8):  # distinct texts: no prefix to follow, so each goes where the least is cached
        prompt = "\n".join(f"unrelated_{i}_{j} = {i * j}" for j in range(30))
        r = client.completions.with_raw_response.create(model=model_id, prompt=prompt, max_tokens=2)
        served.append(r.headers[ROUTED_TO])
    assert set(served) == set(cluster.replica_urls), served


def test_requests_sharing_a_long_prefix_land_on_one_replica(client, cluster, model_id):
    prefix = "# utils.py\n" + "\n".join(f"def helper_{j}(x):\n    return x * {j} + {j * j}\n" for j in range(25))
    before = hits(cluster)
    served = []
    for i in range(6):  # an editor asking again and again below the same file
        r = client.completions.with_raw_response.create(model=model_id, prompt=f"{prefix}\nvalue_{i} = helper_",
                                                        max_tokens=2)
        served.append(r.headers[ROUTED_TO])
    assert len(set(served)) == 1, served
    chosen = cluster.replica_urls.index(served[0])
    grown = [after - earlier for after, earlier in zip(hits(cluster), before)]
    assert grown[chosen] >= 5 * 400  # five of the six found the prefix (over 400 tokens) cached
    assert grown[1 - chosen] == 0


def test_a_client_disconnect_through_the_gateway_frees_the_replicas_blocks(cluster, model_id):
    body = {"model": model_id, "prompt": "def add(a, b):", "max_tokens": 900, "ignore_eos": True, "stream": True}
    with httpx.Client(base_url=cluster.url, headers=AUTH, timeout=30) as http:
        with http.stream("POST", "/v1/completions", json=body) as r:
            replica = r.headers[ROUTED_TO]
            ended_before = metric(replica, "codellama:requests_ended_early_total", {"reason": "client_closed_request"})
            tokens_before = metric(replica, "codellama:generation_tokens_total")
            events = 0
            for line in r.iter_lines():
                events += line.startswith("data: ")
                if events == 2:
                    break
    assert wait_for(lambda: metric(replica, "codellama:requests_ended_early_total",
                                   {"reason": "client_closed_request"}) == ended_before + 1, timeout=30)
    assert metric(replica, "codellama:kv_cache_usage_perc") == 0.0
    assert metric(replica, "codellama:num_requests_running") == 0.0
    assert metric(replica, "codellama:generation_tokens_total") - tokens_before < 900


def test_a_killed_replica_leaves_the_other_serving_and_is_reported(client, cluster, model_id):
    failures: list[str] = []
    stop = threading.Event()

    def load() -> None:  # streams in flight while the replica dies: some of those may fail
        while not stop.is_set():
            try:
                list(client.completions.create(model=model_id, prompt="def add(a, b):", max_tokens=40, stream=True,
                                               extra_body={"ignore_eos": True}))
            except openai.APIError as e:
                failures.append(str(e))

    threads = [threading.Thread(target=load) for _ in range(3)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    os.kill(cluster.replica_pids[1], signal.SIGKILL)
    served = []
    for i in range(6):
        r = client.completions.with_raw_response.create(model=model_id, prompt=f"after the loss {i}", max_tokens=3)
        assert r.status_code == 200
        served.append(r.headers[ROUTED_TO])
    stop.set()
    for t in threads:
        t.join(timeout=60)
    assert set(served) == {cluster.replica_urls[0]}
    dead = cluster.replica_urls[1]

    def gateway_sees_it_unhealthy() -> bool:
        workers = httpx.get(f"{cluster.url}/workers", headers=AUTH).json()["workers"]
        return not next(w for w in workers if w["url"] == dead)["is_healthy"]

    assert wait_for(gateway_sees_it_unhealthy, timeout=30)
    assert httpx.get(f"{cluster.url}/readiness").json() == {"status": "ready", "healthy_workers": 1,
                                                            "total_workers": 2}
    assert wait_for(lambda: f"replica 1 ({dead}, pid {cluster.replica_pids[1]}) exited with code -9"
                    in cluster.output())


def test_ctrl_c_stops_the_gateway_and_every_replica(cluster):
    os.killpg(cluster.proc.pid, signal.SIGINT)  # what a terminal sends its foreground process group
    assert cluster.proc.wait(timeout=90) == 0
    for pid in [cluster.gateway_pid, *cluster.replica_pids]:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    time.sleep(0.2)  # the output thread reaches the end of the log
    # the replica killed above is left out: its engine process may die mid-send
    stopped = "".join(line for line in cluster.lines if not line.startswith("[replica 1] "))
    assert "Traceback" not in stopped, stopped
