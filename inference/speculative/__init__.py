"""Speculative decoding without a draft model: drafts copied from the sequence itself (prompt
lookup over its prompt, an infill's suffix and its output) or from the server's recent outputs
(the suffix cache), verified by the target model in one step with the exact acceptance rule, and
a cost model that decides, step by step, how much drafting pays.

    prompt_lookup.py   a sequence's own tokens → draft          ngram_index.py  the n-gram index both use
    suffix_cache.py    recent outputs → most frequent draft     draft.py        drafts, confidence, calibration
    speculator.py      both, by mode, per sequence              cost_model.py   step times → draft lengths
    verification.py    sampled rows → accepted tokens (token for token what plain decoding gives)
    pacing.py          how often to try drafting when drafts come back empty
"""

from .cost_model import StepTimes, plan
from .draft import Calibration, Draft
from .pacing import DraftPacing
from .prompt_lookup import PromptLookup, infill_suffix_span
from .speculator import MODES, SequenceDrafting, Speculator, check_speculation
from .suffix_cache import SuffixCache
from .verification import Verification, emitted_tokens, verify

__all__ = ["Calibration", "Draft", "DraftPacing", "MODES", "PromptLookup", "SequenceDrafting", "Speculator",
           "StepTimes", "SuffixCache", "Verification", "check_speculation", "emitted_tokens", "infill_suffix_span",
           "plan", "verify"]
