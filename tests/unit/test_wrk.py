"""scripts/measure/bench/wrk.py: the Lua script, wrk's result line, and a real wrk run against a tiny local server."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from scripts.measure.bench.wrk import RESULT_PREFIX, find_wrk, lua_script, parse_result, run_wrk, summarise


def test_lua_script_sets_body_file_and_headers(tmp_path):
    script = lua_script(tmp_path / "body", {"Authorization": "Bearer k\"ey", "Content-Type": "image/jpeg"})
    assert f'io.open("{tmp_path / "body"}", "rb")' in script
    assert 'wrk.headers["Authorization"] = "Bearer k\\"ey"' in script
    assert 'wrk.method = "POST"' in script and RESULT_PREFIX in script
    with pytest.raises(ValueError):
        lua_script(tmp_path / "body", {"X": "a\nb"})


def test_parse_and_summarise():
    line = f'noise\n{RESULT_PREFIX}{{"requests":100,"duration_us":2000000,"non_2xx":10,"socket_errors":2,' \
           '"p50_us":1500,"p90_us":3000,"p99_us":9000}\n'
    summary = summarise(parse_result(line), concurrency=4, elapsed_s=2.0, client_cpu_s=0.4, cores=2)
    assert summary["throughput_rps"] == 45.0  # the 90 answered 2xx over 2 s
    assert (summary["p50_ms"], summary["p99_ms"], summary["errors"]) == (1.5, 9.0, 12)
    assert (summary["client"], summary["client_cpu_share"]) == ("wrk", 0.1)
    with pytest.raises(RuntimeError, match="no result line"):
        parse_result("wrk: something else")


class _Echo(BaseHTTPRequestHandler):
    seen: list[tuple[bytes, str | None]] = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.seen.append((body, self.headers.get("Authorization")))
        self.send_response(200 if body == b"photo-bytes" else 400)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args):
        pass


@pytest.mark.skipif(find_wrk() is None, reason="wrk is not installed (apt-get install wrk)")
def test_a_real_wrk_run_posts_the_body_with_the_key():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Echo)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        summary = run_wrk(f"http://127.0.0.1:{server.server_port}/p", b"photo-bytes",
                          {"Authorization": "Bearer secret"}, concurrency=2, seconds=1)
    finally:
        server.shutdown()
    assert summary["requests"] > 0 and summary["errors"] == 0 and summary["throughput_rps"] > 0
    assert set(_Echo.seen) == {(b"photo-bytes", "Bearer secret")}
    assert 0 <= summary["client_cpu_share"] <= 1
