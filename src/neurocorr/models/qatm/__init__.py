"""QATM: quality-aware template matching on VGG19 features, cross-view retrieval fine-tuning."""
