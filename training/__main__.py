"""``python -m training CONFIG.yaml [key=value ...]`` — also ``torchrun --nproc_per_node N -m training ...``."""
import sys

from .cli import main

sys.exit(main())
