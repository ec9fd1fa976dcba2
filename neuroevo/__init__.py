"""neuroevo: evolve GAN architectures by neuroevolution on Ray."""

__version__ = "0.1.0"
