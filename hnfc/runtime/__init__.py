"""Runtime: IR -> torch.fx.GraphModule (`lower`) and running programs on inputs (`runner`,
`observe`, `verification_inputs`). It sits low on purpose: verification and precision judge a
program by running it."""

from hnfc.runtime.lowering import lower
from hnfc.runtime.run import flat, input_domains, observe, runner, verification_inputs

__all__ = ["flat", "input_domains", "lower", "observe", "runner", "verification_inputs"]
