"""What evaluate.py prints and saves: metrics.json's layout, the metrics table beside its real-vs-real floor,
and the AD - NC class comparison in numbers and in words (class_difference.json), with the partners of two
children of one parent in it when the checkpoints are such children."""
from __future__ import annotations

import os
import time

import core
import dataset
import sampling
from evaldata import Candidate, Split
from metrics import (KID_SUBSET_SIZE, KID_SUBSETS, KNN_K, MEMO_PERCENTILE, MIN_RES, MSSSIM_PAIRS, PIXEL_RES,
                     SWD_DIRS, SWD_PATCH, SWD_PATCHES, SWD_REPEATS, biomarker_comparison, class_difference,
                     dark_comparison, msssim_settings, paired_comparison, relative_difference)

MEMO_PAIRS_SHOWN = 12  # evaluated images shown over their nearest training slices in memorization_pairs.png
ENCODER_FIELDS = ("path", "sha256", "test_accuracy", "class_accuracy", "blurred_sigma", "blurred_class_accuracy",
                  "n_train", "n_test", "steps", "seed", "data", "trained_now")


def settings(res: int, m: int) -> dict:
    """The metrics' settings at resolution `res` with `m` images per side, for metrics.json."""
    side = min(res, PIXEL_RES)
    return {"swd": {"patch": SWD_PATCH, "patches_per_image": SWD_PATCHES, "repeats": SWD_REPEATS,
                    "directions_per_repeat": SWD_DIRS, "min_resolution": MIN_RES},
            "kid": {"subsets": KID_SUBSETS, "subset_size": min(KID_SUBSET_SIZE, m)},
            "knn_k": KNN_K, "ms_ssim": {**msssim_settings(res), "pairs": MSSSIM_PAIRS},
            "memorization": {"percentile": MEMO_PERCENTILE, "bank": "training slices and their mirrors",
                             "pixel_distance": f"RMS difference of intensities in [0, 1] at {side}x{side}"},
            "biomarkers": "dataset.csf_fraction and dataset.ventricle_fraction of every evaluated image and every "
                          "real train and test slice; wasserstein: 1-D Wasserstein-1 distance to the real train "
                          "values; by_dark: their means at the dark cuts of dataset.DARK_LEVELS (the biomarkers use "
                          "0.45)"}


def metrics_report(c: Candidate, split: Split, seed: int, counts: dict[str, int], enc_info: dict, columns: dict,
                   values: dict, dark: dict, inception_fid: dict, png_path: str, noise_share: dict | None) -> dict:
    """metrics.json of one candidate. counts: n_generated, n_compared, n_reference, n_real_train, n_real_test;
    columns: "generated" and "real_test" -> metrics.metrics_of numbers; values: dataset.biomarker_values of the
    generated images and the real train and test slices; dark: "generated" and "real_train" -> their
    dataset.dark_profile; noise_share: Candidate.noise_share."""
    return {
        "checkpoint": os.path.abspath(c.checkpoint) if c.checkpoint else None, "images": c.images_path,
        "class": c.class_name, "images_seen": c.images_seen, "resolution": c.resolution, "seed": seed,
        "data": c.data, "data_source": split.train.source,
        "demo_count": (c.demo_count or dataset.DEMO_COUNT["train"]) if c.data == "demo" else None,
        "data_seed": c.data_seed, "data_notes": split.notes, **counts,
        "encoder": {k: enc_info[k] for k in ENCODER_FIELDS},
        "settings": settings(c.resolution, counts["n_compared"]),
        "columns": {"generated": "evaluated images vs training slices",
                    "real_test": "held-out real slices (other subjects) vs the same training slices"},
        "metrics": columns,
        "biomarkers": {name: {**biomarker_comparison(v["generated"], v["real_train"], v["real_test"]),
                              "by_dark": dark_comparison(dark["generated"][name], dark["real_train"][name],
                                                         dataset.DARK_LEVELS)}
                       for name, v in values.items()},
        "inception_fid": inception_fid,
        "noise_share": noise_share,  # the generator's own, not its images': how much of its variety w steers
        "memorization_png": png_path,
    }


def _interval(d: dict) -> str:
    return f"{d['difference']:+.3f} [{d['ci95'][0]:.3f}, {d['ci95'][1]:.3f}]"


