"""Datasets as shards, for cluster jobs: ``cvkit-data convert ... --to shards`` writes them
(:mod:`~cvkit.data.streaming.convert`), ``data=streaming`` trains from them on local disk or object storage
(:mod:`~cvkit.data.streaming.module`), sample by sample in cvkit's own order (:mod:`~cvkit.data.streaming.shards`)."""
