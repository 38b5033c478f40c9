"""clean-fid wired to the Inception file in the weights home (it would otherwise download to /tmp)."""

import warnings

import torch
import torch.nn as nn


def offline_cleanfid():
    import cleanfid.features as cff
    from cleanfid import fid
    from cleanfid.inception_torchscript import InceptionV3W

    from drfhq_tools.models.weights import resolve

    class OfflineInception(InceptionV3W):
        def __init__(self, path, download=True, resize_inside=False):
            nn.Module.__init__(self)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                self.base = torch.jit.load(str(resolve("inception-fid").path), map_location="cpu").eval()
            self.layers = self.base.net.layers
            self.resize_inside = False

    cff.InceptionV3W = OfflineInception
    return fid
