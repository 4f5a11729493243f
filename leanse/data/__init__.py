"""Data: corpus readers, the embedded demo corpus, dynamic mixing, partitions, datasets."""
