"""How good are a checkpoint's images? Offline metrics against real slices, each beside its real-vs-real floor.

    python evaluate.py --ckpt runs/AD/checkpoint.pt        # the run's own data (demo), 2000 samples -> runs/AD/eval/
    python evaluate.py --ckpt runs/NC/checkpoint.pt --data /data/ADNI --n 5000 --out outputs/eval_NC
    python evaluate.py --ckpt runs/AD/checkpoint.pt runs/NC/checkpoint.pt   # both, and AD vs NC -> outputs/eval/
    python evaluate.py --images my_slices/ --class AD      # another generator's PNGs (or a .pt uint8 tensor)
    python evaluate.py --train-encoder --data /data/ADNI --resolution 64    # (re)train only the AD-vs-NC encoder
    python evaluate.py --ckpt runs/AD/checkpoint.pt --inception-weights weights-inception-2015-12-05-6726825d.pth

Two columns per metric: "generated" compares the generator's samples with its class's real training slices;
"real test" compares held-out real slices of that class (other subjects) with the same training slices, with
the same sample counts: the value a perfect generator would reach. Nothing is downloaded:
- SWD: sliced Wasserstein distance of 7x7 patches of a Laplacian pyramid, down to 16x16 (ProGAN); x1e3.
- An encoder, a small CNN trained here to tell AD from NC on the real training split (cached; --train-encoder
  retrains it), gives the feature space of the Frechet distance, KID and k-NN precision/recall (k = 3), and
  class fidelity: the fraction of samples the encoder assigns to the generator's class.
- MS-SSIM of random pairs: diversity (lower = more diverse). Memorization audit: distance of each image to
  its nearest training slice (or its mirror image), in encoder features and in pixels, and the fraction
  closer than the 1st percentile of held-out real slices; the closest pairs go to memorization_pairs.png.
- Biomarkers of atrophy, per image (dataset.csf_fraction, dataset.ventricle_fraction): mean and SD of the
  generated images, the real training and the held-out slices, and the Wasserstein-1 distance of their
  distributions to the training one; and their means at a stricter and a looser darkness cut (by_dark), which
  tell ventricles drawn smaller than real from ventricles drawn at their size but lighter.
- Inception FID only with --inception-weights (torch-fidelity's InceptionV3 file) and torch-fidelity installed.
Generated image k has the latent z of seed --seed + k (predict.py's seeds) and random noise, as in training.
The output folder (--out, default <checkpoint folder>/eval) gets metrics.json and the PNG.

With an AD and an NC checkpoint, each class goes to <out>/AD and <out>/NC (default out: outputs/eval), and
<out>/class_difference.json compares the classes: AD - NC of each biomarker's mean, with a bootstrap 95%
interval and Cohen's d, in the generated images and in the real training slices; the difference counts as
reproduced when the generated one has the real one's sign and at least half its size. When both checkpoints were
fine-tuned from one parent (train.py --init-from), generated image k of each class are partners (same z, same
noise) and class_difference.json gets "pairs": the share of seeds whose AD partner has more CSF, the mean paired
biomarker differences beside the real ones, and the SSIM of partners against that of random AD/NC pairs.
--images evaluates images made elsewhere as the samples of --class, against --data (default demo).
"""
from __future__ import annotations

import argparse
import os
import time

import torch

import core
import dataset
import evaldata
import modules
import report
from core import UserError as InputError, write_json_atomic as write_json  # noqa: F401 (re-exported)
from core import CLASSES, UserError, file_sha256  # noqa: F401 (re-exported)
from dataset import BIOMARKERS, IMAGE_SUFFIXES, biomarker_values  # noqa: F401 (re-exported)
from encoder import (ENCODER_FORMAT, ENCODER_VERSION, Encoder, augment, encoder_outputs,  # noqa: F401 (re-exported)
                     encoder_path, evaluation_columns, get_encoder, inception_fid, inception_metric, load_encoder,
                     save_encoder, torch_fidelity_available, train_encoder)