def verdict(name: str, r: dict) -> str:
    """One biomarker's class comparison in words."""
    gen, real = r["generated"], r["real"]
    head = f"{name}: generated AD-NC {_interval(gen)} vs real {real['difference']:+.3f}"
    if r["ratio"] is None:
        return f"{head}: the real classes do not differ, so there is nothing to reproduce"
    sign = "same sign" if r["ratio"] > 0 else "opposite sign" if r["ratio"] < 0 else "no generated difference"
    size = f", {r['ratio']:.0%} of the real size" if r["ratio"] > 0 else ""
    zero = " (the generated interval includes 0)" if gen["ci95"][0] <= 0 <= gen["ci95"][1] else ""
    return f"{head}: {sign}{size}: {'reproduced' if r['reproduced'] else 'not reproduced'}{zero}"


def print_class_difference(r: dict, n: dict[str, int], n_real: dict[str, int]) -> None:
    print(f"\nAD - NC difference of the mean, bootstrap 95% interval and Cohen's d: {n['AD']} / {n['NC']} generated "
          f"images against {n_real['AD']} / {n_real['NC']} real training slices")
    print(f"{'biomarker':<19} {'generated AD - NC':<36} {'real AD - NC':<36} {'ratio':>6}  reproduced")
    for name in dataset.BIOMARKERS:
        b = r[name]
        cells = [f"{d['difference']:+.4f} [{d['ci95'][0]:+.4f}, {d['ci95'][1]:+.4f}] d {d['cohens_d']:+.2f}"
                 for d in (b["generated"], b["real"])]
        ratio = "n/a" if b["ratio"] is None else f"{b['ratio']:.0%}"
        print(f"{name:<19} {cells[0]:<36} {cells[1]:<36} {ratio:>6}  {'yes' if b['reproduced'] else 'no'}")
    f = r["class_fidelity"]
    print(f"class fidelity (encoder): AD {f['AD']:.3f}, NC {f['NC']:.3f}, mean {f['mean']:.3f}\n")
    for name in dataset.BIOMARKERS:
        print(verdict(name, r[name]))
    yes = [name for name in dataset.BIOMARKERS if r[name]["reproduced"]]
    no = [name for name in dataset.BIOMARKERS if not r[name]["reproduced"]]
    if not no:
        print("The generators reproduce the real AD-NC difference in every biomarker.")
    elif not yes:
        print("The generators do not reproduce the real AD-NC difference in any biomarker.")
    else:
        print(f"The generators reproduce the real AD-NC difference in {', '.join(yes)}, not in {', '.join(no)}.")


def print_table(r: dict) -> None:
    """The metrics, generated beside real test, with what to aim for."""
    gen, floor = r["metrics"]["generated"], r["metrics"]["real_test"]
    rows = [(f"SWD x1e3, {k}{'px' if k != 'mean' else ''}", gen["swd_x1e3"][k], floor["swd_x1e3"][k], "lower")
            for k in gen["swd_x1e3"]]
    rows += [("Frechet distance (encoder)", gen["frechet_distance"], floor["frechet_distance"], "lower"),
             ("KID (encoder)", gen["kid"], floor["kid"], "lower"),
             (f"precision (k={KNN_K})", gen["precision"], floor["precision"], "higher"),
             (f"recall (k={KNN_K})", gen["recall"], floor["recall"], "higher"),
             (f"class fidelity ({r['class']})", gen["class_fidelity"], floor["class_fidelity"], "higher"),
             ("MS-SSIM of random pairs", gen["ms_ssim"], floor["ms_ssim"], "near real; higher = less diverse"),
             ("nearest-train distance, features", gen["nn_distance_features_median"],
              floor["nn_distance_features_median"], "near real; lower = nearer copies"),
             ("nearest-train distance, pixels RMS", gen["nn_distance_pixels_median"],
              floor["nn_distance_pixels_median"], "near real; lower = nearer copies"),
             (f"nearer than {MEMO_PERCENTILE:g}% of test, features", gen["memorized_fraction_features"],
              floor["memorized_fraction_features"], "lower; above real = memorizing"),
             (f"nearer than {MEMO_PERCENTILE:g}% of test, pixels", gen["memorized_fraction_pixels"],
              floor["memorized_fraction_pixels"], "lower; above real = memorizing")]
    inc = r["inception_fid"]
    inception = ("skipped", "", inc["skipped"]) if "skipped" in inc else \
        (f"{inc['generated']:.4f}", f"{inc['real_test']:.4f}", "lower")
    what = "generated" if r["checkpoint"] else "given"
    print(f"\n{r['class']} at {r['resolution']}x{r['resolution']}: {r['n_compared']} {what} and {r['n_compared']} "
          f"held-out real slices, each against {r['n_reference']} training slices")
    print(f"{'metric':<37} {'generated':>10} {'real test':>10}  aim")
    for name, a, b, aim in rows:
        print(f"{name:<37} {a:>10.4f} {b:>10.4f}  {aim}")
    for name, b in r["biomarkers"].items():
        train = b["real_train"]["mean"]
        floor_error = relative_difference(b["real_test"]["mean"], train)
        errors = ["n/a" if e is None else f"{e:+.1%}" for e in (b["relative_error"], floor_error)]
        print(f"{name + ', mean':<37} {b['generated']['mean']:>10.4f} {b['real_test']['mean']:>10.4f}  "
              f"near train {train:.4f}")
        print(f"{name + ', mean vs train':<37} {errors[0]:>10} {errors[1]:>10}  near 0")
        print(f"{name + ', W1 to train':<37} {b['wasserstein']:>10.4f} {b['wasserstein_floor']:>10.4f}  lower")
        q, k = b["quantiles"], b["quantiles"]["at"].index(0.9)  # the upper tail, where the widest CSF goes missing
        print(f"{name + ', 90th percentile':<37} {q['generated'][k]:>10.4f} {q['real_test'][k]:>10.4f}  "
              f"near train {q['real_train'][k]:.4f}")
        by = b["by_dark"]
        errors = " / ".join("n/a" if e is None else f"{e:+.0%}" for e in by["relative_error"])
        print(f"{name + ', vs train by cut':<37} {errors:>21}  at dark {' / '.join(f'{d:g}' for d in by['at'])}; "
              f"alike = as dark as real; short at a strict cut, not at the loosest = lighter, not smaller")
    print(f"{'Inception FID':<37} {inception[0]:>10} {inception[1]:>10}  {inception[2]}")
    if r.get("noise_share"):
        share = r["noise_share"]
        print(f"variety carried by the noise inputs at fixed w: {sampling.noise_share_text(share)} of the pixel "
              f"variance over {share['n_w']} w x {share['draws']} noise draws; w (truncation, interpolation, style "
              f"mixing, the W plot) steers the other {1 - share['total']:.0%}")


