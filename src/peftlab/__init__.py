"""peftlab: a tested teaching lab for parameter-efficient fine-tuning on a laptop CPU."""

from peftlab.quiet import mute_kernel_fetch_log
from peftlab.seed import seed_everything

mute_kernel_fetch_log()  # before anything imports bitsandbytes

__all__ = ["seed_everything"]
__version__ = "0.1.0"
