"""Compress MobileNet-small (studies/models/mobilenet_small.keras) on Fashion-MNIST: search, knee, fine-tune once.

python studies/compress_mobilenet.py [--trials N] [--epochs E] [--proxy model] [--quick]
"""

from __future__ import annotations

from compression import parse_args, run

if __name__ == "__main__":
    run(parse_args("mobilenet_small", trials=300, epochs=1))
