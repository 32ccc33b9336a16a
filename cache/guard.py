"""Guard signature: facts a paraphrase keeps and a near-duplicate changes.

Embeddings place "17 times 23" next to "18 times 23" and "rain tomorrow" next to
"rain today". A semantic hit additionally needs equal signatures: the set of
numbers (digits, number words, ordinals) and of relative time words.
"""

from __future__ import annotations

import re

_WORDS = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
          "fifteen sixteen seventeen eighteen nineteen twenty").split()
_NUMBER_WORDS = {w: str(i) for i, w in enumerate(_WORDS)}
_NUMBER_WORDS.update({"hundred": "100", "thousand": "1000", "million": "1000000", "dozen": "12",
                      "first": "1", "second": "2", "third": "3", "fourth": "4", "fifth": "5",
                      "half": "0.5", "double": "2", "single": "1"})
_TIME_WORDS = {"tomorrow", "yesterday", "tonight", "next", "last", "ago", "previous"}
_TOKEN = re.compile(r"\d+(?:\.\d+)?|[a-z]+")


def signature(text: str) -> str:
    """A canonical string of the numbers and relative-time words in text."""
    found: set[str] = set()
    for tok in _TOKEN.findall(text.lower()):
        if tok[0].isdigit():
            found.add(tok.rstrip("0").rstrip(".") if "." in tok else tok)
        elif tok in _NUMBER_WORDS:
            found.add(_NUMBER_WORDS[tok])
        elif tok in _TIME_WORDS:
            found.add("@" + tok)
    return ",".join(sorted(found))
