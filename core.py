"""The command-line plumbing every script shares: one owner for each small thing.

- `UserError`: input the user can fix (a path, a flag); str() is one line naming it and what to do.
  dataset.DataError and predict.InputError are this type (or a subclass), so one `except` catches all.
- `run` / `main`: run a script's work, turning a user error into one `error: ...` line and exit code 2,
  and Ctrl-C into one line and exit code 130.
- Atomic file writing: a temp file in the target's folder, fsync, then os.replace, so a reader (or a run
  killed mid-write) sees the old file or the new one, whole.
- `writable_folder`, `cache_folder`, `file_sha256`; device and thread choice; seed lists; the class names.

Imports nothing of the project, so any module can import it.
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import os
import re
import secrets
import sys
import tempfile
from pathlib import Path

import torch

CLASSES = ("AD", "NC")    # diagnosis classes, in the order of class indices (encoder outputs, plots)
SPLITS = ("train", "test")


class UserError(ValueError):
    """Input the user can fix (paths, flags); str() is one line naming the input and what to do."""


def first_line(e: BaseException, limit: int | None = 120, default: str | None = None) -> str:
    """The first line of str(e), cut to `limit` characters; `default` (else the type's name) when empty."""
    text = str(e).strip()
    line = text.splitlines()[0] if text else (default or type(e).__name__)
    return line[:limit] if limit else line


# ----------------------------------------------------------------------------- running a command

def run(fn, *args, errors: tuple = ()) -> int:
    """fn(*args) as a command; its exit code: 0 when it returns, 2 after a user error (or one of `errors`)
    or a failed file operation, reported as one `error: ...` line on stderr, 130 after Ctrl-C."""
    try:
        fn(*args)
    except (UserError, *errors) as e:
        print(f"error: {first_line(e, limit=None)}", file=sys.stderr)
        return 2
    except OSError as e:  # a full disk, a lost permission: name the file (atomic writes left it whole)
        if e.filename is None:
            raise
        print(f"error: {e.filename}: {e.strerror or first_line(e)}; free space or fix permissions and run again",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    return 0


def main(fn, *args, errors: tuple = ()) -> None:
    """`run`, exiting with its code unless that is 0 (so a test can call a script's main and get it back)."""
    code = run(fn, *args, errors=errors)
    if code:
        sys.exit(code)


# ----------------------------------------------------------------------------- files

@contextlib.contextmanager
def open_atomic(path: str | os.PathLike, mode: str = "wb"):
    """Open a temp file in `path`'s folder for writing; on a clean exit, fsync it and rename it to `path`.

    The folder is created if needed. On any failure the temp file is removed and `path` is untouched; an
    OSError names `path` (e.filename).
    The temp file is made with the user's umask, as open() would make `path` itself."""
    path = os.fspath(path)
    folder, name = os.path.split(os.path.abspath(path))
    tmp = os.path.join(folder, f".{name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
    try:
        os.makedirs(folder, exist_ok=True)
        with open(tmp, mode.replace("w", "x")) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        if isinstance(e, OSError):
            e.filename = path
        raise


def write_bytes_atomic(data: bytes, path: str | os.PathLike) -> None:
    with open_atomic(path, "wb") as f:
        f.write(data)


def write_text_atomic(text: str, path: str | os.PathLike) -> None:
    """Write `text` (UTF-8) so that readers see the old or the new file whole."""
    write_bytes_atomic(text.encode(), path)


def write_json_atomic(obj, path: str | os.PathLike) -> None:
    """`obj` as JSON indented by 2 (no trailing newline), written atomically."""
    write_text_atomic(json.dumps(obj, indent=2), path)


def save_figure_atomic(fig, path: str | os.PathLike, **options) -> None:
    """fig.savefig(path, **options), atomically; the format comes from the file name's suffix."""
    with open_atomic(path) as f:
        fig.savefig(f, format=Path(path).suffix[1:].lower(), **options)


def save_image_atomic(image, path: str | os.PathLike, **options) -> None:
    """A PIL image's save(path, **options), atomically; the format comes from the file name's suffix."""
    from PIL import Image

    fmt = Image.registered_extensions()[Path(path).suffix.lower()]
    buffer = io.BytesIO()  # encode first: a failing encoder leaves no temp file at all
    image.save(buffer, format=fmt, **options)
    write_bytes_atomic(buffer.getvalue(), path)


def writable_folder(path: str) -> str:
    """Create `path` if needed and check a file can be written in it."""
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as e:
        raise UserError(f"cannot write to output folder {path} ({e.strerror or e})") from None
    return path


def cache_folder(cache_dir: str | None = None) -> Path:
    """Where cached builds live: `cache_dir`, else $BRAIN_STYLEGAN_CACHE, else ~/.cache/brain-stylegan."""
    return Path(cache_dir or os.environ.get("BRAIN_STYLEGAN_CACHE") or Path.home() / ".cache" / "brain-stylegan")


def demo_seed(train_config) -> int:
    """The seed of the demo set a run trains on, from its train config (a dict or a TrainConfig):
    its data_seed, or its run seed when data_seed is None."""
    tc = train_config if isinstance(train_config, dict) else vars(train_config)
    return tc.get("seed", 0) if tc.get("data_seed") is None else tc["data_seed"]


def file_sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# ----------------------------------------------------------------------------- flags

def choose_device(arg: str | None = None) -> torch.device:
    """The --device flag: None or 'auto' -> CUDA when present, else the CPU; else the device named, refused in
    one line when it is not a device or is a CUDA device this machine lacks."""
    if arg is None or arg == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(arg)
    except RuntimeError:
        raise UserError(f"--device {arg} is not a device; pass cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not (torch.cuda.is_available() and (device.index or 0) < torch.cuda.device_count()):
        raise UserError(f"--device {arg}: no such CUDA device here; pass --device cpu")
    return device


def res_map(kind):
    """An argparse type: one value ('16', every resolution's), or per resolution ('32:32,64:16' -> {32: 32, 64: 16})."""
    def parse(text: str):
        if ":" not in text:
            return kind(text)
        return {int(k): kind(v) for k, v in (item.split(":") for item in text.split(","))}
    parse.__name__ = f"{kind.__name__} or RES:{kind.__name__},..."
    return parse


def add_threads_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's choice); on a busy machine 1 can be much faster")


def set_threads(threads: int | None) -> None:
    """Apply --threads (None or 0: leave torch's choice)."""
    if threads:
        torch.set_num_threads(threads)


def parse_seeds(spec: str) -> list[int]:
    """'7' -> [7]; '0-3' -> [0, 1, 2, 3]; '0-2,9' -> [0, 1, 2, 9] (argparse type)."""
    seeds = []
    for part in spec.split(","):
        m = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if not m or (m[2] is not None and int(m[2]) < int(m[1])):
            raise argparse.ArgumentTypeError(f"expected a seed, a range like 0-80 or a comma list, got {spec!r}")
        lo = int(m[1])
        seeds.extend(range(lo, int(m[2] or lo) + 1))
    return seeds
