"""Dead letters: what the pipeline makes of a refused message, beyond counting it.

    Outcome.rejections --summarize--> DeadLetter --budget--> ct_rejects point + notice + store entry
                                                    \\-> suppressed (counted on /metrics and in the next point)

``summary`` sums up every refusal of one message into one record; ``budget`` bounds how many of them a
device can make the pipeline write per second; ``store`` keeps refused messages whole on disk (beside
the spool; ``entries`` reads them back) so that ``replay`` can re-validate them once a profile is fixed.
"""

from citytelemetry.deadletters.budget import DeadLetterBudget
from citytelemetry.deadletters.summary import DeadLetter, summarize

__all__ = ["DeadLetter", "DeadLetterBudget", "summarize"]
