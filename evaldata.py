"""What evaluate.py compares: real slices split by subject into train and held out, and the candidates, the
images under test (a checkpoint's generator, or images made elsewhere: a folder of PNG/JPEG or a tensor file).
"""
from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import core
import dataset
import modules
import sampling
from core import CLASSES, UserError
from dataset import DataError
from metrics import MIN_RES

TEST_FRACTION = 0.2         # subjects held out when the data has no test split


# ----------------------------------------------------------------------------- real data, split by subject

@dataclass
class Split:
    """One class's real slices, train and held out, from disjoint subjects."""
    train: dataset.SliceSet
    test: dataset.SliceSet
    notes: list[str]


def subject_split(subjects: list[str], test_fraction: float = TEST_FRACTION) -> torch.Tensor:
    """Bool mask (True = test) holding out ceil(test_fraction * subjects) whole subjects, chosen by a hash
    of the subject id: the same subjects on every machine, and never one subject on both sides."""
    unique = sorted(set(subjects), key=lambda s: hashlib.sha256(s.encode()).hexdigest())
    if len(unique) < 2:
        raise DataError(f"only {len(unique)} subject in the data; a train/test split needs at least 2")
    held_out = set(unique[:max(1, math.ceil(test_fraction * len(unique)))])
    return torch.tensor([s in held_out for s in subjects])


def _subset(s: dataset.SliceSet, mask: torch.Tensor, split: str) -> dataset.SliceSet:
    return dataset.SliceSet(s.images[mask], [sub for sub, m in zip(s.subjects, mask.tolist()) if m],
                            s.class_name, split, s.source)


def _resplit(s: dataset.SliceSet) -> tuple[dataset.SliceSet, dataset.SliceSet]:
    test = subject_split(s.subjects)
    return _subset(s, ~test, "train"), _subset(s, test, "test")


def load_split(data: str, class_name: str, resolution: int, demo_count: int | None, data_seed: int,
               skip_bad: bool = False) -> Split:
    """Train and held-out slices of one class at `resolution`.

    Demo: the train split train.py uses (`demo_count` slices, default 2000) and as many from the demo test
    split. A folder with train/ and test/: those, re-split by subject if a subject id is on both sides.
    A folder without them: 80/20 by subject."""
    load = dict(skip_bad=skip_bad, demo_count=demo_count, seed=data_seed)
    if data == "demo":  # a held-out split as large as the training one, so --n 2000 has 2000 reals to match
        count = demo_count or dataset.DEMO_COUNT["train"]
        return Split(dataset.load_slices("demo", class_name, "train", resolution, **load),
                     dataset.load_slices("demo", class_name, "test", resolution, **{**load, "demo_count": count}), [])
    root = Path(data)
    if (root / "train" / class_name).is_dir() and (root / "test" / class_name).is_dir():
        train = dataset.load_slices(data, class_name, "train", resolution, **load)
        test = dataset.load_slices(data, class_name, "test", resolution, **load)
        shared = set(train.subjects) & set(test.subjects)
        if not shared:
            return Split(train, test, [])
        pooled = dataset.SliceSet(torch.cat([train.images, test.images]), train.subjects + test.subjects,
                                  class_name, "train", f"{train.source} + {test.source}")
        return Split(*_resplit(pooled), [
            f"{len(shared)} {class_name} subjects (e.g. {min(shared)}) have slices in both {root}/train and "
            f"{root}/test; re-split by subject, {TEST_FRACTION:.0%} of subjects held out"])
    pooled = dataset.load_slices(data, class_name, "train", resolution, **load)
    return Split(*_resplit(pooled), [
        f"{root} has no train/{class_name} and test/{class_name} folders: {TEST_FRACTION:.0%} of the {class_name} "
        "subjects held out; a generator trained on this folder saw them too, so they are not held out from it"])


def data_key(data: str, demo_count: int | None, data_seed: int) -> str:
    """Names the real data in the encoder cache: the demo set's size and seed, or a folder's absolute path."""
    if data == "demo":
        return f"demo-n{demo_count or dataset.DEMO_COUNT['train']}-s{data_seed}"
    path = str(Path(data).resolve())
    return f"{Path(path).name}-{hashlib.sha256(path.encode()).hexdigest()[:10]}"