from evaldata import (TEST_FRACTION, Candidate, Split, check_demo_count, checkpoint_candidate,  # noqa: F401
                      data_key, images_candidate, load_split, read_image_folder, read_image_tensor, split_loader,
                      subject_split)
from metrics import (BATCH, KID_SUBSET_SIZE, KID_SUBSETS, KNN_K, MEMO_PERCENTILE, MIN_RES,  # noqa: F401 (re-exported)
                     MSSSIM_PAIRS, PIXEL_RES, SWD_DIRS, SWD_PATCH, SWD_PATCHES, SWD_REPEATS, Audit, _batches,
                     _device, class_difference, class_fidelity, frechet_distance, kernel_distance,
                     knn_precision_recall, laplacian_pyramid, memorization_audit, metrics_of, ms_ssim_diversity,
                     msssim_settings, nearest, pixels, pyr_up, sliced_wasserstein, swd, with_mirrors)
from report import MEMO_PAIRS_SHOWN, print_class_difference, print_table, verdict  # noqa: F401 (re-exported)
from sampling import generate  # noqa: F401 (re-exported)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--ckpt", nargs="+", metavar="CKPT",
                   help="checkpoint to evaluate (its class, resolution and training data come from it); or two, "
                        "one AD and one NC, to also compare the classes")
    p.add_argument("--images", metavar="PATH",
                   help="evaluate these images instead of a checkpoint: a folder of PNG/JPEG slices (square, one "
                        "power-of-two size >= 16) or a .pt file of a uint8 tensor (N, 1, R, R); needs --class")
    p.add_argument("--class", dest="class_name", metavar="AD|NC", help="with --images: the class the images are of")
    p.add_argument("--data", help="'demo' or an ADNI/NIfTI folder (default: the checkpoint's training data, else demo)")
    p.add_argument("--n", type=int, help="generated images (default 2000); with --images: the first N (default all)")
    p.add_argument("--out", help="folder for metrics.json and memorization_pairs.png (default <ckpt folder>/eval; "
                                 "two checkpoints: outputs/eval, with AD/ and NC/ in it; "
                                 "--images: outputs/eval_images)")
    p.add_argument("--seed", type=int, default=0,
                   help="seeds the latents (seeds SEED..SEED+n-1), subsets, patches, projections, bootstrap and "
                        "the encoder")
    p.add_argument("--encoder", help="encoder checkpoint to use, or to create if missing "
                                     "(default: one per data set, resolution and seed in the cache folder)")
    p.add_argument("--train-encoder", action="store_true",
                   help="(re)train the encoder and overwrite its file; alone (no --ckpt/--images) only that")
    p.add_argument("--encoder-steps", type=int, default=1000,
                   help="batches of 64 slices the encoder trains on (default 1000)")
    p.add_argument("--resolution", type=int,
                   help="with --train-encoder and no --ckpt: the encoder's resolution (default 64)")
    p.add_argument("--inception-weights", metavar="PATH",
                   help="torch-fidelity's InceptionV3 weights file (weights-inception-2015-12-05-6726825d.pth) "
                        "to add the standard FID; needs torch-fidelity installed (slow on a CPU)")
    p.add_argument("--demo-count", type=int,
                   help="demo slices per class in each of train and test (default: the checkpoint's, else 2000)")
    p.add_argument("--skip-bad", action="store_true", help="skip unreadable data files instead of stopping")
    p.add_argument("--device", help="cpu, cuda or cuda:N (default: CUDA when present)")
    return p.parse_args(argv)


