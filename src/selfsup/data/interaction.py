"""A simulated robot poking objects on a table: before/after images, the action and the measured outcome.

After Pinto, Gandhi, Han, Park & Gupta, "The Curious Robot: Learning Visual Representations via Physical
Interactions", ECCV 2016, where a Baxter robot pushes and pokes objects on a table. Here the world is a
top-down 2-D table simulated by the pymunk (Chipmunk2D) physics engine:

- an object per table: a shape (circle, square, triangle, rectangle), a size, a material (friction
  coefficient, density and texture: a real Fashion-MNIST item of the material's class, mapped over the
  object) and hence a mass; it starts at a random pose near the middle of the table;
- friction with the table is the top-down recipe of pymunk's own examples: a pivot joint and a gear joint
  to the static table body with no bias and a maximal force mu * m * g (torque mu * m * g * r_gyration),
  i.e. Coulomb sliding friction of the material;
- the robot pokes: a pusher moving along `angle` with a lateral offset from the object's centre line touches
  the object's boundary at the contact point (a pymunk segment query) and gives an impulse of size `force`
  there (`apply_impulse_at_world_point`); the engine then runs `SIM_STEPS` steps of 1/60 s;
- the outcome is read from the engine's body state: displacement (dx, dy) of the centre of mass in
  pixels, rotation in radians (counter-clockwise in world coordinates, where y grows downwards in the image,
  so it looks clockwise on screen) and whether the object moved (more than `MOVED_PIXELS` or `MOVED_RADIANS`).

All tables of a chunk live in one pymunk space and are stepped together (bodies and friction joints only:
the shapes stay out of the space, so tables never touch and there is no broad phase), so a few thousand
interactions take seconds. Images are rendered top-down with torch for the whole batch at once (2x
supersampled, then averaged): 64x64 greyscale, world units are pixels (scaled down from the paper's camera images; say so where quoted).

`batch(index)` is what the pretext task may see: a dict of "before", "after" (uint8 (B, 1, 64, 64)), "action"
(float (B, 4): contact x, contact y, push angle, force) and "outcome" (float (B, 3): dx, dy, rotation). The
object's properties (shape, mass bin, material), which the downstream tasks classify, stay out of it.
`labels` are the shape classes; `property_views` gives object-centred crops labelled by any property.
"""
from __future__ import annotations

import hashlib
import io
import math
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from selfsup.data.base import DatasetSplits, DataSpec, ImageData
from selfsup.data.registry import DATASETS
from selfsup.errors import SelfSupError

SHAPES = ("circle", "square", "triangle", "rectangle")
# name, friction coefficient mu, density (mass per square pixel), Fashion-MNIST class of its texture
MATERIALS = (("ice", 0.1, 0.5, 8), ("wood", 0.3, 1.0, 1), ("rubber", 0.9, 1.2, 7), ("metal", 0.25, 3.0, 9))
MASS_BINS = ("light", "medium", "heavy")
MASS_EDGES = (100.0, 200.0)  # mass bin edges (the tertiles of the default size / material distribution)
PROPERTIES = {"shape": SHAPES, "mass": MASS_BINS, "material": tuple(m[0] for m in MATERIALS)}
GRAVITY = 100.0  # pixels / s^2: the normal force mu * m * g of table friction
SIM_STEPS, DT = 60, 1 / 60  # one simulated second after the poke
MOVED_PIXELS, MOVED_RADIANS = 1.0, math.radians(3)
TABLE, INK_LOW, INK_HIGH = 24, 70, 250  # grey of the table; textures map to [INK_LOW, INK_HIGH]
CACHE_DIR = Path.home() / ".cache/selfsup/interaction"
VERSION = 1  # bump when the simulation or rendering changes: the cache is keyed by it


@dataclass
class Objects:
    """One object per table: shape and material indices (N,), size s (N,) in pixels (a circle's radius;
    other shapes scale with it, see `shape_vertices`), mass (N,), start position (N, 2) and angle (N,),
    and the Fashion-MNIST texture (N, 1, 28, 28) uint8."""

    shape: Tensor
    material: Tensor
    size: Tensor
    mass: Tensor
    position: Tensor
    angle: Tensor
    texture: Tensor

    def __len__(self) -> int:
        return len(self.shape)


