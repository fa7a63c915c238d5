"""PyTorch-only core of crackscan: losses, backbones, data, training and inference.

This package imports only torch, torchvision, PIL and numpy. It never reads the
environment or the database; callers pass plain dataclass configs.
"""
