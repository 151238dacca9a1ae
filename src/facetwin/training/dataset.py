"""A folder-per-person data set after the frozen trunk: list the images, extract (cached), apply the no-face policy."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from facetwin.core.text import count
from facetwin.errors import FacetwinError
from facetwin.training.features import FeatureSet, extract_features
from facetwin.vision.prominence import DEFAULT_FACE_RULE

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".pgm", ".ppm", ".pbm", ".bmp", ".webp", ".tif", ".tiff", ".gif"}

@dataclass
class Dataset:
    """A folder-per-person data set after the trunk: one feature row per usable image."""

    root: str
    files: list[str]  # usable images, person by person (sorted), files sorted
    labels: np.ndarray  # (N,) int person index
    people: list[str]
    features: np.ndarray  # (N, feature_dim) float32
    unreadable: list[tuple[str, str]] = field(default_factory=list)
    no_face: list[str] = field(default_factory=list)  # files without a detected face (centre crop or skipped)
    no_face_action: str = "center"
    extraction: dict = field(default_factory=dict)
    augmented: np.ndarray | None = None  # (V, N, feature_dim): augmented copies of every row (training/augment.py)

    def report(self) -> dict:
        return {
            "images": len(self.files),
            "people": len(set(self.labels.tolist())),
            "unreadable": len(self.unreadable),
            "unreadable_first": [m for _, m in self.unreadable[:5]],
            "no_face": len(self.no_face),
            "no_face_action": {"center": "centre crop used", "skip": "skipped"}.get(self.no_face_action, "error"),
            "no_face_first": self.no_face[:5],
        }


def list_images(data_dir: str | Path) -> tuple[list[str], list[str]]:
    """``(files, person_of_each_file)`` of a folder-per-person directory (hidden files ignored)."""
    root = Path(data_dir)
    if not root.is_dir():
        raise FacetwinError(f"{root}: not a directory (expected one sub-folder per person).")
    files: list[str] = []
    owners: list[str] = []
    for person in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for f in sorted(person.iterdir()):
            if f.is_file() and not f.name.startswith(".") and f.suffix.lower() in IMAGE_SUFFIXES:
                files.append(str(f))
                owners.append(person.name)
    if not files:
        raise FacetwinError(f"{root}: no images found in person sub-folders.")
    return files, owners


def load_dataset(
    data_dir: str | Path,
    backbone,
    *,
    no_face: str = "center",
    progress: bool = True,
    exclude_people=(),
    augment=None,
    face: str = DEFAULT_FACE_RULE,
) -> Dataset:
    """List, extract (cached) and filter a folder-per-person data set for training (+ augmented copies); ``face``
    chooses the face of a photo with several."""
    files, owners = list_images(data_dir)
    excluded = set(exclude_people)
    keep = [i for i, o in enumerate(owners) if o not in excluded]
    files = [files[i] for i in keep]
    owners = [owners[i] for i in keep]
    fs = extract_features(backbone, files, progress=progress, desc="trunk features", face=face)
    data = dataset_from_features(str(data_dir), fs, owners, no_face=no_face)
    if augment is not None:
        data.augmented = augmented_copies(backbone, data.files, data.features, augment, progress=progress, face=face)
    return data


def augmented_copies(
    backbone, files: list[str], clean: np.ndarray, augment, *, progress: bool = True, face: str = DEFAULT_FACE_RULE
) -> np.ndarray:
    """``(V, N, feature_dim)``: the features of ``augment.variants`` augmented copies of every file (cached like
    clean features); a copy that cannot be made keeps the file's ``clean`` row."""
    copies = []
    for v in range(1, augment.variants + 1):
        aug = extract_features(backbone, files, progress=progress, desc=f"augmented copy {v}", augment=augment,
                               variant=v, face=face)
        copies.append(np.where(aug.ok[:, None], aug.features, clean))
    return np.stack(copies)


def dataset_from_features(root: str, fs: FeatureSet, owners: list[str], *, no_face: str) -> Dataset:
    """Apply the no-face policy and build labels from a ``FeatureSet`` of the files of ``owners``."""
    missing = set(fs.no_face)
    if no_face == "error" and fs.no_face:
        raise FacetwinError(
            f"{fs.no_face[0]}: no face found ({count(len(fs.no_face), 'image')} without a face; "
            "use --no-face center or --no-face skip)."
        )
    use = [i for i, f in enumerate(fs.files) if fs.ok[i] and not (no_face == "skip" and f in missing)]
    people = sorted({owners[i] for i in use})
    index = {p: k for k, p in enumerate(people)}
    return Dataset(
        root=root,
        files=[fs.files[i] for i in use],
        labels=np.array([index[owners[i]] for i in use], dtype=np.int64),
        people=people,
        features=fs.features[use],
        unreadable=list(fs.failed),
        no_face=list(fs.no_face),
        no_face_action=no_face,
        extraction={"computed": fs.computed, "cached": fs.cached, "trunk_calls": fs.trunk_calls, "seconds": fs.seconds},
    )
