"""The trunk-feature cache: the frozen trunk runs once per (image content, backbone, face policy).

A trained head never needs the trunk again: ``extract_features`` returns trunk outputs for a list of
files, reading them from ``paths.home()/features`` when they were computed before and computing (and
storing) only the missing ones. The key of one entry is

    sha256(image bytes)  inside a folder named by  sha256(canonical JSON of backbone.describe() + face policy)

so a change of weights, preprocessing, split point (``--trainable-from`` cut) or detection/alignment policy
never reuses stale features; augmented copies of the crops (``training/augment.py``) add the augmentation and
the copy number to the folder's key. Every image is stored with the face that was used: the detected face
chosen by the face rule (``main`` or ``largest``, part of the key) when there is one, otherwise the centre
crop together with the note ``"no face found: centre crop used"``, and how many faces the photo had; what to
do with face-less photos (error, centre crop, skip) is decided when the features are used, so one cache
serves every ``--no-face`` policy. Entries are single ``.npz`` files written atomically (temp + rename); an
entry that is unreadable, of the wrong shape or not finite is recomputed.
"""

from __future__ import annotations

import hashlib
import io
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from facetwin.core import paths
from facetwin.core.jsonsafe import canonical_json
from facetwin.errors import FacetwinError
from facetwin.vision.faces import NOTE_CENTRE, crop_batches
from facetwin.vision.prominence import DEFAULT_FACE_RULE, check_rule

CACHE_FORMAT = 1


def face_policy(backbone, face: str = DEFAULT_FACE_RULE) -> dict:
    """The detection/alignment policy that (together with ``backbone.describe()``) determines a feature; ``face``
    is the rule that chooses among several faces."""
    spec = backbone.input
    crop = {"input": spec.describe()} if spec.parts else {"crop_size": int(spec.size), "alignment": spec.alignment}
    return {
        "format": CACHE_FORMAT,
        "detect": True,
        "face": check_rule(face),
        "no_face": "centre crop stored with a note",
        **crop,
    }


def _key_doc(backbone, augment=None, variant: int = 0, face: str = DEFAULT_FACE_RULE) -> dict:
    doc = {"backbone": backbone.describe(), "policy": face_policy(backbone, face)}
    if augment is not None and variant:  # augmented copies of the crops (training/augment.py), copy ``variant``
        doc["augment"] = {**augment.describe(), "variant": int(variant)}
    return doc


def cache_key(backbone, augment=None, variant: int = 0, face: str = DEFAULT_FACE_RULE) -> str:
    """Folder name for one backbone + face policy (+ augmented copy): sha256 of their canonical JSON, 24 hex."""
    return hashlib.sha256(canonical_json(_key_doc(backbone, augment, variant, face)).encode()).hexdigest()[:24]


def cache_dir(backbone, augment=None, variant: int = 0, face: str = DEFAULT_FACE_RULE) -> Path:
    """Where these features live (created, with a ``key.json`` saying what they are)."""
    folder = paths.home() / "features" / cache_key(backbone, augment, variant, face)
    key_file = folder / "key.json"
    if not key_file.exists():
        doc = _key_doc(backbone, augment, variant, face)
        paths.atomic_write_text(key_file, json.dumps(doc, indent=2, default=str))
    return folder


@dataclass
class FeatureSet:
    """Trunk features of a list of files, row ``i`` for ``files[i]`` (NaN rows where ``ok`` is False)."""

    files: list[str]
    features: np.ndarray  # (N, feature_dim) float32
    ok: np.ndarray  # (N,) bool: the file was read and has a feature row
    no_face: list[str] = field(default_factory=list)  # files whose row is a centre crop (no face was found)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (file, message): unreadable files
    computed: int = 0  # rows computed by the trunk in this call
    cached: int = 0  # rows read from the cache
    trunk_calls: int = 0
    seconds: float = 0.0
    faces_found: np.ndarray | None = None  # (N,) int: faces the detector found per file (-1: unknown)

    def __post_init__(self) -> None:
        if self.faces_found is None:
            self.faces_found = np.full(len(self.files), -1, dtype=np.int32)


def _entry_path(folder: Path, digest: str) -> Path:
    return folder / digest[:2] / f"{digest}.npz"


def _read_entry(path: Path, dim: int) -> tuple[np.ndarray, str, int] | None:
    """A cache entry ``(feature, note, faces found)`` if it is readable, of shape ``(dim,)``, finite and with a
    text note (faces found: -1 in entries of older releases); else None (the entry is then recomputed and
    rewritten): a damaged cache can cost time, never poison a model."""
    try:
        with np.load(path, allow_pickle=False) as data:
            feature, note = data["feature"], data["note"]
            if feature.shape != (dim,) or feature.dtype.kind != "f" or note.dtype.kind != "U" or note.ndim != 0:
                return None
            faces = data["faces"] if "faces" in data.files else np.array(-1)
            if faces.ndim != 0 or faces.dtype.kind not in "iu":
                return None
            feature, note, faces = feature.astype(np.float32), str(note), int(faces)
    except Exception:  # noqa: BLE001 - BadZipFile, OSError, ValueError, EOFError, zlib.error...: recompute
        return None
    return (feature, note, faces) if np.isfinite(feature).all() else None


