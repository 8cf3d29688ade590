"""AGFusion: siamese same-figure classifier with a mutual attention gate."""
