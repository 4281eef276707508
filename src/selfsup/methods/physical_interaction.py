"""Physical interaction: from the image patch around a poke's contact point and the poke, predict its outcome.

Pinto, Gandhi, Han, Park & Gupta, "The Curious Robot: Learning Visual Representations via Physical
Interactions", ECCV 2016. A robot's own interactions label its data: one shared convnet trunk (the paper's
root network) reads the image patch where the robot acts, and task-specific heads predict what the
robot measured. The pokes here come from a simulated table (`selfsup.data.interaction`, pymunk); three
heads take the trunk's features of the contact patch together with the action and predict
- moved: whether the object moved (2 classes);
- distance: how far its centre slid, in bins with edges `distance_edges` (pixels);
- rotation: how much it turned and which way, in bins with edges `rotation_edges` (degrees, signed).
The loss is the sum of the three cross-entropies (the paper sums its tasks' losses over a mixed batch).
Every label is computed here from the simulator's measured outcome in the batch; the objects' properties
(shape, mass, material) never reach this method.

Deviations from the paper:
- a simulated 2-D table (pymunk) instead of a Baxter robot, and pokes only (no grasping, no tactile sensing);
- the forward direction: outcome from patch and action (the paper's push task predicts the action from the
  before/after images; its poke task, like ours, predicts what a poke does: the tactile response);
- 32x32 greyscale contact patches of 64x64 images and the small ConvNet (paper: 227x227 colour crops, AlexNet);
- the action (contact position, push direction, force) enters as a learned embedding concatenated to the
  trunk's features (the paper's grasp net reads one output per discretised angle instead);
- continuous outcomes classified in a few bins (the paper bins grasp angles into 18 classes); Adam 1e-3.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from selfsup.data.base import DataSpec
from selfsup.methods.base import METHODS, Method, MethodConfig
from selfsup.nets.registry import build_encoder
from selfsup.views import to_float
from selfsup.views.patches import crop_patches

TASKS = ("moved", "distance", "rotation")


@dataclass
class PhysicalInteractionConfig(MethodConfig):
    patch_size: int = 32  # contact patch side in pixels (paper: 227x227 crops of a 640x480 camera; scaled down)
    action_dim: int = 32  # learned embedding of the action
    hidden_dim: int = 128  # each task head: Linear(features + action -> hidden), ReLU, Linear(-> bins)
    image_size: int = 64  # the side of the simulator's images: normalises the contact position
    force_scale: float = 2500.0  # normalises the poke's impulse (the simulator's largest by default)
    moved_pixels: float = 1.0  # "moved": displaced more than this or turned more than `moved_degrees`
    moved_degrees: float = 3.0  # (the simulator's own thresholds, data/interaction.py)
    distance_edges: tuple[float, ...] = (1.0, 3.0, 8.0)  # slid distance bins (pixels): 4 classes
    rotation_edges: tuple[float, ...] = (-15.0, -3.0, 3.0, 15.0)  # signed rotation bins (degrees): 5 classes


def action_features(action: Tensor, image_size: float, force_scale: float) -> Tensor:
    """(N, 5) from the action (N, 4) = contact x, y (pixels), push angle (radians), force: the contact
    position in [-0.5, 0.5], the push direction as (cos, sin) and the force over `force_scale`."""
    position = action[:, :2] / image_size - 0.5
    angle = action[:, 2:3]
    return torch.cat([position, torch.cos(angle), torch.sin(angle), action[:, 3:4] / force_scale], dim=1)


def contact_patches(images: Tensor, action: Tensor, size: int) -> Tensor:
    """The `size` x `size` patch of `images` (N, C, H, W) centred on each contact point (action[:, :2]
    = x, y in pixels), zero-padded at the border: (N, C, size, size), same dtype."""
    half = size // 2
    padded = F.pad(images, (half, half, half, half))
    centre = action[:, :2].floor().long()  # the pixel holding the contact point
    tops, lefts = centre[:, 1:2], centre[:, 0:1]  # (N, 1): padded coordinates of centre - half
    return crop_patches(padded, tops, lefts, size)[:, 0]


def outcome_labels(outcome: Tensor, config: PhysicalInteractionConfig) -> dict[str, Tensor]:
    """The three tasks' classes from the measured outcome (N, 3) = dx, dy (pixels), rotation (radians)."""
    distance = outcome[:, :2].norm(dim=1)
    degrees = torch.rad2deg(outcome[:, 2])
    moved = (distance > config.moved_pixels) | (degrees.abs() > config.moved_degrees)
    edges = lambda values: torch.tensor(values, dtype=outcome.dtype, device=outcome.device)
    return {"moved": moved.long(),
            "distance": torch.bucketize(distance, edges(config.distance_edges)),
            "rotation": torch.bucketize(degrees, edges(config.rotation_edges))}


