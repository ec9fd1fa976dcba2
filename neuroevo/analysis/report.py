"""A run as people read it: the best chromosome laid out, plots, one self-contained HTML page, new samples.

Reads only what a run writes (the Parquet logs, best/generation=NNNN/, config.yaml) and the run's training data
(through data.load, as the run read it), so it works on a finished run and on one still running. Plots use
matplotlib's Figure API (the Agg canvas, no display).
"""

from __future__ import annotations

import base64
import dataclasses
import html
import io
import math
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.colors import BoundaryNorm
from matplotlib.figure import Figure
from matplotlib.ticker import EngFormatter, LogFormatterSciNotation, MaxNLocator
from PIL import Image

from neuroevo import config, errors
from neuroevo.analysis import query
from neuroevo.analysis.runs import duration
from neuroevo.evolve import fitness, ranking
from neuroevo.space import registry
from neuroevo.space.chromosome import Chromosome
from neuroevo.space.genes import Optimiser
from neuroevo.space.layer_plan import Layer, LayerPlan
from neuroevo.space.registry import from_json
from neuroevo.store import rundir
from neuroevo.store.rundir import best_dir
from neuroevo.train import data

if TYPE_CHECKING:
    import torch

ELITES_SHOWN = 40


def ranked(df: pd.DataFrame) -> pd.DataFrame:
    """Rows of the logs, fittest first (ranking.order: the higher rung first, with evolve.rungs; ties go to the
    earlier generation, then the smaller id)."""
    return df.iloc[ranking.order(df["fitness"], df["generation"], df["chromosome_id"], 
                                 rung=ranking.rung_key(df.get("rung"), df["status"]))]


def best(df: pd.DataFrame) -> pd.Series | None:
    """The fittest row that trained; None if none did."""
    ok = df[df["status"] == "ok"]
    return None if ok.empty else ranked(ok).iloc[0]


def pareto_front(size: np.ndarray, loss: np.ndarray) -> np.ndarray:
    """Mask of the points that no other point beats on both size and loss (both minimised)."""
    order = np.lexsort((loss, size))  # by size, then loss
    front = np.zeros(len(size), dtype=bool)
    best_loss = math.inf
    for i in order:
        if loss[i] < best_loss:
            front[i], best_loss = True, loss[i]
    return front


def survival(df: pd.DataFrame) -> pd.DataFrame:
    """Per chromosome: born, last generation seen, and in how many generations it was trained."""
    g = df.groupby("chromosome_id")["generation"]
    out = pd.DataFrame({"born": g.min(), "last": g.max(), "generations": g.nunique()})
    return out.sort_values(["born", "generations"], ascending=[True, False])


# --- text ---------------------------------------------------------------------------------------------


NORM_NAMES = {"batch": "BatchNorm", "instance": "InstanceNorm", "none": ""}
OP_NAMES = {"linear": "Linear", "conv": "Conv", "conv_transpose": "ConvTranspose", "relu": "ReLU",
            "leaky_relu": "LeakyReLU", "prelu": "PReLU", "sigmoid": "sigmoid", "tanh": "tanh", "swish": "SiLU",
            "softplus": "Softplus", "none": "", "max": "MaxPool", "avg": "AvgPool"}


def _op(layer: Layer) -> str:
    """e.g. ConvTranspose-BatchNorm-PReLU, Conv-LeakyReLU+skip-MaxPool"""
    parts = [OP_NAMES[layer.kind], NORM_NAMES[layer.norm], OP_NAMES[layer.activation]]
    op = "-".join(p for p in parts if p) + ("+skip" if layer.skip else "")
    return op + (f"-{OP_NAMES[layer.pool]}" if layer.pool != "none" else "")


