"""Where a model's default gallery lives, shared by the CLI and the service: ``$FACETWIN_HOME/galleries/NAME.db``.

NAME is the plain model's source (``sface``, ``sface+arcface-mbf-flip``) or ``run-`` and 16 hex digits of a
trained run's fingerprint. Galleries that earlier releases' ``facetwin serve`` named by fingerprint alone are
renamed to this name the first time it is asked for (with their ``-wal``/``-shm`` files), so nothing is lost.
"""

from __future__ import annotations

import os
from pathlib import Path

from facetwin.core import paths

SUFFIXES = ("", "-wal", "-shm")


def default_gallery(source: str, fingerprint: str, *, is_run: bool) -> Path:
    """The default gallery file of the model with this ``source`` and ``fingerprint`` (see the module docstring)."""
    folder = paths.private_folder(paths.home() / "galleries")
    name = f"run-{fingerprint[:16]}" if is_run else source.replace(":", "-")
    target = folder / f"{name}.db"
    earlier = folder / f"{fingerprint[:16]}.db"
    if earlier.is_file() and not target.exists():
        for suffix in SUFFIXES:
            old = earlier.with_name(earlier.name + suffix)
            if old.exists():
                os.replace(old, target.with_name(target.name + suffix))
    return target


def model_gallery(model) -> Path:
    """:func:`default_gallery` of a loaded :class:`facetwin.model.Model`."""
    from facetwin.loading import is_run_dir

    return default_gallery(model.source, model.fingerprint, is_run=is_run_dir(model.source))


__all__ = ["default_gallery", "model_gallery"]
