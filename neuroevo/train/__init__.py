"""Stage 3, training one chromosome: the data, the model built from the layer plan, the losses, the training loop,
the GPU fast path, the weights file, sample quality (FID, KID) and what a training reports. It knows nothing of
evolution; only its modules that build models import torch, so the driver can read costs and results without it."""