def layers(plan: LayerPlan) -> pd.DataFrame:
    """One row per layer of G and D, from the layer plan: what it does (SN- where spectral norm divides its weight),
    its kernel and stride, its output channels (units), BatchNorm's momentum, and the sides it goes between."""
    rows = []
    normed = {"G": plan.spectral_norm == "both", "D": plan.spectral_norm in ("d", "both")}
    for net, plan_layers in (("G", plan.g), ("D", plan.d)):
        for layer in plan_layers:
            if layer.kind == "linear":
                kernel, side = "", f"{layer.c_in} -> {layer.c_out} features"
            else:
                kernel = f"{layer.kernel}x{layer.kernel}" + (f" /{layer.stride}" if layer.stride != 1 else "")
                side = f"{layer.side_in} -> {layer.side}"
            momentum = f"{layer.bn_momentum:.3f}" if layer.norm == "batch" else ""
            op = ("SN-" if normed[net] else "") + _op(layer)  # its weight spectrally normalised
            rows.append((net, layer.name, op, kernel, layer.c_out, momentum, side))
    return pd.DataFrame(rows, columns=["net", "layer", "kind", "kernel", "channels", "bn_momentum", "side"])


def genes_short(plan: LayerPlan) -> tuple[str, str]:
    """G and D in one line each: units (FC) or channels (kernel, stride 2 as /2) per layer."""
    def short(layer: Layer) -> str:
        if layer.kind == "linear":
            return "1" if layer.c_out == 1 and layer is plan.d[-1] else f"FC {layer.c_out}"
        return f"{layer.c_out} (k{layer.kernel}{'/2' if layer.stride == 2 else ''})"

    c, h, w = plan.noise
    g = " → ".join([f"{c}×{h}²" if h > 1 else f"z {c}"] + [short(layer) for layer in plan.g])
    d = " → ".join(short(layer) for layer in plan.d)
    return g, d


def optimiser_text(opt: Optimiser) -> str:
    """e.g. SGD lr 3.2e-05 momentum 0.500, or Adam lr 0.0002 beta1 0.500, then any step decay."""
    text = (f"SGD lr {opt.lr:.3g} momentum {opt.momentum:.3f}" if opt.name == "sgd"
            else f"Adam lr {opt.lr:.3g} beta1 {opt.momentum:.3f}")
    return text + (f" (x{opt.decay_factor:.3g} from epoch {opt.decay_epoch})" if opt.decay_epoch else "")


def practices_text(ch: Chromosome) -> str:
    """e.g. separate real and fake batches, spectral norm in D, EMA of G 0.999, DiffAugment color,translation"""
    named = [("label smoothing", ch.label_smoothing), ("feature matching", ch.feature_matching),
             ("separate real and fake batches", ch.separate_batches)]
    r = ch.recipe
    if r is not None:
        named += [(f"spectral norm in {'D' if r.spectral_norm == 'd' else 'G and D'}", r.spectral_norm != "none"),
                  (f"EMA of G {r.g_ema:g}", r.g_ema > 0), (f"DiffAugment {r.augment}", r.augment != "none"),
                  (f"R1 gamma {r.r1_gamma:g}", r.r1_gamma > 0), (f"{r.n_critic} D steps per G step", r.n_critic > 1)]
    return ", ".join(name for name, on in named if on) or "none"


def _logged(row: pd.Series, column: str) -> bool:
    return column in row and not pd.isna(row[column])


def budget_text(row: pd.Series) -> str:
    """One row's training, as it counted it: e.g. G 400 and D 800 steps, 1.23e+12 FLOPs in 35.2 s."""
    seconds = f"{row.train_seconds:.1f} s" if _logged(row, "train_seconds") else "time not logged"
    if not _logged(row, "g_steps"):
        return f"{seconds} (steps and FLOPs not logged: a run begun before logs' schema_version 5)"
    return f"G {int(row.g_steps):,} and D {int(row.d_steps):,} steps, {row.train_flops:.3g} FLOPs in {seconds}"