def check_args(args: argparse.Namespace) -> None:
    """Refuse unusable flags before any slow work."""
    ckpts = args.ckpt or []
    if args.images is not None and ckpts:
        raise UserError("pass --ckpt or --images, not both; evaluate a checkpoint and an image set one at a time")
    if not ckpts and args.images is None and not args.train_encoder:
        raise UserError("pass --ckpt CHECKPOINT (or --images PATH --class AD|NC) to evaluate, "
                        "or --train-encoder to only train the encoder")
    if len(ckpts) > 2:
        raise UserError(f"--ckpt got {len(ckpts)} checkpoints; pass one, or two: one AD and one NC")
    for ckpt in ckpts:
        if not os.path.isfile(ckpt):
            raise UserError(f"checkpoint {ckpt} does not exist; pass the checkpoint.pt of a train.py run")
    if args.images is not None:
        if args.class_name is None:
            raise UserError(f"--images {args.images} needs --class AD or --class NC: the class the images are of")
        if not os.path.exists(args.images):
            raise UserError(f"--images {args.images} does not exist; pass a folder of PNG/JPEG slices or a .pt file "
                            "holding a uint8 tensor (N, 1, R, R)")
    if args.class_name is not None:
        if args.images is None:
            raise UserError("--class applies to --images; a checkpoint knows its class, so leave --class out")
        if args.class_name not in CLASSES:
            raise UserError(f"--class {args.class_name} is not a class; pass --class AD or --class NC")
    if args.inception_weights is not None and not os.path.isfile(args.inception_weights):
        raise UserError(f"--inception-weights {args.inception_weights} does not exist; pass torch-fidelity's "
                        "weights-inception-2015-12-05-6726825d.pth, or leave the flag out")
    if args.n is not None and args.n < 16:
        raise UserError(f"--n {args.n} is too few; pass --n 16 or more (2000 for figures worth reporting)")
    if args.encoder_steps < 10:  # OneCycleLR's warm-up of 20% needs a few whole steps
        raise UserError(f"--encoder-steps {args.encoder_steps} is too few; pass 10 or more (default 1000)")
    if (ckpts or args.images is not None) and args.resolution is not None:
        raise UserError("--resolution applies to --train-encoder alone; the checkpoint or the images fix it")
    if args.demo_count is not None and args.demo_count < 1:
        raise UserError(f"--demo-count {args.demo_count} must be at least 1")


def candidates_of(args: argparse.Namespace, device: torch.device) -> list[Candidate]:
    """What to evaluate, AD before NC; two checkpoints must be one of each class, at one resolution, on one data set."""
    if args.images is not None:
        return [images_candidate(args.images, args.class_name, args.n, args.data, args.demo_count)]
    found = sorted((checkpoint_candidate(p, args.data, args.demo_count, device) for p in args.ckpt),
                   key=lambda c: CLASSES.index(c.class_name))
    if len(found) == 2:
        evaldata.check_pair(*found)
    return found


def output_folders(args: argparse.Namespace, candidates: list[Candidate]) -> tuple[str, list[str]]:
    """The output folder, and one per candidate (the same one unless there are two classes)."""
    if args.images is not None:
        base = args.out or os.path.join("outputs", "eval_images")
    elif len(candidates) == 1:
        base = args.out or os.path.join(os.path.dirname(os.path.abspath(candidates[0].checkpoint)), "eval")
    else:
        base = args.out or os.path.join("outputs", "eval")
        return core.writable_folder(base), [core.writable_folder(os.path.join(base, c.class_name))
                                            for c in candidates]
    return core.writable_folder(base), [core.writable_folder(base)]


