"""The lightly side of benchmarks/speed_simclr.py: SimCLR with the `lightly` library, the way its docs show.

Runs under benchmarks/_venv_lightly (torch + torchvision + lightly), never under the project's venv, and
imports nothing from selfsup for the ConvNet. On a GPU (benchmarks/gpu.py: settings "device", "precision",
"encoder") it runs in the same environment as ours, and an encoder other than the ConvNet (the CIFAR-style
ResNet-18) is taken from selfsup.nets itself, so both sides train the very same module. Model: the RotNet-demo ConvNet (64/32/16 filters, same layers as
src/selfsup/nets/convnet.py) + lightly's SimCLRProjectionHead (which, unlike ours, ends in a bias-free
Linear + BatchNorm1d); loss: lightly's NTXentLoss; views:
lightly's SimCLRTransform on PIL images in a torch DataLoader with worker processes. Every setting
(optimizer, learning rate and schedule, temperature, head sizes, augmentation strengths) comes from the
JSON that speed_simclr.py writes from our SimCLR method, so both sides train the same model.

Writes a JSON result (wall times, images/s, versions) and the frozen backbone features of the train and
test images (kNN is computed by speed_simclr.py with the same code for both sides).

    python benchmarks/_lightly_simclr.py --data DATA.npz --settings SETTINGS.json --result OUT.json \
        --features FEATURES.npz
"""
from __future__ import annotations

import argparse
import json
import math
import platform
import time

import lightly
import numpy as np
import torch
import torchvision
from lightly.loss import NTXentLoss
from lightly.models.modules import SimCLRProjectionHead
from lightly.transforms import SimCLRTransform
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset


def conv_block(cin: int, cout: int, stride: int, batch_norm: bool) -> list[nn.Module]:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=not batch_norm)]
    if batch_norm:
        layers.append(nn.BatchNorm2d(cout))
    return layers + [nn.ReLU(inplace=True)]


def convnet(widths: list[int], batch_norm: bool, in_channels: int = 1) -> nn.Sequential:
    """The same ConvNet as selfsup's `convnet` encoder: 28x28 -> 2x2x16 -> 64 features."""
    w1, w2, w3 = widths
    return nn.Sequential(
        *conv_block(in_channels, w1, 2, batch_norm), nn.MaxPool2d(2),
        *conv_block(w1, w2, 1, batch_norm), nn.MaxPool2d(2),
        *conv_block(w2, w3, 2, batch_norm),
        nn.Flatten(1),
    )


class SimCLR(nn.Module):
    """lightly's SimCLR example model with our backbone."""

    def __init__(self, backbone: nn.Module, head: dict):
        super().__init__()
        self.backbone = backbone
        self.projection_head = SimCLRProjectionHead(head["input_dim"], head["hidden_dim"], head["output_dim"],
                                                    num_layers=head["num_layers"], batch_norm=head["batch_norm"])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.projection_head(self.backbone(x))


class GrayImages(Dataset):
    """uint8 (N, 28, 28) arrays served as PIL images through a transform, like torchvision's FashionMNIST."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform):  # noqa: ANN001
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):  # noqa: ANN204
        return self.transform(Image.fromarray(self.images[i], mode="L")), int(self.labels[i])


def make_transform(views: dict, size: int) -> SimCLRTransform:
    """lightly's SimCLRTransform with our view settings; no normalisation (our encoder sees [0, 1])."""
    return SimCLRTransform(
        input_size=size, cj_prob=views["jitter_p"], cj_strength=1.0, cj_bright=views["brightness"],
        cj_contrast=views["contrast"], cj_sat=views["saturation"], cj_hue=views["hue"],
        min_scale=views["crop_scale"][0], random_gray_scale=views["grayscale_p"], gaussian_blur=views["blur_p"],
        sigmas=tuple(views["blur_sigma"]), vf_prob=0.0, hf_prob=views["flip_p"], rr_prob=0.0, normalize=None)