def compute_text(df: pd.DataFrame) -> str:
    """What a run's rows have spent, training and measuring sample quality: e.g. 4.06e+14 FLOPs in 2.3 h (training
    4e+14 FLOPs in 2.1 h, quality 6.1e+12 FLOPs in 9.2 min)."""
    parts = [("training", df["train_flops"].sum(), df["train_seconds"].sum())]
    if df["quality_seconds"].notna().any():
        parts.append(("quality", df["quality_flops"].sum(), df["quality_seconds"].sum()))
    flops, seconds = sum(f for _, f, _ in parts), sum(t for _, _, t in parts)
    texts = [f"{name} {f:.3g} FLOPs in {duration(t)}" for name, f, t in parts]
    # a training that ended by itself counted its steps (oom, failed and lost ones could not)
    uncounted = int((df["status"].isin(["ok", "diverged", "timeout"]) & df["train_flops"].isna()).sum())
    if uncounted:
        texts.append(f"FLOPs of {uncounted} trainings not logged: before logs' schema_version 5")
    return f"{flops:.3g} FLOPs in {duration(seconds)} ({'; '.join(texts)})"


def describe(run_dir: str | Path, df: pd.DataFrame, row: pd.Series) -> str:
    """The text of `neuroevo best`: one row of the run's logs `df`, its genes laid out."""
    ch = from_json(row.chromosome)
    plan = registry.plan(ch)
    lived = survival(df).loc[row.chromosome_id]
    out = best_dir(run_dir, int(row.generation))
    g_opt, d_opt = ch.optimisers
    noise = " × ".join(map(str, plan.noise))
    lines = [
        f"best chromosome {row.chromosome_id} of run {row.run_id}, generation {row.generation} "
        f"(born in generation {lived.born}, trained in {lived.generations} of {df.generation.nunique()} generations)",
        f"fitness   {row.fitness:.4f}",
        f"losses    D {row.d_loss:.4f}  G {row.g_loss:.4f}  (per epoch: D {_floats(row.d_losses)}, "
        f"G {_floats(row.g_losses)})",
        f"params    {row.params_g + row.params_d:,}  (G {row.params_g:,}, D {row.params_d:,})",
        f"training  {budget_text(row)}",
        f"quality   {quality_text(row)}",
        f"noise     {noise};  image {' × '.join(map(str, plan.image))}",
        f"space     {ch.space};  loss {ch.loss};  practices: {practices_text(ch)};  init {plan.init}",
        f"optimiser G: {optimiser_text(g_opt)};  D: {optimiser_text(d_opt)};  batch {ch.batch_size}",
        f"run total {compute_text(df)}, over {len(df)} rows",
        "",
        layers(plan).to_string(index=False),
        "",
        f"samples   {_existing(out / 'samples.png')}",
        f"weights   {_existing(out / 'weights.pt')}",
    ]
    return "\n".join(lines)


def measured(df: pd.DataFrame) -> pd.DataFrame:
    """The rows whose sample quality was measured."""
    return df[df["status"].eq("ok") & df["fid"].notna()] if "fid" in df else df.iloc[:0]


def quality_text(row: pd.Series) -> str:
    """e.g. FID 182.41  KID 0.1523 ± 0.0051  (500 samples, 104.2 s), or why there is none."""
    if "fid" not in row or pd.isna(row.fid):
        return "not measured (quality.evaluate)"
    text = (f"FID {row.fid:.2f}  KID {row.kid:.4f} ± {row.kid_std:.4f}  ({int(row.quality_samples):,} samples"
            f"{'' if pd.isna(row.get('seeds')) or row.seeds == 1 else f' per seed, mean of {int(row.seeds)} seeds'}, "
            f"{row.quality_seconds:.1f} s)")
    return text + (f"  Pareto front {int(row.pareto_rank)}" if not pd.isna(row.get("pareto_rank")) else "")


def _floats(xs) -> str:
    return "[" + ", ".join(f"{x:.4f}" for x in xs) + "]"


def _existing(path: Path) -> str:
    return str(path) if path.is_file() else f"{path} (not saved)"


# --- plots --------------------------------------------------------------------------------------------


LEGEND_GENERATIONS = 6  # up to this many generations are told apart in the legend; more, on a discrete colour bar


