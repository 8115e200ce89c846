"""Pattern builders, one per op of the table: `from hnfc.rewrites.builders import log, exp`.

Generated from the op table so a new op gets its builder with no edit here.
"""

from hnfc.rewrites.dsl import BUILDERS

globals().update(BUILDERS)
__all__ = sorted(BUILDERS)
