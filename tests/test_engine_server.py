"""Launcher mechanics against stand-in processes (fault injection); the real engine is tested elsewhere."""

from __future__ import annotations

import os
import signal
import sys
import textwrap
import time

import pytest

from specwise.engine.server import EngineError, ServerSpec, VllmServer


def fake_python(tmp_path, body: str):
    """A stand-in 'python' that ignores vLLM's arguments and runs `body`."""
    script = tmp_path / "fake.py"
    script.write_text(textwrap.dedent(body))
    wrapper = tmp_path / "python"
    wrapper.write_text(f"#!/bin/sh\nexec {sys.executable} {script} \"$@\"\n")
    wrapper.chmod(0o755)
    return str(wrapper)


def test_argv_is_a_list_bound_to_localhost(tmp_path):
    server = VllmServer(ServerSpec(model="/m/target", mode="draft", draft="/m/draft", k=3), tmp_path)
    argv = server.argv
    assert argv[1:4] == ["-m", "vllm.entrypoints.openai.api_server", "--model"]
    assert argv[argv.index("--host") + 1] == "127.0.0.1"
    assert argv[argv.index("--port") + 1] == str(server.port)
    assert '"num_speculative_tokens":3' in argv[argv.index("--speculative-config") + 1]


def test_gpu_command_uses_vllm_serve():
    cmd = ServerSpec(model="/m/target", mode="ngram").command()
    assert cmd.argv[:3] == ["vllm", "serve", "/m/target"] and '"method":"ngram"' in cmd.shell


def test_exit_before_ready_reports_the_log_tail(tmp_path):
    python = fake_python(tmp_path, """
        print("loading model"); print("RuntimeError: head_dim 16 not supported", flush=True)
        raise SystemExit(3)
    """)
    with pytest.raises(EngineError) as err:
        with VllmServer(ServerSpec(model="/m"), tmp_path / "logs", python=python):
            pass
    assert "code 3" in str(err.value) and "head_dim 16" in str(err.value)


def test_ready_then_stop_kills_the_process_tree(tmp_path):
    # The launched server gets a minimal environment: the pid file's path goes in the script itself.
    python = fake_python(tmp_path, f"""
        import http.server, os, subprocess, sys
        port = int(sys.argv[sys.argv.index("--port") + 1])
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        open({str(tmp_path / "child.pid")!r}, "w").write(str(child.pid))
        class H(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200); self.end_headers()
            def log_message(self, *a): pass
        http.server.HTTPServer(("127.0.0.1", port), H).serve_forever()
    """)
    with VllmServer(ServerSpec(model="/m"), tmp_path / "logs", python=python) as server:
        assert server.alive()
        child = int((tmp_path / "child.pid").read_text())
        os.kill(child, 0)
    assert not server.alive()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        os.kill(child, signal.SIGKILL)
        pytest.fail("a child of the server survived stop()")


def test_not_ready_in_time(tmp_path):
    python = fake_python(tmp_path, "import time; print('still loading', flush=True); time.sleep(600)")
    server = VllmServer(ServerSpec(model="/m"), tmp_path / "logs", python=python, ready_timeout_s=2)
    with pytest.raises(EngineError, match="not ready after 2 s"):
        with server:
            pass
    assert not server.alive()


def test_launched_server_gets_a_minimal_environment_and_its_own_key(monkeypatch, tmp_path):
    from specwise.engine.server import launch_env

    environ = {"PATH": "/usr/bin", "HOME": "/home/u", "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8",
               "OMP_NUM_THREADS": "2", "KMP_AFFINITY": "x", "VLLM_LOGGING_LEVEL": "INFO", "HF_HOME": "/hf",
               "TRANSFORMERS_CACHE": "/t", "TORCH_HOME": "/th", "CUDA_VISIBLE_DEVICES": "0",
               "OPENAI_API_KEY": "sk-leak", "AWS_SECRET_ACCESS_KEY": "aws-leak", "GITHUB_TOKEN": "gh-leak",
               "VLLM_API_KEY": "the-user's-own"}
    spec = ServerSpec(model="/m", kv_cache_space_gb=3)
    env = launch_env(spec, "generated-key", environ)
    assert not {"OPENAI_API_KEY", "AWS_SECRET_ACCESS_KEY", "GITHUB_TOKEN"} & env.keys()
    for name in ("PATH", "HOME", "LANG", "LC_ALL", "OMP_NUM_THREADS", "KMP_AFFINITY", "VLLM_LOGGING_LEVEL",
                 "HF_HOME", "TRANSFORMERS_CACHE", "TORCH_HOME", "CUDA_VISIBLE_DEVICES"):
        assert env[name] == environ[name], name
    assert env["VLLM_API_KEY"] == "generated-key" and env["VLLM_CPU_KVCACHE_SPACE"] == "3"
    assert env["VLLM_NO_USAGE_STATS"] == "1"


def test_the_generated_key_reaches_the_server_by_environment_not_argv(monkeypatch, tmp_path):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-must-not-reach-vllm")
    python = fake_python(tmp_path, f"""
        import http.server, json, os, sys
        port = int(sys.argv[sys.argv.index("--port") + 1])
        open({str(tmp_path / "seen.json")!r}, "w").write(json.dumps({{"env": dict(os.environ), "argv": sys.argv}}))
        class H(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200); self.end_headers()
            def log_message(self, *a): pass
        http.server.HTTPServer(("127.0.0.1", port), H).serve_forever()
    """)
    with VllmServer(ServerSpec(model="/m"), tmp_path / "logs", python=python) as server:
        seen = __import__("json").loads((tmp_path / "seen.json").read_text())
    assert len(server.api_key) >= 32
    assert seen["env"]["VLLM_API_KEY"] == server.api_key and "OPENAI_API_KEY" not in seen["env"]
    assert server.api_key not in " ".join(seen["argv"]) and "--api-key" not in seen["argv"]
    assert server.api_key not in (tmp_path / "logs").joinpath(server.log_path.name).read_text()
    other = VllmServer(ServerSpec(model="/m"), tmp_path / "logs", python=python)
    assert other.api_key != server.api_key


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.10", "::", "example.org"])
def test_binding_beyond_loopback_needs_allow_remote(tmp_path, host):
    from specwise.errors import SpecwiseError

    with pytest.raises(SpecwiseError, match="--allow-remote") as err:
        VllmServer(ServerSpec(model="/m", host=host, port=8000), tmp_path)
    assert err.value.field == "--host"
    server = VllmServer(ServerSpec(model="/m", host=host, port=8000, allow_remote=True), tmp_path)
    assert server.argv[server.argv.index("--host") + 1] == host


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "127.0.0.2"])
def test_loopback_needs_no_flag(tmp_path, host):
    from specwise.engine.server import is_loopback

    assert is_loopback(host)
    VllmServer(ServerSpec(model="/m", host=host, port=8000), tmp_path)


def test_a_secret_file_is_readable_by_its_owner_only(tmp_path):
    from specwise.engine.server import write_secret

    path = tmp_path / "k.key"
    path.write_text("old")
    path.chmod(0o644)
    write_secret(path, "s3cret")
    assert path.read_text() == "s3cret\n" and (path.stat().st_mode & 0o777) == 0o600