class _CompactLog(LogFormatterSciNotation):
    """Log-axis labels as 20k, 1.5M: matplotlib's choice of which ticks to label (minor ones only where the axis
    spans less than a decade), in short text that does not crowd."""

    _text = EngFormatter(sep="")

    def __call__(self, x: float, pos: int | None = None) -> str:
        return self._text(x) if super().__call__(x, pos) else ""


def _figure(width: float, height: float) -> Figure:
    """Constrained layout: labels, colour bars and the legend below the axes all fit inside the figure."""
    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def save_png(fig: Figure, path: Path) -> Path:
    """A figure as a PNG, written atomically (rundir.write)."""
    png = io.BytesIO()
    fig.savefig(png, format="png")
    return rundir.write(path, png.getvalue())


def _legend_below(fig: Figure) -> None:
    """One legend for the whole figure, below its axes, where it covers no point."""
    n = sum(len(ax.get_legend_handles_labels()[1]) for ax in fig.axes)
    if n:
        fig.legend(loc="outside lower center", ncols=min(n, 4), fontsize="small", frameon=False)


def _note(ax, text: str) -> None:
    """An axes with nothing to plot: the reason, and no ticks that would suggest a scale."""
    ax.text(0.5, 0.5, text, ha="center", va="center", wrap=True, color="0.35", transform=ax.transAxes)
    ax.set_xticks([])
    ax.set_yticks([])


def _generation_axis(ax, generations: pd.Series) -> None:
    """x: whole generations, with half a generation of margin either side (one generation too)."""
    ax.set_xlim(generations.min() - 0.5, generations.max() + 0.5)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
    ax.set_xlabel("generation")


def _size_axis(ax) -> None:
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(_CompactLog())
    ax.xaxis.set_minor_formatter(_CompactLog(labelOnlyBase=False))
    ax.set_xlabel("parameters (G + D)")


def _by_generation(fig: Figure, ax, x: np.ndarray, y: np.ndarray, generations: pd.Series) -> None:
    """Points coloured by generation, one colour each from viridis: named in the legend when there are few,
    else on a colour bar of one band per generation with whole-number ticks."""
    lo, hi = int(generations.min()), int(generations.max())
    cmap = colormaps["viridis"].resampled(hi - lo + 1)
    norm = BoundaryNorm(np.arange(lo - 0.5, hi + 1.5), cmap.N)
    if generations.nunique() <= LEGEND_GENERATIONS:
        for g in sorted(generations.unique()):
            at = (generations == g).to_numpy()
            ax.scatter(x[at], y[at], s=18, color=cmap(norm(g)), label=f"generation {g}")
    else:
        points = ax.scatter(x, y, c=generations, cmap=cmap, norm=norm, s=18)
        fig.colorbar(points, ax=ax, label="generation", ticks=MaxNLocator(integer=True))


def _front(ax, size: np.ndarray, value: np.ndarray) -> None:
    """The Pareto front of size and value (both minimised): a step line through its points, circled."""
    front = pareto_front(size, value)
    order = np.argsort(size[front])
    ax.step(size[front][order], value[front][order], where="post", color="C3", label="Pareto front")
    ax.scatter(size[front], value[front], s=70, facecolors="none", edgecolors="C3")


def fitness_figure(df: pd.DataFrame) -> Figure:
    per = df.groupby("generation")["fitness"].agg(["max", "mean", "min"])
    fig = _figure(7, 4.2)
    ax = fig.add_subplot()
    ax.scatter(df["generation"], df["fitness"], s=8, color="0.65", label="each chromosome")
    ax.fill_between(per.index, per["min"], per["max"], color="C0", alpha=0.1)
    for col, label, style in (("max", "best", "-o"), ("mean", "mean", "--s"), ("min", "worst", ":v")):
        ax.plot(per.index, per[col], style, color="C0", label=label, markersize=4)
    ax.set(ylabel="fitness", title="Fitness per generation (failed chromosomes included)")
    _generation_axis(ax, df["generation"])
    _legend_below(fig)
    return fig