def draw_arrows(images: Tensor, tip: Tensor, angle: Tensor, length: float = 10.0) -> Tensor:
    """Grey images (N, 1, H, W) in [0, 1] as RGB with a red arrow ending at `tip` (N, 2) (x, y pixels),
    pointing along `angle` (N,): the push, for the report."""
    n, _, h, w = images.shape
    rgb = images.expand(-1, 3, -1, -1).clone()
    t = torch.linspace(0, 1, 24, device=images.device)
    direction = torch.stack([torch.cos(angle), torch.sin(angle)], dim=1)  # (N, 2)
    strokes = [tip[:, None] - direction[:, None] * length * t[:, None]]  # the shaft, (N, 24, 2)
    for turn in (2.6, -2.6):  # the head: two short strokes back from the tip
        c, s = math.cos(turn), math.sin(turn)
        back = torch.stack([c * direction[:, 0] - s * direction[:, 1], s * direction[:, 0] + c * direction[:, 1]], 1)
        strokes.append(tip[:, None] + back[:, None] * 4 * t[:, None])
    points = torch.cat(strokes, dim=1).floor().long()  # (N, P, 2)
    keep = (points[..., 0] >= 0) & (points[..., 0] < w) & (points[..., 1] >= 0) & (points[..., 1] < h)
    sample = torch.arange(n, device=images.device)[:, None].expand_as(keep)[keep]
    xs, ys = points[..., 0][keep], points[..., 1][keep]
    for channel, value in enumerate((1.0, 0.0, 0.0)):
        rgb[sample, channel, ys, xs] = value
    return rgb


@METHODS.register("physical-interaction")
class PhysicalInteraction(Method):
    name = "physical-interaction"
    modality = "interaction"
    Config = PhysicalInteractionConfig
    default_data = "interaction"
    default_epochs = 10
    default_batch_size = 128

    def __init__(self, config: PhysicalInteractionConfig, spec: DataSpec):
        super().__init__(config, spec)
        # The shared trunk sees contact patches, not whole images: build it for the patch size.
        self.encoder = build_encoder(config.encoder, in_channels=spec.channels, image_size=config.patch_size,
                                     **config.encoder_kwargs)
        self.action_embed = nn.Sequential(nn.Linear(5, config.action_dim), nn.ReLU())
        classes = {"moved": 2, "distance": len(config.distance_edges) + 1, "rotation": len(config.rotation_edges) + 1}
        width = self.encoder.feature_dim() + config.action_dim
        self.heads = nn.ModuleDict({task: nn.Sequential(nn.Linear(width, config.hidden_dim), nn.ReLU(),
                                                        nn.Linear(config.hidden_dim, classes[task]))
                                    for task in TASKS})

    def encoder_input(self, batch: Tensor | dict[str, Tensor]) -> Tensor:
        """A poke batch gives its contact patches (what the trunk trains on); images pass through."""
        if isinstance(batch, dict):
            return to_float(contact_patches(batch["before"], batch["action"], self.config.patch_size))
        return to_float(batch)

    def predict(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """Logits of each task (N, classes) from the contact patches and the actions."""
        features = self.encoder(self.encoder_input(batch))  # (N, D)
        action = self.action_embed(action_features(batch["action"].float(), self.config.image_size,
                                                   self.config.force_scale))  # (N, A)
        joint = torch.cat([features, action], dim=1)
        return {task: head(joint) for task, head in self.heads.items()}

    def loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        logits = self.predict(batch)
        labels = outcome_labels(batch["outcome"].float(), self.config)
        losses = {task: F.cross_entropy(logits[task], labels[task]) for task in TASKS}
        metrics = {f"{task}_acc": (logits[task].argmax(1) == labels[task]).float().mean() for task in TASKS}
        metrics |= {f"{task}_loss": losses[task].detach() for task in TASKS}
        return sum(losses.values()), metrics

    @torch.no_grad()
    def examples(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """Eight pokes: before (with the push as a red arrow), the contact patch, after; true and predicted
        classes of each task as captions."""
        part = {k: v[:8] for k, v in batch.items()}
        predicted = {task: logits.argmax(1) for task, logits in self.predict(part).items()}
        truth = outcome_labels(part["outcome"].float(), self.config)
        action = part["action"].float()
        shown = {"before+push": draw_arrows(to_float(part["before"]), action[:, :2], action[:, 2]),
                 "contact patch": self.encoder_input(part), "after": to_float(part["after"])}
        for task in TASKS:
            shown[f"true_{task}"], shown[f"pred_{task}"] = truth[task], predicted[task]
        return shown