def evaluate_one(c: Candidate, args: argparse.Namespace, out: str, split: Split, encoder: Encoder, enc_info: dict,
                 inception, device: torch.device) -> tuple[dict, dict, torch.Tensor]:
    """Every metric of one candidate; writes metrics.json and memorization_pairs.png to `out`.

    Returns the report, the biomarker values of the evaluated images and of the real slices, and the images."""
    start = time.perf_counter()
    json_path, png_path = os.path.join(out, "metrics.json"), os.path.join(out, "memorization_pairs.png")
    if os.path.exists(json_path):
        print(f"note: {json_path} exists and will be overwritten (a re-evaluation)")
    fake = c.images_to_evaluate(args.n, args.seed)
    train_all, test_all = split.train.at_resolution(c.resolution), split.test.at_resolution(c.resolution)
    n, m = len(fake), min(len(fake), len(test_all), len(train_all))  # m: images per side in SWD, FD, KID, P/R
    gen = torch.Generator().manual_seed(args.seed)
    pick = torch.randperm(len(train_all), generator=gen)[:m]
    ref, test = train_all[pick], test_all[torch.randperm(len(test_all), generator=gen)[:m]]
    print(f"reference: {len(ref)} of {len(train_all)} training slices; floor: {len(test)} of {len(test_all)} "
          f"held-out slices; data: {split.train.source}")
    if m < n:
        print(f"note: only {len(test_all)} held-out and {len(train_all)} training slices, so SWD, Frechet distance, "
              f"KID and precision/recall use the first {m} of the {n} images (the other metrics use all)")
    bank = with_mirrors(train_all)  # the audit's training set: every training slice and its mirror image
    columns, audit = evaluation_columns(fake, test, bank, pick, encoder, c.class_name, m, args.seed)
    values = biomarker_values(generated=fake, real_train=train_all, real_test=test_all)
    dark = {"generated": dataset.dark_profile(fake), "real_train": dataset.dark_profile(train_all)}
    closest = audit.distance.argsort()[:MEMO_PAIRS_SHOWN]
    modules.save_image_grid(torch.cat([fake[closest], bank[audit.index[closest]]]).float() / 127.5 - 1, png_path,
                            nrow=len(closest))
    counts = dict(n_generated=n, n_compared=m, n_reference=m, n_real_train=len(train_all), n_real_test=len(test_all))
    fid = inception_fid(inception, ref, {"generated": fake[:m], "real_test": test}, device)
    r = report.metrics_report(c, split, args.seed, counts, enc_info, columns, values, dark, fid, png_path,
                              c.noise_share(args.seed))
    r["elapsed_seconds"] = round(time.perf_counter() - start, 1)
    print_table(r)
    write_json(r, json_path)
    print(f"\nwrote {json_path} and {png_path} (top row: the {len(closest)} evaluated images nearest to a training "
          f"slice; below: that slice) in {r['elapsed_seconds']} s")
    return r, values, fake


def train_encoder_only(args: argparse.Namespace, device: torch.device) -> None:
    """--train-encoder without --ckpt or --images: the encoder of --data at --resolution, and nothing else."""
    res, data = args.resolution or 64, args.data or "demo"
    if res < MIN_RES or res & (res - 1):
        raise UserError(f"--resolution {res} must be a power of two >= {MIN_RES}")
    check_demo_count(data, args.demo_count)
    key = f"{data_key(data, args.demo_count, 0)}-r{res}-s{args.seed}"
    get_encoder(encoder_path(args.encoder, key), key, res, split_loader(data, res, args.demo_count, 0, args.skip_bad),
                args.seed, args.encoder_steps, device, retrain=True)


def evaluate(args: argparse.Namespace) -> None:
    """The command: check the flags, then evaluate each candidate, then compare the classes when there are two."""
    start = time.perf_counter()
    check_args(args)
    device = core.choose_device(args.device)
    if not args.ckpt and args.images is None:
        return train_encoder_only(args, device)
    inception = inception_metric(args.inception_weights, device)  # a bad weights file stops us here
    candidates = candidates_of(args, device)
    base, outs = output_folders(args, candidates)
    first = candidates[0]  # two candidates share resolution and data (candidates_of checks)
    split_of = split_loader(first.data, first.load_resolution, first.demo_count, first.data_seed, args.skip_bad)
    splits = {c.class_name: split_of(c.class_name) for c in candidates}
    key = f"{first.data_key}-r{first.resolution}-s{args.seed}"
    encoder, enc_info = get_encoder(encoder_path(args.encoder, key), key, first.resolution, split_of, args.seed,
                                    args.encoder_steps, device, retrain=args.train_encoder)
    results = {}
    for i, (c, out) in enumerate(zip(candidates, outs)):
        inception = inception_metric(args.inception_weights, device) if i else inception  # real features anew
        results[c.class_name] = evaluate_one(c, args, out, splits[c.class_name], encoder, enc_info, inception, device)
    if len(candidates) == 2:
        report.compare_classes(results, base, args.seed, start, evaldata.shared_parent(*candidates))


def main(argv: list[str] | None = None) -> None:
    core.main(evaluate, parse_args(argv))


if __name__ == "__main__":
    main()