def split_loader(data: str, resolution: int, demo_count: int | None, data_seed: int, skip_bad: bool):
    """class name -> its Split, loaded once and its notes printed then."""
    loaded: dict[str, Split] = {}

    def split_of(class_name: str) -> Split:
        if class_name not in loaded:
            loaded[class_name] = load_split(data, class_name, resolution, demo_count, data_seed, skip_bad)
            for note in loaded[class_name].notes:
                print(f"note: {note}")
        return loaded[class_name]
    return split_of


def check_demo_count(data: str, demo_count: int | None) -> None:
    if demo_count is not None and data != "demo":
        raise UserError(f"--demo-count applies to the demo set, not to --data {data}; leave it out")


# ----------------------------------------------------------------------------- what is evaluated

@dataclass
class Candidate:
    """One class's images to evaluate: a checkpoint's generator, or images made elsewhere (--images)."""
    class_name: str
    resolution: int          # of the images evaluated
    load_resolution: int     # real slices are decoded at this size, then area-downsampled to `resolution`
    data: str
    demo_count: int | None   # None: the demo set's default
    data_seed: int
    checkpoint: str | None = None
    images_path: str | None = None
    images_seen: int | None = None
    generator: modules.Generator | None = None
    images: torch.Tensor | None = None  # uint8 (N, 1, R, R), for --images
    parent: dict = field(default_factory=dict)  # the checkpoint's record of its parent (train.py --init-from)

    @property
    def data_key(self) -> str:
        return data_key(self.data, self.demo_count, self.data_seed)

    def images_to_evaluate(self, n: int | None, seed: int) -> torch.Tensor:
        """uint8 (N, 1, R, R): the given images, or `n` (default 2000) generated ones (sampling.generate)."""
        res = f"{self.resolution}x{self.resolution}"
        if self.generator is None:
            print(f"{self.class_name} images {self.images_path}: {len(self.images)} images at {res}")
            return self.images
        start = time.perf_counter()
        fake = sampling.generate(self.generator, n or 2000, seed)
        print(f"{self.class_name} generator {self.checkpoint}: {len(fake)} images at {res} in "
              f"{time.perf_counter() - start:.1f} s")
        return fake

    def noise_share(self, seed: int) -> dict | None:
        """The generator's sampling.noise_share (None for given images: no generator to ask)."""
        return None if self.generator is None else sampling.noise_share(self.generator, seed=seed)


def checkpoint_candidate(path: str, data: str | None, demo_count: int | None,
                         device: str | torch.device = "cpu") -> Candidate:
    """The generator of a checkpoint, with the real data it is compared with (its own, unless --data `data`)."""
    state = modules.Checkpoint.load(path)  # read once
    if state.class_name not in CLASSES:
        raise UserError(f"--ckpt {path} is a --class {state.class_name} parent, not a class generator; evaluate its "
                        f"children (python train.py --class AD --init-from {path}, and NC)")
    g = state.ema_generator(device, path)
    cls, res, tc = g.class_name, g.resolution, {"data": "demo", "seed": 0, **state.train_config}
    if res < MIN_RES:
        raise UserError(f"{path} generates {res}x{res} images; evaluation needs {MIN_RES}x{MIN_RES} or more "
                        "(resume its training)")
    data = data or tc["data"]
    check_demo_count(data, demo_count)
    demo_count = demo_count or tc.get("demo_count")
    if data != tc["data"]:
        print(f"note: {path} was trained on {tc['data']}; its training slices are taken from {data} here")
    elif data == "demo" and demo_count != tc.get("demo_count"):
        print(f"note: {path} was trained on {tc.get('demo_count') or dataset.DEMO_COUNT['train']} demo slices "
              f"per class, here --demo-count {demo_count}: the memorization audit does not see its training set")
    data_seed = core.demo_seed(tc)  # the demo set it trained on
    # Reals decoded at the resolution train.py loaded (the model's final one), area-downsampled like its reals.
    return Candidate(cls, res, state.model_config["resolution"], data, demo_count, data_seed, checkpoint=path,
                     images_seen=state.images_seen, generator=g, parent=dict(state.parent))


def check_pair(a: Candidate, b: Candidate) -> None:
    """Two checkpoints to compare: one per class, of one resolution, compared with one data set."""
    if a.class_name == b.class_name:
        raise UserError(f"--ckpt {a.checkpoint} and {b.checkpoint} are both {a.class_name} checkpoints; "
                        "pass one AD and one NC checkpoint")
    for what, x, y in (("generates", f"{a.resolution}x{a.resolution}", f"{b.resolution}x{b.resolution}"),
                       ("was built for", a.load_resolution, b.load_resolution),
                       ("is compared with the data", a.data_key, b.data_key)):
        if x != y:
            raise UserError(f"{a.checkpoint} {what} {x}, {b.checkpoint} {y}; the class comparison needs them "
                            "alike: evaluate them one at a time (or pass --data/--demo-count)")