def make_optimizer(params, s: dict) -> torch.optim.Optimizer:  # noqa: ANN001
    if s["optimizer"] == "sgd":
        return torch.optim.SGD(params, lr=s["lr"], momentum=s["momentum"], weight_decay=s["weight_decay"])
    if s["optimizer"] == "adamw":
        return torch.optim.AdamW(params, lr=s["lr"], weight_decay=s["weight_decay"])
    return torch.optim.Adam(params, lr=s["lr"], weight_decay=s["weight_decay"])


def lr_factor(step: int, total: int, warmup: int, schedule: str) -> float:
    """The same warm-up + cosine/constant schedule as selfsup.train, so both sides optimise alike."""
    if step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    return 0.5 * (1.0 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))


def build_backbone(s: dict, image_size: int) -> nn.Module:
    if s.get("encoder", "convnet") == "convnet":
        return convnet(s["widths"], s["encoder_batch_norm"])
    from selfsup.nets import build_encoder  # the same encoder module as ours (the GPU run has selfsup installed)
    return build_encoder(s["encoder"], in_channels=1, image_size=image_size, **s.get("encoder_kwargs", {}))


@torch.no_grad()
def backbone_features(backbone: nn.Module, images: np.ndarray, device: str = "cpu", batch_size: int = 512) -> np.ndarray:
    backbone.eval()
    out = [backbone(torch.from_numpy(images[i:i + batch_size]).to(device).float().div(255).unsqueeze(1)).float().cpu()
           .numpy() for i in range(0, len(images), batch_size)]
    return np.concatenate(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--settings", required=True)
    parser.add_argument("--result", required=True)
    parser.add_argument("--features", required=True)
    args = parser.parse_args()
    s = json.loads(open(args.settings).read())
    torch.manual_seed(s["seed"])
    data = np.load(args.data)
    train_images, train_labels = data["train_images"], data["train_labels"]

    device = s.get("device", "cpu")
    model = SimCLR(build_backbone(s, train_images.shape[-1]), s["head"]).to(device)
    autocast = torch.autocast(torch.device(device).type, torch.bfloat16, enabled="bf16" in s.get("precision", ""))
    criterion = NTXentLoss(temperature=s["temperature"])
    optimizer = make_optimizer(model.parameters(), s)
    dataset = GrayImages(train_images, train_labels, make_transform(s["views"], train_images.shape[-1]))
    loader = DataLoader(dataset, batch_size=s["batch_size"], shuffle=True, drop_last=True,
                        num_workers=s["num_workers"], pin_memory=device != "cpu")
    steps_per_epoch, epochs = len(loader), s["epochs"]
    total, warmup = steps_per_epoch * epochs, round(s["warmup_epochs"] * steps_per_epoch)

    model.train()
    start, images_seen, step, epoch_seconds, last_loss = time.perf_counter(), 0, 0, [], float("nan")
    for _ in range(epochs):
        epoch_start = time.perf_counter()
        for (x0, x1), _labels in loader:
            for group in optimizer.param_groups:
                group["lr"] = s["lr"] * lr_factor(step, total, warmup, s["schedule"])
            x0, x1 = x0.to(device, non_blocking=True), x1.to(device, non_blocking=True)
            with autocast:
                loss = criterion(model(x0), model(x1))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            images_seen, step, last_loss = images_seen + len(x0), step + 1, loss.item()
        epoch_seconds.append(time.perf_counter() - epoch_start)
    train_seconds = time.perf_counter() - start

    np.savez(args.features, train=backbone_features(model.backbone, train_images, device),
             test=backbone_features(model.backbone, data["test_images"], device))
    result = {
        "train_seconds": train_seconds, "epoch_seconds": epoch_seconds, "images_seen": images_seen,
        "images_per_s": images_seen / train_seconds, "steps": step, "final_loss": last_loss,
        "torch_threads": torch.get_num_threads(), "num_workers": s["num_workers"],
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "torchvision": torchvision.__version__, "lightly": lightly.__version__},
    }
    open(args.result, "w").write(json.dumps(result, indent=2))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