def scored_losses(df: pd.DataFrame) -> pd.Series:
    """Each row's loss as its fitness scores it (fitness.scored_loss, by the row's loss; rows logged before the
    column existed are bce): NaN where the loss term is 0."""
    kind = df["loss"].fillna("bce") if "loss" in df else pd.Series("bce", index=df.index)
    return pd.Series([fitness.scored_loss(d, g, k) for d, g, k in zip(df["d_loss"], df["g_loss"], kind)],
                     index=df.index, dtype=float)


def pareto_figure(df: pd.DataFrame) -> Figure:
    trained = df[df["status"] == "ok"]
    scored = scored_losses(trained)
    ok = trained[scored > 0]
    fig = _figure(7, 4.8)
    ax = fig.add_subplot()
    ax.set(ylabel="the loss the fitness scores", title="Size against loss: lower left is better")
    if ok.empty:
        _note(ax, "no chromosome has trained successfully yet")
        return fig
    size = (ok["params_g"] + ok["params_d"]).to_numpy()
    loss = scored[scored > 0].to_numpy()
    _by_generation(fig, ax, size, loss, ok["generation"])
    _front(ax, size, loss)
    top = best(df)
    if top.chromosome_id in set(ok["chromosome_id"]):
        top_loss = scored_losses(top.to_frame().T).iloc[0]
        ax.scatter([top.params_g + top.params_d], [top_loss], marker="*", s=200,
                   color="C1", edgecolors="0.2", linewidths=0.5, zorder=3, label=f"best fitness ({top.chromosome_id})")
    left_out = len(trained) - len(ok)
    _size_axis(ax)
    ax.set_xlabel(f"{ax.get_xlabel()}\nloss: bce 1 / (1/L_D + 1/L_G), hinge L_D, wgan-gp |L_D|" + (
        f"\n({left_out} of {len(trained)} trained chromosomes not shown: a loss term of 0)" if left_out else ""))
    _legend_below(fig)
    return fig


def quality_figure(df: pd.DataFrame) -> Figure:
    """FID per generation (best and every measured chromosome), and FID against parameters with the Pareto front
    (no other chromosome both smaller and of lower FID)."""
    q = measured(df)
    fig = _figure(11, 4.4 if len(q) else 2.4)
    per_gen, vs_size = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    per_gen.set(ylabel="FID (lower is better)", title="Sample quality per generation")
    vs_size.set(ylabel="FID", title="FID against size: lower left is better")
    if q.empty:
        for ax in (per_gen, vs_size):
            _note(ax, "no chromosome's sample quality was measured (quality.evaluate)")
        return fig
    per_gen.scatter(q["generation"], q["fid"], s=10, color="0.6", label="each measured chromosome")
    best_fid = q.groupby("generation")["fid"].min()
    per_gen.plot(best_fid.index, best_fid.to_numpy(), "-o", color="C0", markersize=4, label="lowest FID")
    _generation_axis(per_gen, df["generation"])
    size, fid = (q["params_g"] + q["params_d"]).to_numpy(), q["fid"].to_numpy()
    _by_generation(fig, vs_size, size, fid, q["generation"])
    _front(vs_size, size, fid)
    _size_axis(vs_size)
    _legend_below(fig)
    return fig