def shape_vertices(shape: int, s: float) -> list[tuple[float, float]]:
    """The polygon of `shape` (not a circle) of size `s`, in the body's frame, counter-clockwise."""
    if SHAPES[shape] == "square":
        h = 0.85 * s
        return [(-h, -h), (h, -h), (h, h), (-h, h)]
    if SHAPES[shape] == "rectangle":
        return [(-1.2 * s, -0.6 * s), (1.2 * s, -0.6 * s), (1.2 * s, 0.6 * s), (-1.2 * s, 0.6 * s)]
    if SHAPES[shape] == "triangle":  # equilateral, circumradius 1.2 s, inradius 0.6 s
        return [(1.2 * s * math.cos(a), 1.2 * s * math.sin(a)) for a in (math.pi / 2, 7 * math.pi / 6, 11 * math.pi / 6)]
    raise ValueError(f"{SHAPES[shape]} is not a polygon")


def area(shape: Tensor, size: Tensor) -> Tensor:
    """Area in square pixels of each shape of size `size` (matches `shape_vertices` and the circle)."""
    per_s2 = torch.tensor([math.pi, 1.7 ** 2, 3 * math.sqrt(3) / 4 * 1.2 ** 2, 2.4 * 1.2])
    return per_s2[shape] * size ** 2


def mass_bin(mass: Tensor) -> Tensor:
    return torch.bucketize(mass, torch.tensor(MASS_EDGES))


def draw_objects(textures: Tensor, texture_labels: Tensor, n: int, generator: torch.Generator,
                 image_size: int = 64) -> Objects:
    """`n` random objects; a material's texture is a random item of its Fashion-MNIST class."""
    g = generator
    shape = torch.randint(len(SHAPES), (n,), generator=g)
    material = torch.randint(len(MATERIALS), (n,), generator=g)
    size = 5.0 + 4.0 * torch.rand(n, generator=g, dtype=torch.float64)
    density = torch.tensor([m[2] for m in MATERIALS], dtype=torch.float64)[material]
    density = density * torch.exp((torch.rand(n, generator=g, dtype=torch.float64) - 0.5) * 0.4)  # +-20 %
    mass = area(shape, size.float()).double() * density
    position = image_size / 2 + (torch.rand(n, 2, generator=g, dtype=torch.float64) - 0.5) * 12
    angle = torch.rand(n, generator=g, dtype=torch.float64) * 2 * math.pi
    pick = torch.empty(n, dtype=torch.long)
    for k, (_, _, _, cls) in enumerate(MATERIALS):  # a loop over the 4 materials, not over objects
        items = (texture_labels == cls).nonzero().view(-1)
        if len(items) == 0:
            raise SelfSupError(f"the texture images hold no item of Fashion-MNIST class {cls} for material "
                               f"{MATERIALS[k][0]!r}: pass Fashion-MNIST images with their labels")
        chosen = material == k
        pick[chosen] = items[torch.randint(len(items), (int(chosen.sum()),), generator=g)]
    return Objects(shape, material, size, mass, position, angle, textures[pick])


def draw_actions(n: int, generator: torch.Generator, max_force: float = 2500.0) -> tuple[Tensor, Tensor, Tensor]:
    """Push angle (N,) in radians, lateral offset (N,) as a fraction of the size, force (N,) (an impulse)."""
    g = generator
    angle = torch.rand(n, generator=g, dtype=torch.float64) * 2 * math.pi
    offset = (torch.rand(n, generator=g, dtype=torch.float64) - 0.5)  # |offset| <= 0.5 s < the inradius 0.6 s
    force = max_force * torch.rand(n, generator=g, dtype=torch.float64) ** 1.5  # more gentle pokes than hard ones
    return angle, offset, force


def build_bodies(objects: Objects):
    """A pymunk space holding every object on its own table (one shared static body, no collisions), the
    bodies and their shapes."""
    import pymunk
    space = pymunk.Space()
    space.gravity = (0, 0)
    static = space.static_body
    bodies, shapes = [], []
    for i in range(len(objects)):
        kind, s = int(objects.shape[i]), float(objects.size[i])
        mu, mass = MATERIALS[int(objects.material[i])][1], float(objects.mass[i])
        if SHAPES[kind] == "circle":
            moment = pymunk.moment_for_circle(mass, 0, s)
            body = pymunk.Body(mass, moment)
            shape = pymunk.Circle(body, s)
        else:
            vertices = shape_vertices(kind, s)
            moment = pymunk.moment_for_poly(mass, vertices)
            body = pymunk.Body(mass, moment)
            shape = pymunk.Poly(body, vertices)
        body.position = (float(objects.position[i, 0]), float(objects.position[i, 1]))
        body.angle = float(objects.angle[i])
        shape.friction = mu
        # Top-down table friction (pymunk's examples/tank.py): joints to the table that resist sliding and
        # turning with at most the Coulomb force mu m g and its torque at the radius of gyration.
        pivot = pymunk.PivotJoint(static, body, (0, 0), (0, 0))
        gear = pymunk.GearJoint(static, body, 0.0, 1.0)
        pivot.max_bias = gear.max_bias = 0
        pivot.max_force = mu * mass * GRAVITY
        gear.max_force = mu * mass * GRAVITY * math.sqrt(moment / mass)
        # The shape stays out of the space: tables never touch, and without shapes the engine has no
        # broad phase to run (all tables overlap in space). It only answers the pusher's segment query.
        space.add(body, pivot, gear)
        shape.cache_bb()
        bodies.append(body)
        shapes.append(shape)
    return space, bodies, shapes


