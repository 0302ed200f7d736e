"""Video shards: the Parquet format, the YouTube-8M converter, the synthetic generator and the reader."""