def elites_figure(df: pd.DataFrame) -> Figure:
    lived = survival(df)
    kept = lived[lived["generations"] > 1]
    shown = kept.nlargest(ELITES_SHOWN, "generations").sort_values(["born", "generations"], ascending=[True, False])
    fig = _figure(7, 1.5 + 0.22 * max(len(shown), 4))
    ax = fig.add_subplot()
    title = f"{len(kept)} of {_count(len(lived), 'chromosome')} survived a selection"
    if len(kept):
        more = f"; the {len(shown)} longest-lived shown" if len(kept) > len(shown) else ""
        title += f"\nthe longest lived {_count(int(kept['generations'].max()), 'generation')}{more}"
    ax.set_title(title)
    _generation_axis(ax, df["generation"])
    if shown.empty:
        _note(ax, "no chromosome has survived a selection yet")
        return fig
    for y, (cid, r) in enumerate(shown.iterrows()):
        seen = np.sort(df.loc[df["chromosome_id"] == cid, "generation"].unique())
        ax.hlines(y, r.born, r["last"], color="C0")
        ax.plot(seen, [y] * len(seen), "o", color="C0", markersize=4)
    ax.set_yticks(range(len(shown)), shown.index, fontsize="small", family="monospace")
    ax.set_ylim(len(shown) - 0.5, -0.5)  # the first born on top
    return fig


def _count(n: int, noun: str) -> str:
    """e.g. 1 generation, 3 generations"""
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


# --- images -------------------------------------------------------------------------------------------


GRID_PX = 360  # grids are enlarged by a whole factor, nearest neighbour, to at least this many pixels a side
REAL_SEED = 0  # the real images shown: the same pick in every report of a run


def enlarged(png: bytes) -> bytes:
    """A grid image enlarged by the smallest whole factor that makes its longer side at least GRID_PX, every pixel
    a square of pixels: 16 px images stay sharp instead of blurred by the browser."""
    with Image.open(io.BytesIO(png)) as img:
        k = math.ceil(GRID_PX / max(img.size))
        out = io.BytesIO()
        img.resize((img.width * k, img.height * k), Image.Resampling.NEAREST).save(out, format="png")
    return out.getvalue()


def real_images(run_dir: Path) -> tuple[np.ndarray, str]:
    """train.sample_grid of the run's training images, a fixed seeded pick (uint8 N x C x H x W), read as the run
    read them (its config.yaml, data.load, never downloading), and the data's description. Raises
    errors.ConfigError or data.DataError saying why there are none."""
    cfg = config.load_saved(rundir.config_file(run_dir))
    images = data.load(dataclasses.replace(cfg.data, download=False), cfg.seed, progress=sys.stderr.isatty())
    n = min(cfg.train.sample_grid, len(images.array))
    pick = np.sort(np.random.default_rng(REAL_SEED).choice(len(images.array), n, replace=False))
    return np.asarray(images.array[pick]), images.description


def grid_png(images: np.ndarray) -> bytes:
    """uint8 N x C x H x W as one PNG laid out as the run's sample grids (train.sample_grid): rows of ceil(sqrt(N)),
    torchvision's 2 px padding."""
    import torch
    import torchvision.utils as vutils

    png = io.BytesIO()
    vutils.save_image(torch.from_numpy(images).float() / 255, png, format="png",
                      nrow=math.ceil(math.sqrt(len(images))))
    return png.getvalue()


# --- HTML ---------------------------------------------------------------------------------------------


def grid_generations(generations: list[int], max_grids: int) -> list[int]:
    """At most max_grids generations, evenly spread, always the first and the last."""
    if len(generations) <= max_grids:
        return generations
    picks = np.unique(np.linspace(0, len(generations) - 1, max_grids).round().astype(int))
    return [generations[i] for i in picks]


