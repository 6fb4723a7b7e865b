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
    python = fake_python(tmp_path, """
        import http.server, os, subprocess, sys
        port = int(sys.argv[sys.argv.index("--port") + 1])
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        open(os.environ["CHILD_PID_FILE"], "w").write(str(child.pid))
        class H(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200); self.end_headers()
            def log_message(self, *a): pass
        http.server.HTTPServer(("127.0.0.1", port), H).serve_forever()
    """)
    os.environ["CHILD_PID_FILE"] = str(tmp_path / "child.pid")
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
