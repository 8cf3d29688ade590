"""ImageNet's per-channel mean and standard deviation (RGB, images in [0, 1]): the input statistics of
every backbone pretrained on ImageNet (torchvision's ResNet and VGG, DINOv2)."""

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def rgb_input_description(norm: str, resize: str) -> dict:
    """What an exported network expects of an RGB image in [0, 1] whose normalisation ``norm``
    (``imagenet``, ``per_image``, ``none``) happens inside the network (the JSON beside an export)."""
    imagenet = norm == "imagenet"
    return {"channels": 3, "colour": "RGB", "value_range": [0.0, 1.0], "resize": resize,
            "normalisation": f"{norm}, inside the network", "mean": list(IMAGENET_MEAN) if imagenet else None,
            "std": list(IMAGENET_STD) if imagenet else None}
