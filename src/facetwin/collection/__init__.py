"""A photo collection as an index of every face (Parquet shards), built in-process or on Ray; find a person in it."""

from facetwin.collection.indexer import IndexSummary, index
from facetwin.collection.shards import IndexStore

__all__ = ["IndexStore", "IndexSummary", "index"]
