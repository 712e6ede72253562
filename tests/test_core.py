"""core.py: the exit codes of a command, atomic writing (whole files or none, the target named on failure),
the --device and --seed flags."""
import argparse
import os
import stat

import pytest
import torch
from matplotlib.figure import Figure
from PIL import Image

import core


def test_run_gives_0_2_and_130_with_one_line_on_stderr(capsys):
    assert core.run(lambda: None) == 0

    def refuse():
        raise core.UserError("--flag x is wrong; pass y")
    assert core.run(refuse) == 2
    assert capsys.readouterr().err == "error: --flag x is wrong; pass y\n"

    class Other(RuntimeError):
        pass

    def other():
        raise Other("first line\nsecond line")
    assert core.run(other, errors=(Other,)) == 2
    assert capsys.readouterr().err == "error: first line\n"  # one line, whatever the message

    def interrupted():
        raise KeyboardInterrupt
    assert core.run(interrupted) == 130
    assert capsys.readouterr().err.strip() == "interrupted"
    with pytest.raises(Other):  # not a user error: the traceback is the report
        core.run(other)

    def full(path):  # the write itself fails as on a full disk
        with core.open_atomic(path, "w") as f:
            f.write("half")
            raise OSError(28, "No space left on device")
    assert core.run(full, "/tmp/never-written.txt") == 2
    assert capsys.readouterr().err == ("error: /tmp/never-written.txt: No space left on device; free space or fix "
                                       "permissions and run again\n")
    assert not os.path.exists("/tmp/never-written.txt")
    with pytest.raises(OSError):  # an OSError that names no file is not one the user can act on
        core.run(lambda: (_ for _ in ()).throw(OSError("no file")))
    with pytest.raises(SystemExit) as e:
        core.main(refuse)
    assert e.value.code == 2
    assert core.main(lambda: None) is None  # success returns: a test can call a script's main


def test_first_line():
    assert core.first_line(ValueError("  a\nb")) == "a"
    assert core.first_line(OSError()) == "OSError"
    assert core.first_line(OSError(), default="no detail") == "no detail"
    assert core.first_line(ValueError("x" * 200)) == "x" * 120
    assert core.first_line(ValueError("x" * 200), limit=None) == "x" * 200


def test_atomic_writers_write_whole_files_with_the_usual_permissions(tmp_path):
    core.write_json_atomic({"a": [1, 2]}, tmp_path / "x.json")
    assert (tmp_path / "x.json").read_text() == '{\n  "a": [\n    1,\n    2\n  ]\n}'  # as json.dumps(indent=2)
    core.write_text_atomic("é\n", str(tmp_path / "x.txt"))
    assert (tmp_path / "x.txt").read_bytes() == "é\n".encode()
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE((tmp_path / "x.txt").stat().st_mode) == 0o666 & ~umask  # not a temp file's 0600
    fig = Figure()
    core.save_figure_atomic(fig, tmp_path / "f.png", dpi=20)
    core.save_image_atomic(Image.new("L", (8, 8), 7), tmp_path / "i.jpeg", quality=95)
    with Image.open(tmp_path / "f.png") as f, Image.open(tmp_path / "i.jpeg") as i:
        assert (f.format, i.format, i.size) == ("PNG", "JPEG", (8, 8))
    with core.open_atomic(tmp_path / "t.pt") as f:
        torch.save(torch.arange(3), f)
    assert torch.load(tmp_path / "t.pt", weights_only=True).tolist() == [0, 1, 2]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.png", "i.jpeg", "t.pt", "x.json", "x.txt"]


def test_a_failed_write_leaves_the_old_file_and_no_temp_file(tmp_path):
    target = tmp_path / "x.txt"
    target.write_text("old")
    with pytest.raises(OSError) as e:
        with core.open_atomic(target, "w") as f:
            f.write("half of the new")
            raise OSError(28, "No space left on device")
    assert e.value.filename == str(target)  # the file the user asked for, not the temp file
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["x.txt"]
    with pytest.raises(ValueError):
        with core.open_atomic(target, "w") as f:
            raise ValueError("not an OSError: re-raised as it is")
    assert os.listdir(tmp_path) == ["x.txt"]
    with pytest.raises(OSError) as e:  # a folder that cannot be made: its parent is a file
        core.write_text_atomic("x", target / "sub" / "y.txt")
    assert e.value.filename == str(target / "sub" / "y.txt")
    core.write_text_atomic("new", tmp_path / "made" / "y.txt")  # a missing folder is made
    assert (tmp_path / "made" / "y.txt").read_text() == "new"


def test_writable_folder(tmp_path):
    assert core.writable_folder(str(tmp_path / "a" / "b")) == str(tmp_path / "a" / "b")
    (tmp_path / "file").write_text("")
    with pytest.raises(core.UserError, match="cannot write to output folder"):
        core.writable_folder(str(tmp_path / "file" / "sub"))


def test_choose_device():
    assert core.choose_device("cpu") == torch.device("cpu")
    assert core.choose_device(None) == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(core.UserError, match="--device gpu is not a device"):
        core.choose_device("gpu")
    with pytest.raises(core.UserError, match="no such CUDA device"):
        core.choose_device(f"cuda:{torch.cuda.device_count()}")  # one past the last


def test_parse_seeds():
    assert core.parse_seeds("7") == [7]
    assert core.parse_seeds("0-3") == [0, 1, 2, 3]
    assert core.parse_seeds("3, 7,20-22") == [3, 7, 20, 21, 22]
    for bad in ("", "a", "5-2", "-1", "1-"):
        with pytest.raises(argparse.ArgumentTypeError):
            core.parse_seeds(bad)


def test_demo_seed_is_the_data_seed_else_the_run_seed():
    import training
    assert core.demo_seed({"seed": 3, "data_seed": None}) == 3
    assert core.demo_seed({"seed": 3, "data_seed": 0}) == 0  # 0 is a seed, not "unset"
    assert core.demo_seed(training.TrainConfig(seed=2, data_seed=7)) == 7
    assert core.demo_seed(training.TrainConfig(seed=2)) == 2


def test_res_map_parses_one_value_or_per_resolution_values():
    parse = core.res_map(int)
    assert parse("16") == 16
    assert parse("32:32,64:16") == {32: 32, 64: 16}
    assert core.res_map(float)("4:7,32:0.5") == {4: 7.0, 32: 0.5}
    with pytest.raises(ValueError):
        parse("64:wide")