def top_table(df: pd.DataFrame, n: int) -> pd.DataFrame:
    """The n fittest chromosomes, each once (at its best generation); FID and KID where any was measured."""
    ok = ranked(df[df["status"] == "ok"])
    top = ok.drop_duplicates("chromosome_id").head(n)
    lived = survival(df)
    genes = [genes_short(registry.plan(from_json(c))) for c in top["chromosome"]]
    table = pd.DataFrame({
        "chromosome": top["chromosome_id"],
        "generation": top["generation"],
        "born": top["born_generation"],
        "generations": lived.loc[top["chromosome_id"], "generations"].to_numpy(),
        "fitness": top["fitness"].map("{:.4f}".format),
        "d_loss": top["d_loss"].map("{:.4f}".format),
        "g_loss": top["g_loss"].map("{:.4f}".format),
        "params": (top["params_g"] + top["params_d"]).map("{:,}".format),
        "fid": top["fid"].map(lambda v: "" if pd.isna(v) else f"{v:.2f}"),
        "kid": top["kid"].map(lambda v: "" if pd.isna(v) else f"{v:.4f}"),
        "generator": [g for g, _ in genes],
        "discriminator": [d for _, d in genes],
        "g_lr": top["g_lr"].map("{:.2e}".format),
        "d_lr": top["d_lr"].map("{:.2e}".format),
        "practices": [practices_text(from_json(c)) for c in top["chromosome"]],
        "steps": [f"{int(g):,} G / {int(d):,} D" if not pd.isna(g) else "" for g, d in zip(top["g_steps"], top["d_steps"])],
        "train_flops": top["train_flops"].map(lambda v: "" if pd.isna(v) else f"{v:.3g}"),
    })
    return table if top["fid"].notna().any() else table.drop(columns=["fid", "kid"])


def _img(png: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def _figure_html(png: bytes, alt: str, caption: str) -> str:
    return f"<figure>{_img(png, alt)}<figcaption>{html.escape(caption)}</figcaption></figure>"


_STYLE = """body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
img{max-width:100%}table{border-collapse:collapse;font-size:13px}
td,th{border:1px solid #ccc;padding:3px 6px;text-align:left}
.grids{display:flex;flex-wrap:wrap;gap:16px;align-items:flex-start}figure{margin:0}
figcaption{font-size:12px;color:#555;max-width:340px}.grids img{image-rendering:pixelated}
pre{background:#f6f6f6;padding:1em;overflow:auto}"""


def write_report(run_dir: str | Path, out_dir: str | Path, top: int = 10, max_grids: int = 20) -> list[Path]:
    """Four PNG plots, the fittest chromosome's samples and real training images (enlarged), and report.html
    (all of them, every generation's sample grid and the tables inlined, nothing linked) in out_dir."""
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    df = query.load_runs([run_dir])
    out_dir.mkdir(parents=True, exist_ok=True)
    plots = [
        ("Fitness per generation", save_png(fitness_figure(df), out_dir / "fitness.png")),
        ("Parameters against loss", save_png(pareto_figure(df), out_dir / "pareto.png")),
        ("How long elites survive", save_png(elites_figure(df), out_dir / "elites.png")),
        ("Sample quality (FID)", save_png(quality_figure(df), out_dir / "quality.png")),
    ]
    written = [path for _, path in plots]
    generations = sorted(int(g) for g in df["generation"].unique())
    b = best(df)

    side_by_side = []
    if b is not None and rundir.best_samples(run_dir, int(b.generation)).is_file():
        png = enlarged(rundir.best_samples(run_dir, int(b.generation)).read_bytes())
        written.append(rundir.write(out_dir / "best-samples.png", png))
        side_by_side.append(_figure_html(png, "samples of the fittest chromosome",
                                         f"samples of the fittest chromosome, {b.chromosome_id} (generation "
                                         f"{b.generation})"))
    try:
        real, description = real_images(run_dir)
    except (errors.ConfigError, data.DataError) as e:
        side_by_side.append(f"<p>No real images to show: {html.escape(str(e))}</p>")
    else:
        png = enlarged(grid_png(real))
        written.append(rundir.write(out_dir / "real-images.png", png))
        side_by_side.append(_figure_html(png, "real training images", f"{len(real)} real training images, a fixed "
                                                                      f"random pick ({description})"))
    figures = []
    for g in grid_generations(generations, max_grids):
        png, r = rundir.best_samples(run_dir, g), best(df[df["generation"] == g])
        if png.is_file() and r is not None:
            figures.append(_figure_html(enlarged(png.read_bytes()), f"generation {g} samples",
                                        f"generation {g} · {r.chromosome_id} · fitness {r.fitness:.4f}"))

    summary = (f"{_count(len(generations), 'generation')}, {_count(len(df), 'chromosome')} trained "
               f"({int((df['status'] != 'ok').sum())} failed or diverged). ")
    if b is not None:
        summary += (f"Best fitness {b.fitness:.4f}: chromosome {b.chromosome_id} in generation {b.generation}, "
                    f"{b.params_g + b.params_d:,} parameters, D loss {b.d_loss:.4f}, G loss {b.g_loss:.4f}, "
                    f"quality: {quality_text(b)}.")
    summary += f" Compute: {compute_text(df)}."
    q = measured(df)
    if not q.empty:
        lowest = q.loc[q["fid"].idxmin()]
        summary += (f" Lowest FID {lowest.fid:.2f} (KID {lowest.kid:.4f}): chromosome {lowest.chromosome_id} in "
                    f"generation {lowest.generation}, {lowest.params_g + lowest.params_d:,} parameters; "
                    f"{len(q)} of {len(df)} chromosomes measured.")
    config_path, table = rundir.config_file(run_dir), top_table(df, top)
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>neuroevo · {html.escape(run_dir.name)}</title>"
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>neuroevo run {html.escape(run_dir.name)}</h1>",
        f"<p>{html.escape(summary)}<br><small>{html.escape(str(run_dir.resolve()))} · report made "
        f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC</small></p>",
        *(f"<h2>{title}</h2>{_img(path.read_bytes(), title)}" for title, path in plots),
        "<h2>Samples against real images</h2>",
        f"<div class='grids'>{''.join(side_by_side)}</div>",
        "<h2>Best samples per generation</h2>",
        f"<div class='grids'>{''.join(figures)}</div>" if figures else "<p>No sample grids saved yet.</p>",
        f"<h2>The {len(table)} fittest chromosomes</h2>",
        table.to_html(index=False, escape=True, border=0),
    ]
    if config_path.is_file():
        parts.append(f"<h2>Config</h2><pre>{html.escape(config_path.read_text())}</pre>")
    parts.append("</body></html>")
    return written + [rundir.write(out_dir / "report.html", "\n".join(parts))]


