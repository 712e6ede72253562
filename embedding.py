"""Do the AD and NC generators produce their own class? Two 2D embeddings (t-SNE, or UMAP).

    python embedding.py                          # outputs/tsne_visualization.png + tsne_images.png, .csv and .json
    python embedding.py --n 200 --n-real 500 --data /data/ADNI
    python embedding.py --method umap            # umap_*.png etc.; needs umap-learn

tsne_visualization.png, the design's plot: --n latents z per class through each generator's
own mapping network to W, embedded together. The two mapping networks are separate
networks, so where their outputs fall relative to each other says nothing about AD vs NC.
When both generators were fine-tuned from one parent (train.py --init-from), a thin line joins
each seed's AD and NC w, and tsne_visualization.csv gets w_distance_to_partner, their distance
in W: how far fine-tuning moved the two children's w of one z apart (not whether the classes
were learned, which the image plot shows). The note under the plot and the printout say how much
of each generator's variety w steers at all (sampling.noise_share): the rest comes from the noise
inputs, which W does not contain.

tsne_images.png, the plot to read: generated AD and NC images (the seeds predict.py uses)
and real AD and NC training slices (--data, default the demo set) in one feature space:
every image area-downsampled to at most 32x32 (metrics.pixels, as evaluate.py's memorization
audit: intensities in [0, 1], scaled so that a distance is an RMS difference), projected on the
principal components of the real slices, then all embedded together. A generator that learned
its class puts its samples among the real slices of that class. Printed and saved in tsne_images.json: per
generator, the fraction of its samples whose nearest real slice (in PCA space) is of its own
class; the same score of each real slice against the slices of other subjects (how separable
the classes are in this space at all); and the median distance of the samples to their
nearest real slice over that of real slices to theirs (near 1: the samples lie on the data).
"""
from __future__ import annotations

import argparse
import csv
import importlib.util
import io
import json
import os

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt
from matplotlib.collections import LineCollection
import numpy as np
import torch
from sklearn.decomposition import PCA
from sklearn.manifold import TSNE

import core
import dataset
import metrics
import modules
import sampling
from core import CLASSES, UserError
from sampling import DEFAULT_CHECKPOINT

FEATURE_RES = 32       # images are compared as at most 32x32 pixels
PCA_COMPONENTS = 50    # principal components of the real slices kept
COLOURS = {"AD": "tab:red", "NC": "tab:blue"}


def embed_2d(x: np.ndarray, method: str, perplexity: float, seed: int) -> tuple[np.ndarray, str]:
    """(N, D) -> (N, 2), and a note of the method's setting (perplexity clipped for small N)."""
    if method == "umap":
        import umap  # presence checked in embedding()

        k = min(15, len(x) - 1)
        return umap.UMAP(n_neighbors=k, random_state=seed).fit_transform(x), f"UMAP, {k} neighbours"
    p = min(perplexity, max(1.0, (len(x) - 1) / 3))
    return TSNE(perplexity=p, init="pca", random_state=seed).fit_transform(x), f"t-SNE, perplexity {p:g}"