def _write_entry(path: Path, feature: np.ndarray, note: str, faces: int) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, feature=np.asarray(feature, dtype=np.float32), note=np.array(note), faces=np.array(int(faces)))
    paths.atomic_write_bytes(path, buffer.getvalue(), private=True)  # trunk features of faces: owner-only


def extract_features(
    backbone,
    files: list[str | Path],
    *,
    batch_size: int = 32,
    progress: bool = True,
    desc: str = "trunk features",
    augment=None,
    variant: int = 0,
    face: str = DEFAULT_FACE_RULE,
) -> FeatureSet:
    """Trunk features for ``files``, from the cache where possible; unreadable files are reported, not fatal.

    A composite backbone (``sface+dlib``) is extracted part by part, each from its own cache, and joined.
    With ``augment`` and ``variant`` > 0, the features of augmented copy ``variant`` of every crop (cached apart).
    ``face`` is the rule that chooses the face of a photo with several (``main`` or ``largest``).
    """
    if getattr(backbone, "parts", None):
        parts = [
            extract_features(part, files, batch_size=batch_size, progress=progress, desc=desc, augment=augment,
                             variant=variant, face=face)
            for part in backbone.parts
        ]
        return _joined(backbone, parts)
    start = time.perf_counter()
    names = [str(f) for f in files]
    folder = cache_dir(backbone, augment, variant, face)
    dim = int(backbone.feature_dim)
    result = FeatureSet(
        files=names, features=np.full((len(names), dim), np.nan, np.float32), ok=np.zeros(len(names), bool)
    )
    notes: list[str] = [""] * len(names)
    misses: list[tuple[int, Path]] = []  # (row, cache entry) of each file sent to the trunk, in order

    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(names), desc=desc, unit="img", dynamic_ncols=True, leave=False, disable=None)

    def uncached():
        """Read every file once; yield ``(label, bytes)`` of those the cache does not hold."""
        for row, name in enumerate(names):
            try:
                data = Path(name).read_bytes()
            except OSError as exc:
                result.failed.append((name, f"{name}: cannot read the file ({exc.strerror or exc})."))
                if bar is not None:
                    bar.update(1)
                continue
            key = _entry_path(folder, hashlib.sha256(data).hexdigest())
            entry = _read_entry(key, dim) if key.exists() else None
            if entry is not None:
                result.features[row], notes[row], result.faces_found[row] = entry
                result.ok[row] = True
                result.cached += 1
                if bar is not None:
                    bar.update(1)
                continue
            misses.append((row, key))
            yield name, data

    try:
        for batch in crop_batches(uncached(), backbone.input, batch_size=batch_size, no_face="center", face=face):
            result.failed += [(names[misses[i][0]], message) for i, message in batch.failed]
            if batch.rows:
                augmented = (lambda crops: augment.batch(crops, variant)) if augment is not None and variant else None
                _compute(backbone, batch, [misses[i] for i in batch.rows], result, notes, augmented)
            if bar is not None:
                bar.update(batch.done)
    finally:
        if bar is not None:
            bar.close()
    result.no_face = [names[i] for i in range(len(names)) if result.ok[i] and notes[i] == NOTE_CENTRE]
    result.seconds = time.perf_counter() - start
    return result


def _compute(backbone, batch, targets: list[tuple[int, Path]], result: FeatureSet, notes: list[str],
             transform=None) -> None:
    """Run the trunk on one batch of crops (``transform``-ed first, if given); store each feature in ``result``
    and in the cache."""
    dim = int(backbone.feature_dim)
    crops = np.stack(batch.crops)
    feats = np.asarray(backbone.trunk(transform(crops) if transform else crops), dtype=np.float32)
    result.trunk_calls += 1
    if feats.shape != (len(batch.rows), dim):
        raise FacetwinError(f"backbone {backbone.name} returned trunk features of shape {feats.shape}.")
    if not np.isfinite(feats).all():
        raise FacetwinError(f"backbone {backbone.name} returned NaN or infinite trunk features.")
    for (row, key), crop, feat in zip(targets, batch.faces, feats, strict=True):
        notes[row] = crop.note
        result.faces_found[row] = crop.faces_found
        result.features[row] = feat
        result.ok[row] = True
        _write_entry(key, feat, crop.note, crop.faces_found)
    result.computed += len(batch.rows)


def _joined(composite, parts: list[FeatureSet]) -> FeatureSet:
    """The composite's feature rows from its parts' (a row is usable when every part has it)."""
    ok = np.logical_and.reduce([fs.ok for fs in parts])
    features = np.full((len(ok), int(composite.feature_dim)), np.nan, np.float32)
    if ok.any():
        features[ok] = composite.join([fs.features[ok] for fs in parts])
    failed = list({name: message for fs in parts for name, message in fs.failed}.items())
    no_face = sorted({name for fs in parts for name in fs.no_face})
    return FeatureSet(
        files=parts[0].files,
        features=features,
        ok=ok,
        no_face=[name for name in parts[0].files if name in set(no_face)],
        failed=failed,
        faces_found=parts[0].faces_found,
        computed=max(fs.computed for fs in parts),
        cached=min(fs.cached for fs in parts),
        trunk_calls=sum(fs.trunk_calls for fs in parts),
        seconds=sum(fs.seconds for fs in parts),
    )