def contact_points(shapes, objects: Objects, angle: Tensor, offset: Tensor) -> Tensor:
    """Where a pusher moving along `angle`, `offset` * size to the side of the centre, first touches each
    object (N, 2), found by a segment query against the engine's shape."""
    points = torch.empty(len(objects), 2, dtype=torch.float64)
    for i, shape in enumerate(shapes):
        d = (math.cos(angle[i]), math.sin(angle[i]))
        side = float(offset[i] * objects.size[i])
        cx, cy = float(objects.position[i, 0]), float(objects.position[i, 1])
        far = 4 * float(objects.size[i])
        start = (cx - d[0] * far - d[1] * side, cy - d[1] * far + d[0] * side)
        end = (cx - d[1] * side, cy + d[0] * side)
        hit = shape.segment_query(start, end)
        if hit is None:  # cannot happen for |offset| < inradius; keep the engine honest if it does
            raise RuntimeError(f"push {i} missed its object")
        points[i] = torch.tensor([hit.point.x, hit.point.y], dtype=torch.float64)
    return points


def simulate(objects: Objects, angle: Tensor, offset: Tensor, force: Tensor, steps: int = SIM_STEPS):
    """Poke every object once and run the engine: the contact points (N, 2) and the pymunk bodies after
    `steps` steps (their `position` and `angle` are the engine's final state)."""
    space, bodies, shapes = build_bodies(objects)
    contact = contact_points(shapes, objects, angle, offset)
    for i, body in enumerate(bodies):
        j = float(force[i])
        body.apply_impulse_at_world_point((j * math.cos(angle[i]), j * math.sin(angle[i])),
                                          (float(contact[i, 0]), float(contact[i, 1])))
    for _ in range(steps):
        space.step(DT)
    return contact, bodies