def nearest_real(query: np.ndarray, real: np.ndarray,
                 exclude: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Index of and distance to each query row's nearest real row, skipping pairs where exclude is True
    (metrics.nearest, the search evaluate.py's audit uses, on numpy rows)."""
    dist, index = metrics.nearest(torch.from_numpy(query), torch.from_numpy(real),
                                  exclude=None if exclude is None else torch.from_numpy(exclude))
    return index.numpy(), dist.numpy()


def image_table(args, gens: dict, seeds: list[int]) -> tuple[dict, torch.Tensor, str, int]:
    """Generated (the seeds) and real (a random subset) images of both classes at one common size.

    Returns per-row columns (group, label, id = seed or slice index, subject), the images' pixel rows
    (metrics.pixels at res x res: intensities in [0, 1], distances are RMS differences), the real data's
    source and res."""
    res = min([FEATURE_RES] + [g.resolution for g in gens.values()])
    rng = np.random.default_rng(args.seed)
    cols = {"group": [], "label": [], "id": [], "subject": []}
    pixels, sources = [], []
    for cls, g in gens.items():
        img = modules.to_uint8(modules.sample(g, seeds, noise_mode="random"))  # predict.py's images of these seeds
        pixels.append(metrics.pixels(img, max_res=res))  # area-downsampled, as SliceSet.at_resolution
        cols["group"] += ["generated"] * len(seeds)
        cols["label"] += [cls] * len(seeds)
        cols["id"] += seeds
        cols["subject"] += [""] * len(seeds)
    for cls, g in gens.items():
        s = dataset.load_slices(args.data, cls, split="train", resolution=g.resolution, demo_count=args.demo_count)
        idx = np.sort(rng.choice(len(s), size=min(args.n_real, len(s)), replace=False))
        pixels.append(metrics.pixels(s.images[idx], max_res=res))
        cols["group"] += ["real"] * len(idx)
        cols["label"] += [cls] * len(idx)
        cols["id"] += idx.tolist()
        cols["subject"] += [s.subjects[i] for i in idx]
        sources.append(f"{cls}: {s.source}")
    return {k: np.array(v) for k, v in cols.items()}, torch.cat(pixels), "; ".join(sources), res


def class_scores(feats: np.ndarray, cols: dict) -> tuple[np.ndarray, np.ndarray, dict]:
    """Each row's nearest real slice (for a real one: of another subject), and the summary numbers."""
    real = cols["group"] == "real"
    labels, subjects = cols["label"], cols["subject"]
    gen_i, gen_d = nearest_real(feats[~real], feats[real])
    same_subject = subjects[real][:, None] == subjects[real][None, :]  # includes each slice itself
    real_i, real_d = nearest_real(feats[real], feats[real], exclude=same_subject)
    nearest, dist = np.empty(len(feats), dtype=object), np.empty(len(feats))
    nearest[~real], dist[~real] = labels[real][gen_i], gen_d
    nearest[real], dist[real] = labels[real][real_i], real_d
    gen = {cls: ~real & (labels == cls) for cls in CLASSES}
    scores = {
        "nearest_real_is_own_class": {cls: float(np.mean(nearest[m] == cls)) for cls, m in gen.items()},
        "real_nearest_other_subject_is_own_class": float(np.mean(nearest[real] == labels[real])),
        "distance_to_nearest_real_vs_real": {cls: float(np.median(dist[m]) / np.median(dist[real]))
                                             for cls, m in gen.items()},
    }
    return nearest, dist, scores


def scatter(path: str, xy: np.ndarray, groups: list[tuple[str, np.ndarray, dict]], axis: str, title: str,
            note: str, partners: np.ndarray | None = None) -> int:
    """One scatter per (legend label, row mask, matplotlib style); axis like 't-SNE'. partners: (P, 2) row index
    pairs joined by thin lines under the points. Returns the number of lines drawn."""
    fig, ax = plt.subplots(figsize=(7.5, 7))
    lines = 0
    if partners is not None and len(partners):
        segments = LineCollection(xy[partners], colors="0.55", linewidths=0.6, alpha=0.7, zorder=0,
                                  label=f"the same seed's AD and NC w ({len(partners)})")
        lines = len(ax.add_collection(segments).get_segments())
    for label, mask, style in groups:
        ax.scatter(xy[mask, 0], xy[mask, 1], label=f"{label} ({mask.sum()})", **style)
    ax.set(title=title, xlabel=f"{axis} 1", ylabel=f"{axis} 2", xticks=[], yticks=[])
    ax.legend(loc="best", fontsize=9)
    fig.text(0.5, 0.01, note, ha="center", va="bottom", fontsize=8, wrap=True)
    fig.tight_layout(rect=(0, 0.13 if lines else 0.11, 1, 1))
    core.save_figure_atomic(fig, path, dpi=120)
    plt.close(fig)
    return lines


def write_csv(path: str, header: list[str], rows) -> None:
    text = io.StringIO(newline="")
    writer = csv.writer(text)
    writer.writerow(header)
    writer.writerows(rows)
    core.write_text_atomic(text.getvalue(), path)


def w_embedding(args, gens: dict, seeds: list[int], prefix: str, paired: bool = False) -> None:
    """The design's plot: W of both mapping networks, embedded together; `paired` (children of one parent): each
    seed's two w joined by a line, and their distance in W in the CSV."""
    w = torch.cat([sampling.styles(g, seeds, 1.0) for g in gens.values()]).numpy()
    labels = np.repeat(CLASSES, len(seeds))
    xy, how = embed_2d(w, args.method, args.perplexity, args.seed)
    axis = "UMAP" if args.method == "umap" else "t-SNE"
    path = os.path.join(args.out, f"{prefix}_visualization")
    marks = {"AD": dict(s=46, facecolors="none", edgecolors=COLOURS["AD"], linewidths=1.2),  # rings around
             "NC": dict(s=14, c=COLOURS["NC"])}                                                # dots: both visible
    n = len(seeds)
    steered = {cls: 1 - sampling.noise_share(g, seed=args.seed)["total"] for cls, g in gens.items()}
    what = (f"The same {n} z (seeds {seeds[0]}-{seeds[-1]}) through each class's own mapping network to w "
            f"({w.shape[1]}-d); {len(w)} points; {how}. w steers "
            + " / ".join(f"{v:.0%}" for v in steered.values()) + f" ({' / '.join(steered)}) of the samples' pixel "
            "variance, the noise inputs the rest, which no plot of W can show. ")
    if paired:
        distance = np.linalg.norm(w[:n] - w[n:], axis=1)
        note = (what + "Both generators were fine-tuned from one parent, so a line joins each seed's AD and NC w: "
                "its length shows how far fine-tuning moved that w from its partner (the true distances in W are in "
                f"the CSV; {axis} distorts lengths). It cannot show whether the classes were learned: see "
                f"{prefix}_images.png.")
    else:
        note = (what + "The two mapping networks are separate, so this cannot show whether the classes were "
                f"learned: see {prefix}_images.png.")
    lines = scatter(f"{path}.png", xy, [(f"{cls} generator", labels == cls, marks[cls]) for cls in CLASSES],
                    axis, f"{axis} of W: the AD and NC mapping networks' outputs", note,
                    np.stack([np.arange(n), np.arange(n, 2 * n)], axis=1) if paired else None)
    rows = ([f"{x:.4f}", f"{y:.4f}", lab, s] for (x, y), lab, s in zip(xy, labels, seeds * 2))
    if paired:
        rows = (row + [f"{d:.6f}"] for row, d in zip(rows, np.tile(distance, 2)))
    write_csv(f"{path}.csv", ["x", "y", "label", "seed"] + ["w_distance_to_partner"] * paired, rows)
    print(f"{path}.png, .csv: {len(w)} w vectors ({how}); w steers "
          + ", ".join(f"{cls} {v:.0%}" for cls, v in steered.items()) + " of the samples' pixel variance "
          "(sampling.noise_share), the noise inputs the rest")
    if paired:
        print(f"children of one parent: {lines} lines join each seed's AD and NC w; distance in W median "
              f"{np.median(distance):.3g}, range {distance.min():.3g}-{distance.max():.3g}")


def image_embedding(args, table: tuple, seeds: list[int], prefix: str) -> None:
    """The plot to read: generated and real images of both classes (image_table) in one feature space."""
    cols, pixels, source, res = table
    group, label = cols["group"], cols["label"]
    real = group == "real"
    pca = PCA(n_components=min(PCA_COMPONENTS, int(real.sum()), pixels.shape[1]), random_state=args.seed)
    feats = pca.fit(pixels[real].numpy()).transform(pixels.numpy())
    nearest, dist, scores = class_scores(feats, cols)
    xy, how = embed_2d(feats, args.method, args.perplexity, args.seed)
    own, ratio = scores["nearest_real_is_own_class"], scores["distance_to_nearest_real_vs_real"]
    verdict = (f"Nearest real slice of its own class: generated AD {own['AD']:.0%}, generated NC {own['NC']:.0%}, "
               f"real slices (other subjects) {scores['real_nearest_other_subject_is_own_class']:.0%}; "
               f"distance to it vs real-to-real: AD {ratio['AD']:.2g}x, NC {ratio['NC']:.2g}x")

    axis = "UMAP" if args.method == "umap" else "t-SNE"
    path = os.path.join(args.out, f"{prefix}_images")
    marks = {"real": dict(marker="o", s=14, alpha=0.35),
             "generated": dict(marker="X", s=42, edgecolors="black", linewidths=0.4)}
    scatter(f"{path}.png", xy,
            [(f"{grp} {cls}", (group == grp) & (label == cls), dict(c=COLOURS[cls], **marks[grp]))
             for grp in ("real", "generated") for cls in CLASSES],
            axis, f"{axis} of images: generated vs real, AD vs NC",
            f"{len(xy)} images ({(~real).sum()} generated, {real.sum()} real training slices from "
            f"{args.data or 'the demo set'}), each {res}x{res} pixels -> PCA {pca.n_components_} (fit on the "
            f"real slices) -> {how}.\n{verdict}.")
    write_csv(f"{path}.csv", ["x", "y", "group", "label", "id", "nearest_real_label", "nearest_real_distance"],
              ([f"{x:.4f}", f"{y:.4f}", *row, f"{d:.6f}"]
               for (x, y), *row, d in zip(xy, group, label, cols["id"], nearest, dist)))
    summary = {**scores, "n_generated_per_class": len(seeds),
               "n_real": {cls: int((real & (label == cls)).sum()) for cls in CLASSES}, "real_source": source,
               "features": f"{res}x{res} pixels -> PCA {pca.n_components_} fit on the real slices",
               "embedding": how, "seeds": f"{seeds[0]}-{seeds[-1]}"}
    core.write_text_atomic(json.dumps(summary) + "\n", f"{path}.json")
    print(f"{path}.png, .csv, .json: {len(xy)} images ({how})")
    print(verdict)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--ad", default=DEFAULT_CHECKPOINT.format("AD"), help="AD checkpoint (default %(default)s)")
    p.add_argument("--nc", default=DEFAULT_CHECKPOINT.format("NC"), help="NC checkpoint (default %(default)s)")
    p.add_argument("--out", default="outputs", help="output folder (default outputs/)")
    p.add_argument("--n", type=int, default=50, help="generated latents (and images) per class (default 50)")
    p.add_argument("--n-real", type=int, default=200, help="real training slices per class, at most (default 200)")
    p.add_argument("--data", help="real slices: an ADNI or NIfTI folder as for train.py (default the demo set)")
    p.add_argument("--demo-count", type=int, help="slices per class of the demo set (default the data set's own)")
    p.add_argument("--method", choices=["tsne", "umap"], default="tsne",
                   help="2D embedding: t-SNE (scikit-learn, default) or UMAP (needs umap-learn)")
    p.add_argument("--perplexity", type=float, default=30.0,
                   help="t-SNE perplexity (default 30; lowered to (points - 1) / 3 for few points)")
    p.add_argument("--seed", type=int, default=0,
                   help="latents are seeds SEED..SEED+n-1; also seeds the real subset and the embedding (default 0)")
    return p.parse_args(argv)


def embedding(args: argparse.Namespace) -> None:
    if args.n < 2 or args.n_real < 2 or args.seed < 0:
        raise UserError("--n and --n-real must be at least 2 and --seed not negative")
    if args.method == "umap" and importlib.util.find_spec("umap") is None:
        raise UserError("--method umap needs umap-learn (pip install umap-learn); or use --method tsne")
    gens, parent = sampling.load_pair({"AD": args.ad, "NC": args.nc})
    if gens["AD"].w_dim != gens["NC"].w_dim:
        raise UserError(f"the AD and NC generators have different w sizes ({gens['AD'].w_dim} vs "
                        f"{gens['NC'].w_dim}), so their W vectors cannot be embedded together")
    core.writable_folder(args.out)
    seeds = list(range(args.seed, args.seed + args.n))
    table = image_table(args, gens, seeds)  # reads the real data before anything is written
    w_embedding(args, gens, seeds, args.method, paired=parent is not None)
    image_embedding(args, table, seeds, args.method)


def main(argv: list[str] | None = None) -> None:
    core.main(embedding, parse_args(argv))


if __name__ == "__main__":
    main()
