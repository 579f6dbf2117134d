"""Workers' stdout and stderr reach the master's stdout, line by line, prefixed."""

from __future__ import annotations

import sys
import time

import pytest

import pydistributed as dist


def say(*lines: str, err: bool = False) -> None:
    stream = sys.stderr if err else sys.stdout
    for line in lines:
        print(line, file=stream)


def write_raw(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def fail_loudly(message: str) -> None:
    raise RuntimeError(message)


class Collected:
    """Everything captured so far (``capsys.readouterr`` empties the capture each time)."""

    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self.capsys = capsys
        self.out = ""

    def wait_for(self, *needles: str, timeout: float = 5.0) -> str:
        deadline = time.monotonic() + timeout
        while True:
            self.out += self.capsys.readouterr().out
            if all(n in self.out for n in needles) or time.monotonic() > deadline:
                return self.out
            time.sleep(0.02)


def test_stdout_lines_are_prefixed(cluster: list[int], capsys: pytest.CaptureFixture[str]) -> None:
    a, b = cluster
    dist.remotecall_fetch(say, a, "hello from a", "second line")
    dist.remote_do(say, b, "hello from b")
    out = Collected(capsys).wait_for(
        f"From worker {a}: hello from a\n",
        f"From worker {a}: second line\n",
        f"From worker {b}: hello from b\n",
    )
    assert f"From worker {a}: hello from a\n" in out
    assert f"From worker {a}: second line\n" in out
    assert f"From worker {b}: hello from b\n" in out
    assert out.index("hello from a") < out.index("second line")


def test_stderr_goes_to_the_masters_stdout(
    cluster: list[int], capsys: pytest.CaptureFixture[str]
) -> None:
    a = cluster[0]
    dist.remotecall_fetch(say, a, "an error line", err=True)
    collected = Collected(capsys)
    assert f"From worker {a}: an error line\n" in collected.wait_for("an error line")
    assert "an error line" not in capsys.readouterr().err


def test_multiline_write_is_split_into_lines(
    cluster: list[int], capsys: pytest.CaptureFixture[str]
) -> None:
    a = cluster[1]
    dist.remotecall_fetch(write_raw, a, "one\ntwo\nthree\n")
    out = Collected(capsys).wait_for("three")
    for word in ("one", "two", "three"):
        assert f"From worker {a}: {word}\n" in out


def test_remote_do_errors_are_printed_on_the_worker(
    cluster: list[int], capsys: pytest.CaptureFixture[str]
) -> None:
    a = cluster[0]
    assert dist.remote_do(fail_loudly, a, "remote_do went wrong") is None
    out = Collected(capsys).wait_for("remote_do went wrong")
    lines = [line for line in out.splitlines() if "remote_do went wrong" in line]
    assert lines
    assert all(line.startswith(f"From worker {a}: ") for line in lines)
    assert f"From worker {a}: RuntimeError: remote_do went wrong" in out
    # The worker is fine afterwards.
    assert dist.remotecall_fetch(dist.myid, a) == a


def test_output_follows_the_current_stdout(
    cluster: list[int], capsys: pytest.CaptureFixture[str]
) -> None:
    import io

    a = cluster[0]
    replacement = io.StringIO()
    real = sys.stdout
    sys.stdout = replacement
    try:
        dist.remotecall_fetch(say, a, "into the replacement")
        deadline = time.monotonic() + 5
        while "into the replacement" not in replacement.getvalue() and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        sys.stdout = real
    assert f"From worker {a}: into the replacement\n" in replacement.getvalue()
    time.sleep(0.1)
    assert "into the replacement" not in capsys.readouterr().out


def test_remote_do_errors_on_this_process_are_printed_with_the_same_header(
    capsys: pytest.CaptureFixture[str],
) -> None:
    dist.remote_do(fail_loudly, dist.myid(), "local remote_do went wrong")
    deadline = time.monotonic() + 5
    err = ""
    while "local remote_do went wrong" not in err and time.monotonic() < deadline:
        time.sleep(0.02)
        err += capsys.readouterr().err
    assert f"Error in remote_do on process {dist.myid()}:" in err
    assert "RuntimeError: local remote_do went wrong" in err