# ----------------------------------------------------------------------------- the class comparison

def compare_classes(results: dict[str, tuple], base: str, seed: int, start: float, parent: str | None) -> dict:
    """class_difference.json from both classes' (report, biomarker values, generated images), and its table and
    verdicts. parent: the sha256 of the checkpoint both generators were fine-tuned from (else None): then image k of
    each class (seed + k, the same z and noise: sampling.generate) are partners, compared in a "pairs" section."""
    reports = {cls: r for cls, (r, _, _) in results.items()}
    values = {cls: v for cls, (_, v, _) in results.items()}
    diff = class_difference(values, {cls: r["metrics"]["generated"]["class_fidelity"] for cls, r in reports.items()},
                            seed)
    if parent:
        paired = {name: {cls: values[cls][name]["generated"] for cls in values} for name in dataset.BIOMARKERS}
        diff["pairs"] = {"parent_sha256": parent, "partners": f"generated image k of each class: seed {seed} + k, "
                                                              "the same z and the same random noise",
                         **paired_comparison(results["AD"][2], results["NC"][2], paired,
                                             {name: diff[name]["real"]["difference"] for name in paired}, seed)}
    path = os.path.join(base, "class_difference.json")
    core.write_json_atomic(diff, path)
    print(f"\nwrote {path} ({time.perf_counter() - start:.1f} s in all)")
    print_class_difference(diff, {cls: r["n_generated"] for cls, r in reports.items()},
                           {cls: r["n_real_train"] for cls, r in reports.items()})
    if parent:
        print_pairs(diff["pairs"])
    return diff


def print_pairs(p: dict) -> None:
    """The partners of two children of one parent, in numbers and in words."""
    print(f"\nPartners: {p['n_pairs']} seeds, AD and NC children of parent {p['parent_sha256'][:12]} ({p['partners']})")
    print(f"The AD partner has more CSF than its NC partner in {p['fraction_ad_more_csf']:.0%} of seeds.")
    for name in dataset.BIOMARKERS:
        d = p[name]
        print(f"{name}: mean paired AD-NC {d['mean_paired_difference']:+.4f} [{d['ci95'][0]:+.4f}, "
              f"{d['ci95'][1]:+.4f}] vs real AD-NC difference of means {d['real_difference']:+.4f}")
    gain = p["ssim_gain"]
    words = ("partners are clearly more alike than random pairs" if p["partners_more_alike"] else
             "partners are not clearly more alike than random pairs: the children do not keep one anatomy per seed")
    print(f"SSIM of partners {p['ssim_pairs']:.3f} vs random AD/NC pairs {p['ssim_random']:.3f} (gain "
          f"{gain['difference']:+.3f} [{gain['ci95'][0]:+.3f}, {gain['ci95'][1]:+.3f}]): {words}.")
