"""What `codellama serve --dp N` hands each replica: the user's serve arguments less the
supervisor's own, and GPUs of its own (the running server is tested in test_replicas.py)."""

from __future__ import annotations

import pytest

from inference.cli import build_parser, main
from web.replicas.plan import gateway_key, replica_argv, replica_devices


def _parsed(argv: list[str]):
    return build_parser().parse_args(["serve", *argv])


def test_a_replica_gets_every_changed_option_and_nothing_of_the_supervisors():
    argv = ["./ws", "0.0.0.0", "8000", "--dp", "2", "--router-policy", "round_robin", "--tp", "2",
            "--instance-num", "64", "--api-keys", "k", "--admin-key", "a", "--capabilities", "completion,chat",
            "--no-prefix-caching", "--load-format", "random", "--shutdown-grace", "3", "--cors-origins", "x", "y"]
    args = _parsed(argv)
    replica = replica_argv(args._serve_parser, args)
    assert not {"--dp", "--router-policy", "--host", "--port", "0.0.0.0", "8000"} & set(replica)
    again = _parsed(replica)
    for name, value in vars(args).items():
        if name not in ("dp", "router_policy", "host_arg", "port_arg", "_serve_parser", "_run"):
            assert getattr(again, name) == value, name
    assert (again.dp, again.router_policy, again.host_arg, again.port_arg) == (1, None, None, None)


def test_a_replica_of_the_defaults_gets_no_arguments():
    args = _parsed(["--dp", "3"])
    assert replica_argv(args._serve_parser, args) == []


def test_each_replica_takes_its_own_gpus(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,5,6,7")
    assert replica_devices(2, 2, None, cuda_available=True) == ["4,5", "6,7"]
    assert replica_devices(4, 1, "cuda", cuda_available=True) == ["4", "5", "6", "7"]
    assert replica_devices(2, 1, None, cuda_available=False) == [None, None]  # CPU replicas
    assert replica_devices(2, 2, "cpu", cuda_available=True) == [None, None]
    with pytest.raises(ValueError, match="needs 6 GPUs; 4 are visible"):
        replica_devices(3, 2, None, cuda_available=True)
    with pytest.raises(ValueError, match="leave out --device cuda:1"):
        replica_devices(2, 1, "cuda:1", cuda_available=True)


def test_the_gateway_checks_one_key():
    assert gateway_key([]) is None and gateway_key(["k"]) == "k"
    with pytest.raises(ValueError, match="single key"):
        gateway_key(["a", "b"])


@pytest.mark.parametrize("argv,message", [
    (["serve", "--router-policy", "round_robin"], "give --dp 2 or more"),
    (["serve", "--dp", "0"], "--dp must be >= 1"),
    (["serve", "--dp", "2", "--api-keys", "a", "b"], "single key"),
])
def test_impossible_data_parallel_options_are_clear_errors(capsys, argv, message):
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_the_gateway_leaves_out_only_a_replica_as_full_as_its_batch():
    """smg by default leaves a replica with 8 waiting requests out of cache-aware routing; here
    prompts wait for their chunked prefill as a matter of course, so the bar is the replicas'
    own batch limit."""
    from web.replicas.children import Gateway

    gateway = Gateway(["http://127.0.0.1:1"], "127.0.0.1", 2, "cache_aware", max_num_seqs=48, echo=False)
    flag = gateway.argv.index("--worker-overload-waiting-requests")
    assert gateway.argv[flag + 1] == "48"
