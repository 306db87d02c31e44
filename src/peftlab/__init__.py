"""peftlab: a tested teaching lab for parameter-efficient fine-tuning on a laptop CPU."""

from peftlab.seed import seed_everything

__all__ = ["seed_everything"]
__version__ = "0.1.0"
