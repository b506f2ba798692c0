"""MNIST-5k -> sklearn digits transfer table (JSON lines); the same as `ulmfit train-vision`.

    python scripts/vision_transfer.py --config configs/vision-digits.yaml --out runs/vision-digits
"""

import sys

from ulmfit.vision.transfer import main

if __name__ == "__main__":
    sys.exit(main())
