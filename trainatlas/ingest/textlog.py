"""Plain-text logs with ``key: value`` or ``key=value`` pairs on a line (python logging, glog,
StudioGAN, custom prints), lines separated by newlines or carriage returns:

    2023-05-15 22:50:34,691 INFO:Epoch 5: Train Loss=0.0354, Val Loss=0.0301
    INFO:root:Episode 20 | Avg Reward: 6.00 | Epsilon: 0.942 | Win Rate: 0.48%
    I0728 23:56:00.280272 4259 solver.cpp:218] Iteration 100 (...), loss = 0.224371
    [INFO] 2021-01-15 15:04:24 > FID score (Step: 2000, Using test moments): 45.42
    iter 100/500 eps 0.60 buf 400000 loss 0.0100 vs-random 0.750

The step is the number after the first ``epoch``/``iter``/``iteration``/``step``/``episode`` word
(counters that start again, as when several runs are appended, continue from the last step). In a
log without such words, a line with at least two pairs is the next step; a lone pair
(``max_iter: 10000`` in a config dump) is ignored.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from trainatlas.ingest.base import LineParser, Row, StepClock, wall_time

NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?|[-+]?(?:nan|NaN|inf|Inf|Infinity)"
_WORD = r"(?!(?i:no|yes|true|false|none)\b)[A-Za-z][\w./()%-]*"
PAIR = re.compile(rf"(?<![\w./%()-])({_WORD}(?: {_WORD}){{0,3}})\s*[:=]\s*({NUM})%?(?![\w:./\]-])")
SPACED = re.compile(rf"(?<![\w./-])([A-Za-z][\w/-]*)\s+({NUM})(?![\w:./-])")
STEP = re.compile(r"\b(epoch|iteration|iter|step|episode|it)\b\s*[:=#]?\s*\[?\s*(\d+)(?:\s*/\s*(\d+))?", re.I)
SCORE = re.compile(rf"([A-Za-z][\w/ ]*?)\s*\((?:step|iter\w*|epoch):?\s*(\d+)[^)]*\)\s*:\s*({NUM})", re.I)
_STEP_WORDS = {"epoch", "iteration", "iter", "step", "episode", "it"}


def pairs(text: str) -> dict[str, float]:
    """The ``key: value`` / ``key=value`` pairs of a line, in order, names as written."""
    return {
        k.strip(): float(v)
        for k, v in PAIR.findall(text)
        if k.strip().lower() not in _STEP_WORDS and k.count("(") == k.count(")")  # not `Linear(in_features=4`
    }


class TextLogParser(LineParser):
    format = "text"

    def parse_line(self, text: str, line: int) -> Iterator[Row]:
        score = SCORE.search(text)
        if score:
            values = {score.group(1).strip(): float(score.group(3))}
            raw: int | None = int(score.group(2))
            m = None
        else:
            m = STEP.search(text)
            raw = int(m.group(2)) if m else None
            rest = text[: m.start()] + " " * (m.end() - m.start()) + text[m.end() :] if m else text
            values = pairs(rest)
            if m and not values and rest[m.start() :].find(":") < 0 and "=" not in rest:
                values = {k: float(v) for k, v in SPACED.findall(rest[m.end() :])}
            if not m and (len(values) < 2 or self.state.get("stepped")):
                return  # a lone pair, or a line without a step in a log that has steps
            if m:
                self.state["stepped"] = True
        if not values:
            return
        clock = StepClock.load(self.state.get("clock"))
        if raw is None:
            step = clock.step((clock.last_raw or 0) + 1)
        elif score and clock.last_raw is not None and raw < clock.last_raw:
            step = clock.current  # "Best FID (Step: 42000)" repeated later: a report now, not a restart
        else:
            step = clock.step(raw)
        epoch = float(raw) if raw is not None and not score and m and m.group(1).lower() == "epoch" else None
        self.state["clock"] = clock.dump()
        yield Row(step, values, line, epoch, wall_time(text))
