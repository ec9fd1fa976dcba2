"""A child's first weights from its parents' trained ones (evolve.inherit): what makes evolution train rather than
restart every generation.

Layers correspond through the layer plans (space/alignment.py), and each child layer starts as follows:
- a layer that continues a parent layer of the same kind and kernel keeps its weights (convolution or linear, bias,
  norm scale and shift and BatchNorm's running statistics, PReLU's slopes, the skip's projection); with more output
  channels it is widened as Net2WiderNet does (Chen et al. 2016): each new channel copies a randomly chosen old one,
  and the next layer's weights from the k copies of a channel are each 1/k of the old ones, so the function stays;
- a changed activation or norm keeps the convolution's weights (and a norm of the same kind its own);
- a new block that keeps the side and adds its input (a residual) starts as the identity, where its activation lets
  it (_zero_branch);
- anything else (fewer channels, another kernel, a new layer without a residual) keeps the child's fresh weights.

Pure functions of layer plans and state dicts. Tensors are located through model.layer_modules, and a weight
reparametrized by torch.nn.utils.parametrize (spectral_norm's parametrizations.weight.original) is found as well
(widened, such a weight keeps its values but not its spectral norm, so not its function exactly).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Mapping

import torch

from neuroevo.space import alignment, registry
from neuroevo.space.chromosome import Chromosome
from neuroevo.space.layer_plan import Layer, LayerPlan
from neuroevo.train.checkpoint import weights
from neuroevo.train.model import LayerModules, build, count_params, layer_modules
from neuroevo.train.results import Inherited, Start

State = Mapping[str, torch.Tensor]

PARAMS = ("weight", "bias")  # the trainable tensors' roles; the others (running statistics, ...) are buffers
# (output axis, input axis) of a layer's weight: ConvTranspose2d stores in x out x k x k
AXES = {"conv": (0, 1), "conv_transpose": (1, 0), "linear": (0, 1)}
# Activations with f(0) = 0, through which a zeroed branch passes nothing, and f'(0) != 0, through which it learns
# to pass something: not sigmoid nor softplus (f(0) > 0), nor relu (torch's gradient at 0 is 0: the branch would
# stay zero for good).
ZERO_THROUGH = ("none", "leaky_relu", "prelu", "tanh", "swish")


@dataclass(frozen=True, eq=False)
class Channels:
    """Which parent channel each child channel continues (Net2WiderNet's mapping): `src`, one entry per child
    channel. A parent channel continued by k child channels feeds the next layer through each at 1/k of its weight."""

    src: torch.Tensor  # int64, the child's channels -> the parent's
    parents: int  # the parent's channel count

    @staticmethod
    def same(n: int) -> Channels:
        return Channels(torch.arange(n), n)

    @staticmethod
    def wider(n: int, wide: int, generator: torch.Generator) -> Channels:
        """n channels widened to `wide`: the first n unchanged, each new one a copy of one drawn at random."""
        return Channels(torch.cat([torch.arange(n), torch.randint(n, (wide - n,), generator=generator)]), n)

    def copies(self) -> torch.Tensor:
        """For each child channel, how many child channels continue its parent channel."""
        return torch.bincount(self.src, minlength=self.parents)[self.src]

    def then(self, through: Channels) -> Channels:
        """These channels passed through a layer whose channel i is its input channel through.src[i]."""
        return Channels(self.src[through.src], self.parents)

    def flattened(self, positions: int) -> Channels:
        """The features of C channels of `positions` pixels each, flattened channel by channel (D's flatten)."""
        src = (self.src[:, None] * positions + torch.arange(positions)).flatten()
        return Channels(src, self.parents * positions)


def remap(w: torch.Tensor, out_axis: int, out: Channels, in_axis: int | None = None,
          inp: Channels | None = None) -> torch.Tensor:
    """A parent tensor for the child's channels: along out_axis each child channel copies its source; along in_axis
    each copy of an input channel gets 1/k of its weight (k copies), so the k copies sum to the parent's."""
    w = w.index_select(out_axis, out.src)
    if in_axis is None:
        return w
    shape = [1] * w.dim()
    shape[in_axis] = -1
    return w.index_select(in_axis, inp.src) / inp.copies().to(w.dtype).view(shape)


def tensors(state: State, module: str | None) -> dict[str, str]:
    """A module's tensors in a state dict, by role (weight, bias, running_mean, ...): role -> key. A parametrized
    weight's value, parametrizations.weight.original, has the role weight; the parametrization's own tensors (e.g.
    spectral_norm's power-iteration vectors) keep their names."""
    if module is None:
        return {}
    out = {}
    for key in state:
        if key.startswith(module + "."):
            role = key[len(module) + 1:]
            if role.startswith("parametrizations.") and role.endswith(".original"):
                role = role[len("parametrizations."):-len(".original")]
            out[role] = key
    return out


@dataclass(frozen=True)
class Taken:
    """A child network's initial state dict, and how many of its parameters came from the parent."""

    state: dict[str, torch.Tensor]
    params: int


def network(net: str, parent: LayerPlan, parent_state: State, child: LayerPlan, child_state: State,
            generator: torch.Generator | None = None) -> Taken:
    """The child's G (net "g") or D ("d"): its fresh `child_state` with what it takes from the parent's trained
    `parent_state`. `generator` draws which channels a widened layer copies."""
    generator = generator or torch.Generator().manual_seed(0)
    p_layers, c_layers = (parent.g, child.g) if net == "g" else (parent.d, child.d)
    p_mods, c_mods = (layer_modules(plan)[0 if net == "g" else 1] for plan in (parent, child))
    same_input = parent.noise == child.noise if net == "g" else parent.image == child.image
    # what the current child activations continue: (the parent layer whose output, -1 the input; their channels)
    flow: tuple[int, Channels] | None = (-1, Channels.same(c_layers[0].c_in)) if same_input else None
    state, taken = dict(child_state), 0
    for j, (c, i) in enumerate(zip(c_layers, alignment.align(p_layers, c_layers))):
        if i is None:
            update, through = _zero_branch(c, c_mods[j], child_state, generator)
            flow = (flow[0], flow[1].then(through)) if flow is not None and through is not None else None
            state.update(update)
            continue
        p = p_layers[i]
        inp = flow[1] if flow is not None and flow[0] == i - 1 else None
        if inp is not None and c.kind == "linear" and j and c_layers[j - 1].kind != "linear":
            side, before = c_layers[j - 1].side, p_layers[i - 1]  # D flattens C channels to C x side x side features
            inp = inp.flattened(side**2) if before.kind != "linear" and before.side == side else None
        if inp is None and p.c_in == c.c_in:  # unrelated inputs of the same shape: the weights are kept anyway
            inp = Channels.same(c.c_in)
        update, out, n = _continue(p, c, p_mods[i], c_mods[j], parent_state, child_state, inp, generator)
        flow = (i, out) if out is not None else None
        state.update(update)
        taken += n
    return Taken(state, taken)


def _continue(p: Layer, c: Layer, pm: LayerModules, cm: LayerModules, parent: State, child: State,
              inp: Channels | None, generator: torch.Generator) -> tuple[dict[str, torch.Tensor], Channels | None, int]:
    """Child layer c continuing parent layer p, its input channels `inp` (None: unrelated): the child tensors
    taken, its output channels (None: it starts fresh), and the parameters taken."""
    p_w, c_w = tensors(parent, pm.weights), tensors(child, cm.weights)
    out_axis, in_axis = AXES[c.kind]
    if (p.kind != c.kind or p.kernel != c.kernel or c.c_out < p.c_out or inp is None or "weight" not in p_w
            or parent[p_w["weight"]].shape[in_axis] != inp.parents):
        return {}, None, 0
    out = Channels.same(c.c_out) if c.c_out == p.c_out else Channels.wider(p.c_out, c.c_out, generator)
    taken = {c_w["weight"]: remap(parent[p_w["weight"]], out_axis, out, in_axis, inp)}
    if "bias" in p_w and "bias" in c_w:
        taken[c_w["bias"]] = remap(parent[p_w["bias"]], 0, out)
    per_channel = [(pm.norm, cm.norm)] if p.norm == c.norm else []
    per_channel += [(pm.activation, cm.activation)] if p.activation == c.activation == "prelu" else []
    for p_module, c_module in per_channel:
        p_t = tensors(parent, p_module)
        for role, key in tensors(child, c_module).items():
            if role in p_t:  # BatchNorm's num_batches_tracked is a scalar
                taken[key] = remap(parent[p_t[role]], 0, out) if parent[p_t[role]].dim() else parent[p_t[role]]
    shortcut = tensors(child, cm.shortcut).get("weight")  # c_out x c_in x 1 x 1
    projection = tensors(parent, pm.shortcut).get("weight")
    if shortcut is not None and projection is not None:
        taken[shortcut] = remap(parent[projection], 0, out, 1, inp)
    unchanged = torch.equal(out.src, torch.arange(p.c_out)) and torch.equal(inp.src, torch.arange(inp.parents))
    for p_module, c_module in ((pm.weights, cm.weights), (pm.norm, cm.norm), (pm.shortcut, cm.shortcut)):
        p_t = tensors(parent, p_module)
        for role, key in tensors(child, c_module).items():  # e.g. spectral_norm's vectors, where nothing changed
            if unchanged and key not in taken and role not in PARAMS and role in p_t \
                    and parent[p_t[role]].shape == child[key].shape:
                taken[key] = parent[p_t[role]]
    params = sum(t.numel() for key, t in taken.items() if _role(key) in PARAMS)
    if shortcut is not None and projection is None and p.skip and p.c_in == p.c_out:
        # the parent added its input unchanged: an identity, now a projection that keeps the function
        taken[shortcut] = remap(torch.eye(p.c_out).view(p.c_out, p.c_out, 1, 1), 0, out, 1, inp)
    return taken, out, params


def _zero_branch(c: Layer, cm: LayerModules, child: State,
                 generator: torch.Generator) -> tuple[dict[str, torch.Tensor], Channels | None]:
    """A new block that keeps the side and adds its input starts as the identity: its branch zeroed (the norm's
    scale and shift, or without a norm the convolution), so the block outputs its input; with more channels than
    its input the projection copies input channels as a widening does. Zeroing the norm rather than the convolution
    leaves the convolution's fresh weights to learn from the start. Returns the tensors set and the block's output
    channels as its input's (None: it starts fresh, not as the identity)."""
    if not (c.kind != "linear" and c.skip and c.stride == 1 and c.pool == "none" and c.side_in == c.side_out
            and c.c_out >= c.c_in and c.activation in ZERO_THROUGH):
        return {}, None
    through = Channels.same(c.c_in) if c.c_out == c.c_in else Channels.wider(c.c_in, c.c_out, generator)
    zeroed = tensors(child, cm.weights if c.norm == "none" else cm.norm)
    update = {zeroed[role]: torch.zeros_like(child[zeroed[role]]) for role in PARAMS if role in zeroed}
    shortcut = tensors(child, cm.shortcut).get("weight")
    if shortcut is not None:  # c_out x c_in x 1 x 1: output channel o is input channel through.src[o]
        one_hot = torch.nn.functional.one_hot(through.src, c.c_in).to(child[shortcut].dtype)
        update[shortcut] = one_hot.view(c.c_out, c.c_in, 1, 1)
    return update, through


def _role(key: str) -> str:
    """weight, bias, running_mean, ... of a state_dict key (a parametrized weight is a weight)."""
    parts = key.split(".")
    return parts[-2] if parts[-1] == "original" else parts[-1]


def start_weights(ch: Chromosome, seed: int, start: Start) -> tuple[bytes, Inherited]:
    """The weights file a chromosome's training starts from (trainer.train's init_weights), and what it inherited:
    G from the parent whose G is closest to its own (a crossover child's G parent), D likewise, each layer as
    `network` takes it. The rest is the fresh weights trainer.train would draw with `seed`. A parent of the same
    genes (an elite continuing) hands over its weights file as it is."""
    files = {pid: torch.load(io.BytesIO(b), map_location="cpu", weights_only=True) for pid, b in start.weights.items()}
    parents = {pid: registry.from_json(f["chromosome"]) for pid, f in files.items()}
    for pid, parent in parents.items():
        if parent.id == ch.id:
            return start.weights[pid], Inherited((pid,), 1.0, start.steps.get(pid, 0))
    plans = {pid: registry.plan(parent) for pid, parent in parents.items()}
    plan = registry.plan(ch)
    torch.manual_seed(seed)  # as trainer.train does before it builds: the same fresh weights
    G, D = build(ch)
    g_from = alignment.closest(plan.g, {pid: pl.g for pid, pl in plans.items()})
    d_from = alignment.closest(plan.d, {pid: pl.d for pid, pl in plans.items()})
    g = network("g", plans[g_from], files[g_from]["generator"], plan, G.state_dict(),
                torch.Generator().manual_seed(seed))
    d = network("d", plans[d_from], files[d_from]["discriminator"], plan, D.state_dict(),
                torch.Generator().manual_seed(seed + 1))
    G.load_state_dict(g.state)
    D.load_state_dict(d.state)
    sources = tuple(dict.fromkeys(pid for pid, net in ((g_from, g), (d_from, d)) if net.params))
    inherited = Inherited(sources, (g.params + d.params) / (count_params(G) + count_params(D)),
                          max((start.steps.get(pid, 0) for pid in sources), default=0))
    return weights(ch, G, D), inherited