def shared_parent(a: Candidate, b: Candidate) -> str | None:
    """The sha256 of the parent both candidates' checkpoints were fine-tuned from, else None (also for --images):
    modules.shared_parent, which reads only the `parent` records that candidates carry as checkpoints do."""
    return modules.shared_parent(a, b)


def _bad_images(path, problem: str) -> UserError:
    return UserError(f"--images {path}: {problem}")


def _check_size(path, h: int, w: int) -> int:
    if h != w:
        raise _bad_images(path, f"{w}x{h} is not square; pass square slices (pad or crop them) of one size")
    if h < MIN_RES or h & (h - 1):
        raise _bad_images(path, f"{h}x{h} is not a power of two >= {MIN_RES}; resize the images to e.g. 64x64")
    return h


def read_image_folder(folder: Path) -> torch.Tensor:
    """uint8 (N, 1, R, R) from the PNG/JPEG files of `folder` (sorted by name; grayscale, or converted to it)."""
    files = sorted(p for p in folder.iterdir()
                   if p.is_file() and p.suffix.lower() in dataset.IMAGE_SUFFIXES and not p.name.startswith("."))
    if not files:
        raise _bad_images(folder, "no .png, .jpg or .jpeg files in this folder; pass the folder holding the images")
    images, first = [], None
    for f in files:
        try:
            with Image.open(f) as im:
                img = np.asarray(im.convert("L"))
        except Exception as e:  # truncated, corrupt, or not an image
            raise _bad_images(f, f"not a readable image ({type(e).__name__}); remove or replace it") from None
        res = _check_size(f, *img.shape)
        if first is None:
            first = (f, res)
        elif res != first[1]:
            raise _bad_images(f, f"{res}x{res}, but {first[0].name} is {first[1]}x{first[1]}; "
                                 "pass images of one size")
        images.append(img)
    return torch.from_numpy(np.stack(images))[:, None]


def read_image_tensor(path: Path) -> torch.Tensor:
    """uint8 (N, 1, R, R) from a tensor file of shape (N, 1, R, R) or (N, R, R)."""
    hint = "save a uint8 tensor (N, 1, R, R) with values 0..255 with torch.save"
    try:
        x = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated, not a torch file, or pickled objects other than tensors
        raise _bad_images(path, f"not a readable tensor file ({type(e).__name__}); {hint}") from None
    if not isinstance(x, torch.Tensor):
        raise _bad_images(path, f"holds a {type(x).__name__}, not a tensor; {hint}")
    if x.dtype != torch.uint8:
        raise _bad_images(path, f"holds a {x.dtype} tensor, not uint8; convert it, e.g. from [-1, 1] with "
                                "((x + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)")
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4 or x.shape[1] != 1:
        raise _bad_images(path, f"holds a tensor of shape {tuple(x.shape)}; pass (N, 1, R, R) or (N, R, R)")
    _check_size(path, *x.shape[-2:])
    return x.contiguous()


def images_candidate(path: str, class_name: str, n: int | None, data: str | None,
                     demo_count: int | None) -> Candidate:
    """Images made elsewhere (--images `path`; the first `n`, default all), compared with the real slices of
    `class_name` from `data` (default demo)."""
    path = Path(path)
    if path.is_dir():
        images = read_image_folder(path)
    elif path.suffix.lower() == ".pt":
        images = read_image_tensor(path)
    else:
        raise _bad_images(path, "neither a folder nor a .pt file; pass a folder of PNG/JPEG slices or a .pt file")
    count = n or len(images)
    if len(images) < max(count, 16):
        raise _bad_images(path, f"{len(images)} images, " + (f"fewer than --n {count}; leave --n out to use all"
                                                             if n else "too few; pass 16 or more (2000 for "
                                                                       "figures worth reporting)"))
    data = data or "demo"
    check_demo_count(data, demo_count)
    res = images.shape[-1]
    return Candidate(class_name, res, res, data, demo_count, 0, images_path=str(path.resolve()),
                     images=images[:count])
