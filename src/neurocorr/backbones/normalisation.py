"""ImageNet's per-channel mean and standard deviation (RGB, images in [0, 1]): the input statistics of
every backbone pretrained on ImageNet (torchvision's ResNet and VGG, DINOv2)."""

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
