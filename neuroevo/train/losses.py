"""What D and G minimise: each loss gene, and the training practices that change a loss.

A GAN step calls `objective.d_loss(D, real, fake.detach())`, then `objective.g_loss(D, real, fake)`, with real
images in [-1, 1] (train.to_unit_range) and D(x) -> (features, score) (model.Discriminator, or its fast-path
forward). seed-v1's D ends in a sigmoid and is trained with BCE on its probabilities exactly as the reference does;
v2's D outputs a score and every loss below reads it as such:

- bce: BCE on logits. D: BCE(D(x), 1) + BCE(D(G(z)), 0); G (non-saturating): BCE(D(G(z)), 1).
  With label smoothing D's real target is 0.9 (one-sided: fakes stay at 0; Salimans et al. 2016).
- wgan-gp: D: E[D(G(z))] - E[D(x)] + 10 * E[(|grad D(x_hat)|_2 - 1)^2] at random points x_hat between real and
  fake images (Gulrajani et al. 2017); G: -E[D(G(z))].
- hinge: D: E[relu(1 - D(x))] + E[relu(1 + D(G(z)))]; G: -E[D(G(z))] (Miyato et al. 2018).

Practices: feature matching adds to G's loss the mean squared difference between D's mean flattened features
(its last feature map, the input of its FC layers) on the real and on the fake batch; the real features are
constants to G. Separate batches: D scores the real and the fake batch in two calls (BatchNorm sees each alone),
otherwise in one call on both (BatchNorm mixes them). A sigmoid G makes images in [0, 1]: real images are scaled
to [0, 1] too. DiffAugment (augment.py) transforms every batch D scores, real and fake, in both steps; the gradient
penalty is taken between the augmented images. R1 adds gamma/2 * E[|grad_x D(x)|^2] on the real batch to D's loss
(Mescheder et al. 2018), the gradient taken with respect to the real images before their augmentation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F

from neuroevo.space import registry
from neuroevo.space.chromosome import Chromosome
from neuroevo.space.genes import Recipe
from neuroevo.train.augment import DiffAugment

GP_WEIGHT = 10.0  # lambda of WGAN-GP
REAL_SMOOTHED = 0.9  # D's target for real images with label smoothing


def bce(p: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """nn.BCELoss (logs clamped at -100), minus its input check: a diverged D's NaN output becomes a NaN
    loss that the epoch-end check reports, instead of an exception."""
    return -(target * p.log().clamp(min=-100) + (1 - target) * (1 - p).log().clamp(min=-100)).mean()


def gradient_penalty(D: Callable, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """E[(|grad D(x_hat)|_2 - 1)^2], x_hat uniformly on the segments between paired real and fake images."""
    alpha = torch.rand(real.shape[0], 1, 1, 1, device=real.device)
    x_hat = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
    (grad,) = torch.autograd.grad(D(x_hat)[1].sum(), x_hat, create_graph=True)
    return ((grad.flatten(1).norm(2, dim=1) - 1) ** 2).mean()


def r1_penalty(s_real: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
    """E[|grad_x D(x)|^2] over the real batch: s_real are D's scores of `real`, which requires grad; differentiable,
    so that D's step minimises it (a double backward)."""
    (grad,) = torch.autograd.grad(s_real.sum(), real, create_graph=True)  # N x C x H x W
    return grad.square().flatten(1).sum(1).mean()


def _unchanged(x: torch.Tensor) -> torch.Tensor:
    return x


@dataclass(frozen=True)
class Objective:
    """The loss gene and the practices that change it. D is called as D(x) -> (features, score)."""

    loss: str  # bce | wgan-gp | hinge
    label_smoothing: bool = False
    feature_matching: bool = False
    separate_batches: bool = True
    unit_data: bool = False  # G's output is a sigmoid's: real images go from [-1, 1] to [0, 1]
    probabilities: bool = False  # D ends in a sigmoid (seed-v1): bce on its probabilities, as the reference does
    r1_gamma: float = 0.0  # weight of the R1 penalty; 0: none
    augment: Callable[[torch.Tensor], torch.Tensor] = _unchanged  # what D sees of every batch (augment.DiffAugment)

    @property
    def double_backward(self) -> bool:
        """The gradient penalty and R1 differentiate D's gradient (torch.compile cannot)."""
        return self.loss == "wgan-gp" or self.r1_gamma > 0

    def _scores(self, D: Callable, real: torch.Tensor, fake: torch.Tensor):
        """(features of real, of fake, score of real, of fake), in two calls to D or one."""
        if self.separate_batches:
            (f_real, s_real), (f_fake, s_fake) = D(real), D(fake)
            return f_real, f_fake, s_real, s_fake
        f, s = D(torch.cat([real, fake]))
        n = real.shape[0]
        return f[:n], f[n:], s[:n], s[n:]

    def _bce(self, score: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return bce(score, target) if self.probabilities else F.binary_cross_entropy_with_logits(score, target)

    def d_loss(self, D: Callable, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        real = (real + 1) / 2 if self.unit_data else real
        if self.r1_gamma:
            real = real.detach().requires_grad_(True)  # R1 differentiates D's real scores with respect to it
        real_seen, fake_seen = self.augment(real), self.augment(fake)
        _, _, s_real, s_fake = self._scores(D, real_seen, fake_seen)
        if self.loss == "bce":
            target = torch.full_like(s_real, REAL_SMOOTHED if self.label_smoothing else 1.0)
            loss = self._bce(s_real, target) + self._bce(s_fake, torch.zeros_like(s_fake))
        elif self.loss == "hinge":
            loss = F.relu(1 - s_real).mean() + F.relu(1 + s_fake).mean()
        else:
            loss = s_fake.mean() - s_real.mean() + GP_WEIGHT * gradient_penalty(D, real_seen.detach(), fake_seen)
        if self.r1_gamma:
            loss = loss + self.r1_gamma / 2 * r1_penalty(s_real, real)
        return loss

    def g_loss(self, D: Callable, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        if self.feature_matching:
            real = (real + 1) / 2 if self.unit_data else real
            f_real, f_fake, _, s_fake = self._scores(D, self.augment(real), self.augment(fake))
        else:
            s_fake = D(self.augment(fake))[1]  # G's step needs no real scores
        if self.loss == "bce":
            loss = self._bce(s_fake, torch.ones_like(s_fake))
        else:  # wgan-gp and hinge
            loss = -s_fake.mean()
        if self.feature_matching:
            loss = loss + F.mse_loss(f_fake.mean(0), f_real.detach().mean(0))
        return loss


def objective(ch: Chromosome, augment_seed: int = 0) -> Objective:
    """The chromosome's losses; its DiffAugment draws from a generator seeded with augment_seed."""
    plan = registry.plan(ch)
    recipe = ch.recipe or Recipe()
    augment = _unchanged if recipe.augment == "none" else \
        DiffAugment(recipe.augment, torch.Generator().manual_seed(augment_seed))
    return Objective(ch.loss, ch.label_smoothing, ch.feature_matching, ch.separate_batches,
                     unit_data=plan.output_range == (0.0, 1.0), probabilities=plan.d_probability,
                     r1_gamma=recipe.r1_gamma, augment=augment)
