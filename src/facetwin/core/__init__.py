"""The floor everything stands on: files and digests, downloads, model assets, JSON, distances, CPU."""
