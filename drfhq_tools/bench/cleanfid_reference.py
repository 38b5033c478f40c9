"""clean-fid itself, wired to the Inception file in the weights home instead of its download to /tmp.

Used to check our numbers against the reference implementation (tests, benchmarks/).
"""

from __future__ import annotations

import warnings


def offline_cleanfid():
    """clean-fid's `fid` module, with its feature extractor loading our verified Inception file."""
    import cleanfid.features as cleanfid_features
    import torch
    import torch.nn as nn
    from cleanfid import fid
    from cleanfid.inception_torchscript import InceptionV3W

    from ..models.weights import resolve

    class OfflineInception(InceptionV3W):
        def __init__(self, path, download=True, resize_inside=False):
            nn.Module.__init__(self)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self.base = torch.jit.load(str(resolve("inception-fid").path), map_location="cpu").eval()
            self.layers = self.base.net.layers
            self.resize_inside = False

    cleanfid_features.InceptionV3W = OfflineInception
    return fid