# --- rendering -------------------------------------------------------------------------------------------
def render(objects: Objects, position: Tensor, angle: Tensor, image_size: int = 64, supersample: int = 2,
           window: int = 32) -> Tensor:
    """Top-down greyscale images uint8 (N, 1, S, S) of each object at `position` (N, 2) and `angle` (N,):
    the texture follows the object's pose; pixel (row, col) shows world point (col + 0.5, row + 0.5).

    Only a `window` x `window` square around each object is drawn (objects reach at most 1.35 * 9 ~ 12.1
    pixels from their centre: a rectangle's corner), then pasted onto the table: 4x fewer pixels than the image.
    """
    n, pad = len(objects), window
    corner = (position.round().long() - window // 2).clamp(-pad, image_size)  # window's top-left pixel (x, y)
    offsets = (torch.arange(window * supersample, dtype=torch.float32) + 0.5) / supersample
    y = corner[:, 1, None, None].float() + offsets[None, :, None]  # (N, W', 1) world y of each row
    x = corner[:, 0, None, None].float() + offsets[None, None, :]  # (N, 1, W')
    px, py = x - position[:, 0, None, None].float(), y - position[:, 1, None, None].float()
    c, s = torch.cos(angle.float())[:, None, None], torch.sin(angle.float())[:, None, None]
    u, v = c * px + s * py, -s * px + c * py  # the pixel in the body's frame (rotate by -angle), (N, W', W')
    size = objects.size.float()[:, None, None]
    kind = objects.shape[:, None, None]
    inside = (kind == 0) & (u ** 2 + v ** 2 <= size ** 2)
    inside |= (kind == 1) & (u.abs() <= 0.85 * size) & (v.abs() <= 0.85 * size)
    triangle = torch.ones_like(inside)
    for a in (3 * math.pi / 2, math.pi / 6, 5 * math.pi / 6):  # outward normals of the three edges
        triangle &= math.cos(a) * u + math.sin(a) * v <= 0.6 * size
    inside |= (kind == 2) & triangle
    inside |= (kind == 3) & (u.abs() <= 1.2 * size) & (v.abs() <= 0.6 * size)
    extent = torch.where(objects.shape == 0, 1.0, torch.where(objects.shape == 1, 0.85, 1.2))[:, None, None] * size
    grid = torch.stack([u / extent, v / extent], dim=-1)  # texture spans the shape's bounding square
    ink = F.grid_sample(objects.texture.float(), grid, mode="bilinear", padding_mode="border", align_corners=False)
    ink = INK_LOW + ink[:, 0] * ((INK_HIGH - INK_LOW) / 255)
    patch = F.avg_pool2d(torch.where(inside, ink, torch.full_like(ink, TABLE))[:, None], supersample)[:, 0]
    canvas = torch.full((n, image_size + 2 * pad, image_size + 2 * pad), float(TABLE))
    steps = torch.arange(window)
    rows = (corner[:, 1, None] + pad + steps).view(n, window, 1)
    cols = (corner[:, 0, None] + pad + steps).view(n, 1, window)
    canvas[torch.arange(n).view(n, 1, 1), rows, cols] = patch
    image = canvas[:, pad:pad + image_size, pad:pad + image_size]
    return image[:, None].round().clamp(0, 255).to(torch.uint8)


# --- the data object -------------------------------------------------------------------------------------
@dataclass
class InteractionData:
    """Pokes: before/after images, actions and outcomes (what the pretext sees), and the poked objects'
    properties (N, 3) as indices into PROPERTIES' classes (what only the downstream evaluation reads)."""

    before: Tensor  # uint8 (N, 1, S, S)
    after: Tensor  # uint8 (N, 1, S, S)
    action: Tensor  # float32 (N, 4): contact x, contact y (pixels), push angle (radians), force (impulse)
    outcome: Tensor  # float32 (N, 3): dx, dy (pixels), rotation (radians)
    properties: Tensor  # int64 (N, 3): shape, mass bin, material
    centre: Tensor  # float32 (N, 2): the object's start position, for object-centred downstream crops
    labels: Tensor | None = None  # the shape classes (for seeded splits and `selfsup evaluate`)
    classes: list[str] = field(default_factory=lambda: list(SHAPES))
    name: str = "interaction"

    def __post_init__(self) -> None:
        if self.labels is None:
            self.labels = self.properties[:, 0].clone()

    def __len__(self) -> int:
        return len(self.before)

    @property
    def moved(self) -> Tensor:
        return moved(self.outcome)

    @property
    def spec(self) -> DataSpec:
        _, c, h, w = self.before.shape
        return DataSpec("interaction", channels=c, height=h, width=w, num_classes=len(self.classes), size=len(self),
                        extra={"properties": {k: list(v) for k, v in PROPERTIES.items()}})

    def subset(self, index: Tensor, name: str | None = None) -> "InteractionData":
        return replace(self, before=self.before[index], after=self.after[index], action=self.action[index],
                       outcome=self.outcome[index], properties=self.properties[index], centre=self.centre[index],
                       labels=None if self.labels is None else self.labels[index], name=name or self.name)

    def batch(self, index: Tensor) -> dict[str, Tensor]:
        """What a pretext task sees: images, action and the simulator's outcome; never the properties."""
        return {"before": self.before[index], "after": self.after[index], "action": self.action[index],
                "outcome": self.outcome[index]}


def moved(outcome: Tensor) -> Tensor:
    """Whether each object moved: displaced more than MOVED_PIXELS or turned more than MOVED_RADIANS."""
    return (outcome[:, :2].norm(dim=1) > MOVED_PIXELS) | (outcome[:, 2].abs() > MOVED_RADIANS)


def make_interactions(textures: Tensor, texture_labels: Tensor, num: int, *, seed: int = 0, image_size: int = 64,
                      max_force: float = 2500.0, chunk: int = 1024, name: str = "interaction") -> InteractionData:
    """`num` pokes of random objects textured with Fashion-MNIST `textures` (K, 1, 28, 28) uint8 of
    classes `texture_labels` (K,); deterministic for a seed."""
    if textures.dtype != torch.uint8 or textures.dim() != 4 or textures.shape[1] != 1:
        raise SelfSupError(f"textures must be greyscale uint8 images (K, 1, H, W), got {textures.dtype} "
                           f"{tuple(textures.shape)}")
    if num < 1:
        raise SelfSupError(f"the number of interactions must be at least 1, got {num}")
    g = torch.Generator().manual_seed(seed)
    objects = draw_objects(textures, texture_labels, num, g, image_size)
    angle, offset, force = draw_actions(num, g, max_force)
    contact, final = torch.empty(num, 2, dtype=torch.float64), torch.empty(num, 3, dtype=torch.float64)
    for part in torch.arange(num).split(chunk):
        objs = Objects(*(getattr(objects, f)[part] for f in Objects.__dataclass_fields__))
        points, bodies = simulate(objs, angle[part], offset[part], force[part])
        contact[part] = points
        final[part] = torch.tensor([[b.position.x, b.position.y, b.angle] for b in bodies], dtype=torch.float64)
    outcome = final - torch.cat([objects.position, objects.angle[:, None]], dim=1)
    before = render(objects, objects.position, objects.angle, image_size)
    after = render(objects, final[:, :2], final[:, 2], image_size)
    action = torch.cat([contact, angle[:, None], force[:, None]], dim=1).float()
    properties = torch.stack([objects.shape, mass_bin(objects.mass.float()), objects.material], dim=1)
    return InteractionData(before, after, action, outcome.float(), properties, objects.position.float(), name=name)


def property_views(data: InteractionData, prop: str, size: int = 32, name: str | None = None) -> ImageData:
    """Object-centred crops (N, 1, size, size) of the before images, labelled by property `prop`
    ("shape", "mass" or "material"): the downstream few-label tasks."""
    if prop not in PROPERTIES:
        raise SelfSupError(f"unknown object property {prop!r}; choose one of {', '.join(PROPERTIES)}")
    half = size // 2
    padded = F.pad(data.before, (half, half, half, half), value=TABLE)
    corner = data.centre.floor().long()  # the pixel holding the centre; top-left in the padded image
    rows = (corner[:, 1, None] + torch.arange(size)).view(-1, 1, size, 1)
    cols = (corner[:, 0, None] + torch.arange(size)).view(-1, 1, 1, size)
    crops = padded[torch.arange(len(data)).view(-1, 1, 1, 1), torch.zeros(1, 1, 1, 1, dtype=torch.long), rows, cols]
    labels = data.properties[:, list(PROPERTIES).index(prop)]
    return ImageData(crops, labels.clone(), list(PROPERTIES[prop]), name=name or f"{data.name}-{prop}")


# --- the registered source, cached as uint8 ---------------------------------------------------------------
def cached_interactions(textures: Tensor, texture_labels: Tensor, num: int, seed: int, name: str,
                        cache_dir: Path | None = CACHE_DIR) -> InteractionData:
    """`make_interactions`, read back from an atomically written .npz cache keyed by every input."""
    import pymunk
    key = hashlib.sha1()
    for part in (VERSION, pymunk.version, num, seed, textures.numpy().tobytes(), texture_labels.numpy().tobytes()):
        key.update(part if isinstance(part, bytes) else repr(part).encode())
    path = None if cache_dir is None else Path(cache_dir) / f"{name}-{key.hexdigest()[:16]}.npz"
    fields = ("before", "after", "action", "outcome", "properties", "centre")
    if path is not None and path.is_file():
        with np.load(path) as arrays:
            return InteractionData(*(torch.from_numpy(arrays[f]) for f in fields), name=name)
    data = make_interactions(textures, texture_labels, num, seed=seed, name=name)
    if path is not None:
        from selfsup.utils import atomic_write

        def write(tmp: str) -> None:
            buffer = io.BytesIO()
            np.savez_compressed(buffer, **{f: getattr(data, f).numpy() for f in fields})  # mostly bare table
            Path(tmp).write_bytes(buffer.getvalue())
        try:  # a cache we cannot write (read-only home) only costs time
            atomic_write(path, write)
        except (OSError, SelfSupError):
            pass
    return data


@DATASETS.register("interaction")
def interaction() -> DatasetSplits:
    """10,000 train / 2,000 test pokes; textures from Fashion-MNIST train / test items."""
    from selfsup.data.sources import fashion_mnist
    parts = fashion_mnist()
    return DatasetSplits(
        cached_interactions(parts.train.images, parts.train.labels, 10000, 0, "interaction-train"),
        cached_interactions(parts.test.images, parts.test.labels, 2000, 1, "interaction-test"))
