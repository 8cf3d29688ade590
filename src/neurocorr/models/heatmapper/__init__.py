"""Keypoint heatmapper: frozen DINOv2 (or any dense backbone) + light decoder -> one heatmap per
keypoint class (start, middle, end of a gauge scale) -> keypoints by peaks or mean-shift."""