# --- sampling -----------------------------------------------------------------------------------------


MAX_SAMPLES = 10_000  # images in one `sample` grid: 100 x 100, 6602 px square at 64 px an image
SAMPLE_BATCH = 256  # images through G at once: the activations of one batch, not of all n, are in memory


def draw(weights: Path, n: int, seed: int) -> tuple[Chromosome, torch.Tensor]:
    """n images from a saved generator, n x C x H x W in G's output range (registry.plan(ch).output_range), G
    drawing SAMPLE_BATCH images at a time. Raises checkpoint.WeightsError for a file that is not a neuroevo generator's
    weights."""
    import torch

    from neuroevo.train.checkpoint import load_generator
    from neuroevo.train.model import noise

    ch, G = load_generator(Path(weights))
    z = noise(ch, n, generator=torch.Generator().manual_seed(seed))  # all at once: the same noise at any batch size
    with torch.no_grad():  # a batch at a time: only one batch's activations in memory
        return ch, torch.cat([G(z[i:i + SAMPLE_BATCH]) for i in range(0, n, SAMPLE_BATCH)])


def save_grid(ch: Chromosome, images: torch.Tensor, out: Path) -> None:
    """The images as one grid image (rows of ceil(sqrt(n)), 2 px padding, torchvision's save_image), written
    atomically: a full disk leaves no half an image."""
    import torchvision.utils as vutils
    from PIL import Image

    image = io.BytesIO()
    vutils.save_image(images, image, format=Image.registered_extensions()[out.suffix.lower()],
                      nrow=math.ceil(math.sqrt(len(images))), normalize=True,
                      value_range=registry.plan(ch).output_range)
    rundir.write(out, image.getvalue())


def sample(weights: Path, n: int, seed: int, out: Path) -> Chromosome:
    """n images from a saved generator (draw), as one grid image (save_grid)."""
    ch, images = draw(weights, n, seed)
    save_grid(ch, images, Path(out))
    return ch
