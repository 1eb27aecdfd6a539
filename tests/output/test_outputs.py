"""The output rule (rfsweep/core/files.py): atomic replacement of regular files, symlinks followed, devices and
FIFOs written to directly, directories, sockets, inputs and unwritable places refused with one line,
and the extension deciding the format."""

from __future__ import annotations

import os
import socket
import threading

import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from rfsweep.cli.main import main

SEARCH = ["search", "--depth", "2", "--kernels", "1,3", "--input-size", "16"]


def _run(args):
    res = CliRunner().invoke(main, args, catch_exceptions=False)
    return res.exit_code, res.stdout, res.stderr


def _one_line(stderr, field):
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"error: field '{field}'"), stderr
    return lines[0]


def test_regular_file_is_replaced_atomically(tmp_path):
    out = tmp_path / "c.parquet"
    out.write_text("old")
    code, _, err = _run([*SEARCH, "-o", str(out)])
    assert code == 0, err
    assert pq.read_metadata(out).num_rows > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.parquet"]


def test_symlink_is_followed_and_kept(tmp_path):
    real = tmp_path / "real.parquet"
    real.write_text("old")
    link = tmp_path / "link.parquet"
    link.symlink_to(real)
    code, _, err = _run([*SEARCH, "-o", str(link)])
    assert code == 0, err
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert pq.read_metadata(real).num_rows > 0


def test_dev_null_is_written_to_not_replaced():
    before = os.stat("/dev/null")
    code, _, err = _run([*SEARCH, "-o", "/dev/null"])
    assert code == 0, err
    after = os.stat("/dev/null")
    assert os.path.exists("/dev/null") and (before.st_rdev, before.st_mode) == (after.st_rdev, after.st_mode)


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full")
def test_dev_full_fails_with_one_line():
    code, _, err = _run([*SEARCH, "-o", "/dev/full"])
    assert code == 2 and "No space left" in _one_line(err, "output")
    assert os.path.exists("/dev/full") and not os.path.isfile("/dev/full")


def test_fifo_is_written_through(tmp_path):
    fifo = tmp_path / "pipe.parquet"
    os.mkfifo(fifo)
    got = {}

    def read():
        with open(fifo, "rb") as f:
            got["data"] = f.read()

    t = threading.Thread(target=read)
    t.start()
    code, _, err = _run([*SEARCH, "-o", str(fifo)])
    t.join(30)
    assert code == 0, err
    assert got["data"][:4] == b"PAR1" and got["data"][-4:] == b"PAR1"
    assert fifo.is_fifo()


@pytest.mark.parametrize(
    "make, why",
    [
        # a directory is a dataset directory now (rfsweep/output/dataset.py): refused when it holds other things
        (lambda p: (p.mkdir(), (p / "notes.txt").write_text("x")), "not an rfsweep dataset"),
        (lambda p: None, "its directory does not exist"),
    ],
    ids=["directory", "missing-parent"],
)
def test_bad_places_are_refused_before_any_work(tmp_path, make, why):
    target = tmp_path / "x.parquet"
    make(target)
    if why.startswith("its directory"):
        target = tmp_path / "no" / "x.parquet"
    code, _, err = _run([*SEARCH, "-o", str(target)])
    assert code == 2 and why in _one_line(err, "output")


def test_socket_refused(tmp_path):
    path = tmp_path / "s.parquet"
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(path))
    try:
        code, _, err = _run([*SEARCH, "-o", str(path)])
        assert code == 2 and "socket" in _one_line(err, "output")
    finally:
        sock.close()


@pytest.mark.parametrize("path", ["/proc/rfsweep-test.parquet", "/sys/rfsweep-test.parquet"])
def test_unwritable_filesystems_refused(path):
    if not os.path.isdir(os.path.dirname(path)):
        pytest.skip("no such filesystem here")
    code, _, err = _run([*SEARCH, "-o", path])
    assert code == 2
    _one_line(err, "output")
    assert not os.path.exists(path)


def test_an_input_of_the_same_command_is_never_overwritten(tmp_path):
    space = tmp_path / "s.parquet"  # a TOML space file, whatever its name
    space.write_text("depth = 2\nkernels = [1, 3]\ninput_size = 16\n")
    code, _, err = _run(["search", "--space", str(space), "-o", str(space)])
    assert code == 2 and "is an input of this command" in _one_line(err, "output")
    assert space.read_text().startswith("depth = 2")


def test_extension_decides_the_format(tmp_path):
    code, _, err = _run([*SEARCH, "-o", str(tmp_path / "x.csv")])
    assert code == 2 and ".parquet" in _one_line(err, "output")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("suffix, magic", [(".png", b"\x89PNG"), (".pdf", b"%PDF"), (".svg", b"<?xml")])
def test_plot_extension_decides_the_format(tmp_path, suffix, magic):
    pytest.importorskip("matplotlib")
    path = tmp_path / f"g{suffix}"
    code, _, err = _run(["analyze", "alexnet_v2", "--plot", str(path)])
    assert code == 0, err
    assert path.read_bytes()[: len(magic)] == magic
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


def test_plot_unknown_extension_refused_before_any_work(tmp_path):
    code, out, err = _run(["analyze", "alexnet_v2", "--plot", str(tmp_path / "g.xyz")])
    assert code == 2 and ".png or .pdf or .svg" in _one_line(err, "plot") and out == ""
