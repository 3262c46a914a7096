"""Compress LeNet-5 (studies/models/lenet5.keras) on Fashion-MNIST: search, knee, fine-tune once.

python studies/compress_lenet5.py [--trials N] [--epochs E] [--proxy model] [--quick]
"""

from __future__ import annotations

from compression import parse_args, run

if __name__ == "__main__":
    run(parse_args("lenet5", trials=300, epochs=2))
