"""peftlab: a tested teaching lab for parameter-efficient fine-tuning on a laptop CPU."""

import logging

from peftlab.seed import seed_everything

# On CPUs with AVX-512 BF16, importing bitsandbytes tries to fetch an optional kernel from the hub
# and logs a warning when it can't (always, offline); its built-in CPU kernels work without it.
logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)

__all__ = ["seed_everything"]
__version__ = "0.1.0"
