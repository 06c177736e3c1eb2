"""Seeded synthetic data for the SLM pipeline (stand-in for OpenWebMath + a clean math set).

Everything is generated from string-seeded ``random.Random`` streams
(``random.Random(f"{seed}-{stream}")``), one stream per output, so that

* the same arguments give byte-identical files, and
* each output only depends on its own parameters (the held-out sets do not change when the
  training corpus grows, and vice versa).

Outputs (all UTF-8 JSON lines, written atomically, ``manifest.json`` last):

``hq.jsonl``
    ``{"text": "Question: ...\\nAnswer: 12 + 7 = 19. 19 - 5 = 14. The answer is 14."}`` -- the
    high-quality set the reference model is fine-tuned on (one clean worked problem per line).
``tir.jsonl``
    ``{"text": "Question: ...\\nAnswer: ```python\\nx = 12 + 7\\nx = x - 5\\nprint(x)\\n```\\n"``
    ``"```output\\n14\\n```\\nThe answer is 14."}`` -- tool-integrated (ToRA-style) solutions: the
    supervised fine-tuning data of Table 2.
``corpus/shard-NNN.jsonl``, ``pretrain.jsonl`` and ``validation.jsonl``
    ``{"text": ..., "spans": [[start, end, kind], ...]}`` -- web-like documents mixing correct math
    in varied formats, noise (hashes, ids, timestamps), boilerplate (a few notices repeated
    verbatim), wrong math (worked problems with arithmetic errors) and glue text. ``spans`` cover
    ``text`` exactly (contiguous, non-overlapping, in order, no empty span, adjacent spans of the
    same kind merged); offsets are Python ``str`` (code point) offsets, which equal byte offsets
    because all generated text is ASCII. ``validation.jsonl`` is never trained on: it is the
    held-out slice of the token dynamics and Figure 6.
``eval/arith_gen.jsonl``, ``eval/arith_fewshot.jsonl``
    ``{"question": ..., "solution": ..., "answer": "14"}``
``eval/arith_tir_<name>.jsonl`` (:func:`generate_harder_set`, one per ``tool_integrated.harder_sets``)
    Same format: held-out problems harder than any the generator trains on (more steps, or larger
    operands), for the tool-integrated evaluation; written by their own rule, so that adding a set
    changes no other file.
``eval/arith_mc.jsonl``
    ``{"question": ..., "choices": ["13", "14", "21", "16"], "label": 1, "answer": "14",
    "solution": ...}`` -- 4 distinct non-negative candidate answers (the correct one, the answer
    obtained with one wrong step, and near misses: off by 1-10, a digit swap, one step short, the
    last operation flipped), shuffled; ``answer``/``solution`` are for checking only (the task
    never shows them to the model).
``eval/math_ppl.jsonl``
    ``{"text": ...}`` -- several canonical worked problems per document.

The held-out problems are generated first; every training problem (hq, pretrain, corpus -- correct
and wrong math) whose question text is a held-out question is rejected and redrawn, so the sets are
disjoint on question text.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import yaml

from slm.config import check_generator
from slm.io import atomic_write_text
from slm.schema import check_section

__all__ = [
    "KIND_NAMES",
    "KIND_IDS",
    "TOOL_SOLUTION_KINDS",
    "tool_solution_spans",
    "MAX_RESULT",
    "SEGMENTS_PER_DOC",
    "BOILERPLATE",
    "STEP_RE",
    "ANSWER_RE",
    "GeneratorParams",
    "Problem",
    "HarderSet",
    "beyond",
    "generate_all",
    "generate_harder_set",
    "parse_steps",
]

KIND_NAMES = (
    "other",
    "math",
    "noise",
    "boilerplate",
    "wrong_math",
    "wrong_result",
)  # id = index; 0 = unlabelled. wrong_result: the wrong number inside a wrong_math segment
KIND_IDS = {name: i for i, name in enumerate(KIND_NAMES)}

MAX_RESULT = 999  # every intermediate result lies in [0, MAX_RESULT]
MAX_MUL = 9  # multiplications are by a single digit 2..9
SEGMENTS_PER_DOC = (5, 15)  # inclusive range of content segments per corpus document
PPL_PROBLEMS_PER_DOC = (3, 6)  # inclusive range of problems per math_ppl document
MC_CHOICES = 4
_MAX_TRIES = 10_000  # redraws allowed when looking for a new (unseen) problem

# Fences of a tool-integrated solution: the model writes the program, the tool writes the output.
TOOL_OPEN = "```python\n"
TOOL_CLOSE = "```"
TOOL_OUTPUT_OPEN = "```output\n"

# Who writes each part of a tool-integrated solution when it is evaluated (slm.tir): the evaluator writes
# the prompt (question, "Answer: " and the opening fence) and the tool's output block; the model writes
# the program (with its closing fence) and the answer line. Span kinds of a packed data.tir shard (id =
# index, 0 = unlabelled, e.g. EOS), so that fine-tuning can train on the model's parts only (loss_kinds).
TOOL_SOLUTION_KINDS = ("other", "prompt", "program", "tool_output", "answer")


def tool_solution_spans(text: str) -> list[list]:
    """Spans ``[start, end, kind]`` of a tool-integrated solution (:meth:`Problem.tool_solution`
    after its prompt), kinds from :data:`TOOL_SOLUTION_KINDS`; ``ValueError`` when a fence is missing."""
    program = text.find(TOOL_OPEN)
    program_end = text.find(TOOL_CLOSE, program + len(TOOL_OPEN)) + len(TOOL_CLOSE)
    output = text.find(TOOL_OUTPUT_OPEN, program_end)
    output_end = text.find(TOOL_CLOSE, output + len(TOOL_OUTPUT_OPEN)) + len(TOOL_CLOSE)
    if min(program, program_end - len(TOOL_CLOSE), output, output_end - len(TOOL_CLOSE)) < 0:
        raise ValueError(
            f"not a tool-integrated solution (a {TOOL_OPEN.strip()!r} block, then a {TOOL_OUTPUT_OPEN.strip()!r} "
            f"block): {text[:80]!r}"
        )
    answer = output_end + 1 if text[output_end : output_end + 1] == "\n" else output_end
    cuts = [(0, "prompt"), (program + len(TOOL_OPEN), "program"), (program_end, "tool_output"), (answer, "answer")]
    ends = [start for start, _ in cuts[1:]] + [len(text)]
    return [[start, end, kind] for (start, kind), end in zip(cuts, ends) if end > start]


STEP_RE = re.compile(r"(\d+) ([+*-]) (\d+) = (\d+)")
ANSWER_RE = re.compile(r"answer is (-?\d+)")

_OP_WEIGHTS = {"+": 0.45, "-": 0.45, "*": 0.10}


def _apply(a: int, op: str, b: int) -> int:
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    raise ValueError(f"unknown operation {op!r}")


def parse_steps(text: str) -> list[tuple[int, str, int, int]]:
    """All ``a op b = c`` steps written in ``text``, as ``(a, op, b, c)`` integer tuples."""
    return [(int(a), op, int(b), int(c)) for a, op, b, c in STEP_RE.findall(text)]


# --------------------------------------------------------------------------------------------
# Problems
# --------------------------------------------------------------------------------------------

Step = tuple[int, str, int, int]


@dataclass(frozen=True)
class Problem:
    """A word problem and its worked solution (``steps`` are ``(a, op, b, c)``)."""

    question: str
    steps: tuple[Step, ...]
    answer: int

    @property
    def is_correct(self) -> bool:
        return all(_apply(a, op, b) == c for a, op, b, c in self.steps) and (self.answer == self.steps[-1][3])

    def step_text(self) -> str:
        return " ".join(f"{a} {op} {b} = {c}." for a, op, b, c in self.steps)

    def solution(self) -> str:
        """Canonical worked solution: ``12 + 7 = 19. 19 - 5 = 14. The answer is 14.``"""
        return f"{self.step_text()} The answer is {self.answer}."

    def canonical(self) -> str:
        return f"Question: {self.question}\nAnswer: {self.solution()}"

    def tool_program(self) -> str:
        """The solution as a program for the Python tool: one assignment per step, then print."""
        lines = [f"x = {a} {op} {b}" if i == 0 else f"x = x {op} {b}" for i, (a, op, b, _c) in enumerate(self.steps)]
        return "\n".join(lines + ["print(x)"]) + "\n"

    def tool_solution(self) -> str:
        """ToRA-style tool-integrated solution: the program, the tool's output, the answer."""
        return (
            f"{TOOL_OPEN}{self.tool_program()}{TOOL_CLOSE}\n{TOOL_OUTPUT_OPEN}{self.answer}\n{TOOL_CLOSE}\n"
            f"The answer is {self.answer}."
        )


# The word lists and sentence templates, in the order the generator draws from them.
WORDS = yaml.safe_load(Path(__file__).with_name("words.yaml").read_text(encoding="utf-8"))
_NAMES = tuple(tuple(entry) for entry in WORDS["names"])  # name, subject pronoun, possessive pronoun


@dataclass(frozen=True)
class _Scenario:
    """Story templates. ``person`` scenarios have verb-phrase op templates (the subject is added:
    name or pronoun, with optional connectors and ``, then`` chaining); the others have full
    sentences. Placeholders: {name} {other} {poss} {obj} {a} {b}."""

    person: bool
    objects: tuple[str, ...]
    start: tuple[str, ...]
    add: tuple[str, ...]
    sub: tuple[str, ...]
    mul: tuple[str, ...]
    question: tuple[str, ...]


_SCENARIOS = tuple(
    _Scenario(spec["person"], *(tuple(spec[k]) for k in ("objects", "start", "add", "sub", "mul", "question")))
    for spec in WORDS["scenarios"]
)
_CONNECTORS = tuple(WORDS["connectors"])


def _draw_steps(rng: random.Random, n_steps: int, max_operand: int, allow_mul: bool) -> tuple[Step, ...]:
    a = rng.randint(2, max_operand)
    steps: list[Step] = []
    for _ in range(n_steps):
        ops, weights = [], []
        if a + 2 <= MAX_RESULT:
            ops.append("+")
            weights.append(_OP_WEIGHTS["+"])
        if a >= 2:
            ops.append("-")
            weights.append(_OP_WEIGHTS["-"])
        if allow_mul and 2 <= a <= MAX_RESULT // 2:
            ops.append("*")
            weights.append(_OP_WEIGHTS["*"])
        op = rng.choices(ops, weights)[0]
        if op == "+":
            b = rng.randint(2, min(max_operand, MAX_RESULT - a))
        elif op == "-":
            b = rng.randint(2, min(max_operand, a))
        else:
            b = rng.randint(2, min(MAX_MUL, MAX_RESULT // a))
        c = _apply(a, op, b)
        steps.append((a, op, b, c))
        a = c
    return tuple(steps)


def _story(rng: random.Random, scen: _Scenario, steps: Sequence[Step]) -> str:
    name, pron, poss = rng.choice(_NAMES)
    other = rng.choice([n for n in _NAMES if n[0] != name])[0]
    obj = rng.choice(scen.objects)
    fields = {"name": name, "other": other, "poss": poss, "obj": obj}
    templates = {"+": scen.add, "-": scen.sub, "*": scen.mul}
    sentences = [rng.choice(scen.start).format(a=steps[0][0], **fields)]
    if scen.person:
        clauses = [rng.choice(templates[op]).format(b=b, **fields) for _, op, b, _ in steps]
        i = 0
        while i < len(clauses):
            subj = pron if rng.random() < 0.6 else name
            conn = rng.choice(_CONNECTORS) if (i > 0 and rng.random() < 0.6) else ""
            if i + 1 < len(clauses) and rng.random() < 0.35:  # "He buys 7 more, then gives 5 to Ann."
                body = f"{subj} {clauses[i]}, then {clauses[i + 1]}"
                i += 2
            else:
                body = f"{subj} {clauses[i]}"
                i += 1
            sentence = f"{conn} {body}." if conn else f"{body}."
            sentences.append(sentence[0].upper() + sentence[1:])
    else:
        for _, op, b, _ in steps:
            sentences.append(rng.choice(templates[op]).format(b=b, **fields))
    sentences.append(rng.choice(scen.question).format(**fields))
    return " ".join(sentences)


def beyond(problem: Problem, params: GeneratorParams) -> bool:
    """Whether ``problem`` lies beyond what the generator with ``params`` draws, so that it never draws
    it: more steps than ``max_steps``, or a start value or an operand of + or - above ``max_operand``
    (multipliers are single digits whatever the bounds)."""
    steps = problem.steps
    operands = [steps[0][0]] + [b for _, op, b, _ in steps if op != "*"]
    return len(steps) > params.max_steps or max(operands) > params.max_operand


def _draw_problem(rng: random.Random, max_operand: int, min_steps: int, max_steps: int) -> Problem:
    scen = rng.choice(_SCENARIOS)
    n_steps = rng.randint(min_steps, max_steps)
    steps = _draw_steps(rng, n_steps, max_operand, allow_mul=bool(scen.mul))
    return Problem(_story(rng, scen, steps), steps, steps[-1][3])


def _swap_digits(rng: random.Random, c: int) -> int | None:
    s = str(c)
    positions = [i for i in range(len(s) - 1) if s[i] != s[i + 1] and not (i == 0 and s[1] == "0")]
    if not positions:
        return None
    i = rng.choice(positions)
    return int(s[:i] + s[i + 1] + s[i] + s[i + 2 :])


def _corrupt(rng: random.Random, problem: Problem) -> Problem:
    """A copy of ``problem`` with one wrong step result (off by 1-10 or two digits swapped); the
    later steps are carried out correctly from the wrong value, so the final answer is wrong.
    """
    steps = problem.steps
    for _ in range(100):
        k = rng.randrange(len(steps))
        a, op, b, c = steps[k]
        wrong = _swap_digits(rng, c) if (c >= 10 and rng.random() < 0.3) else None
        if wrong is None:
            wrong = c + rng.choice((-1, 1)) * rng.randint(1, 10)
        if wrong == c or not 0 <= wrong <= MAX_RESULT:
            continue
        new = list(steps[:k]) + [(a, op, b, wrong)]
        cur, ok = wrong, True
        for _, op2, b2, _ in steps[k + 1 :]:
            c2 = _apply(cur, op2, b2)
            if not 0 <= c2 <= MAX_RESULT:
                ok = False
                break
            new.append((cur, op2, b2, c2))
            cur = c2
        if ok and cur != problem.answer:
            return Problem(problem.question, tuple(new), cur)
    raise RuntimeError(f"could not corrupt problem {problem!r}")  # pragma: no cover


class _ProblemSource:
    """Draws problems from one RNG stream, within the bounds of ``params`` (:class:`GeneratorParams` or
    :class:`HarderSet`), skipping questions in ``forbidden``, problems not :func:`beyond` the bounds
    ``beyond_bounds`` (when given) and, with ``unique``, questions already drawn from this source; drawn questions
    are added to ``seen``.
    """

    def __init__(
        self,
        rng: random.Random,
        params: GeneratorParams | HarderSet,
        forbidden: set[str],
        unique: bool,
        seen: set[str] | None = None,
        beyond_bounds: GeneratorParams | None = None,
    ):
        self.rng = rng
        self.max_operand = params.max_operand
        self.min_steps = params.min_steps
        self.max_steps = params.max_steps
        self.forbidden = forbidden
        self.unique = unique
        self.seen = seen if seen is not None else set()
        self.beyond_bounds = beyond_bounds

    def __call__(self) -> Problem:
        for _ in range(_MAX_TRIES):
            p = _draw_problem(self.rng, self.max_operand, self.min_steps, self.max_steps)
            if p.question in self.forbidden or (self.unique and p.question in self.seen):
                continue
            if self.beyond_bounds is not None and not beyond(p, self.beyond_bounds):
                continue
            self.seen.add(p.question)
            return p
        raise RuntimeError(
            f"could not draw a new distinct problem after {_MAX_TRIES} tries; "
            "increase max_operand/max_steps or request fewer problems"
        )


# --------------------------------------------------------------------------------------------
# Corpus segments
# --------------------------------------------------------------------------------------------

_ENDINGS = tuple(WORDS["endings"])
_PROSE_STEPS = WORDS["prose_steps"]  # {first, later} -> operation -> templates over {a} {b} {e}


def _prose_solution(rng: random.Random, p: Problem) -> str:
    parts = []
    for i, (a, op, b, c) in enumerate(p.steps):
        table = _PROSE_STEPS["first" if i == 0 else "later"]
        parts.append(rng.choice(table[op]).format(a=a, b=b, e=f"{a} {op} {b} = {c}"))
    return "".join(parts) + ". " + rng.choice(_ENDINGS).format(n=p.answer)


def _render_problem(rng: random.Random, p: Problem) -> str:
    """A worked problem in one of several web-like formats."""
    fmt = rng.randrange(6)
    if fmt == 4:  # inline prose, question first
        return f"{p.question} {_prose_solution(rng, p)}"
    if fmt == 5:  # inline prose, no question
        return _prose_solution(rng, p)
    ending = rng.choice(_ENDINGS).format(n=p.answer)
    sol = f"{p.step_text()} {ending}"
    if fmt == 0:
        return f"Question: {p.question}\nAnswer: {sol}"
    if fmt == 1:
        return f"Problem: {p.question}\nSolution: {sol}"
    if fmt == 2:
        return f"Q: {p.question}\nA: {sol}"
    return f"Exercise {rng.randint(1, 60)}. {p.question}\nWorked solution: {sol}"


_HEX = "0123456789abcdef"
_ALNUM = "abcdefghijklmnopqrstuvwxyz0123456789"
_USER_PREFIXES = tuple(WORDS["user_prefixes"])


def _hex(rng: random.Random, n: int) -> str:
    return "".join(rng.choice(_HEX) for _ in range(n))


def _digits(rng: random.Random, n: int) -> str:
    return "".join(rng.choice("0123456789") for _ in range(n))


def _timestamp(rng: random.Random) -> str:
    return (
        f"{rng.randint(2008, 2024)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d} "
        f"{rng.randint(0, 23):02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}"
    )


def _username(rng: random.Random) -> str:
    sep = rng.choice(("_", "", ".", "-"))
    tail = "".join(rng.choice(_ALNUM) for _ in range(rng.randint(3, 6)))
    return f"{rng.choice(_USER_PREFIXES)}{sep}{tail}"


def _uuid(rng: random.Random) -> str:
    return "-".join(_hex(rng, n) for n in (8, 4, 4, 4, 12))


def _noise_line(rng: random.Random) -> str:
    k = rng.randrange(9)
    if k == 0:
        return f"Posted by {_username(rng)} at {_timestamp(rng)} | id {_hex(rng, 10)}"
    if k == 1:
        return f"sha256: {_hex(rng, 64)}"
    if k == 2:
        return f"commit {_hex(rng, 40)}"
    if k == 3:
        return f"uuid {_uuid(rng)}"
    if k == 4:
        ip = ".".join(str(rng.randint(0, 255)) for _ in range(4))
        return (
            f"[{_timestamp(rng)}] session={_hex(rng, 16)} ip={ip} status={rng.choice((200, 301, 302, 404, 500, 503))}"
        )
    if k == 5:
        return f"ref no. {_digits(rng, rng.randint(8, 14))}"
    if k == 6:
        return (
            f"Last edited by {_username(rng)}; {rng.randint(1, 99999)} views; post #{_digits(rng, rng.randint(5, 8))}"
        )
    if k == 7:
        return f"tx {_hex(rng, 32)} block {_digits(rng, 7)}"
    return " ".join(_digits(rng, rng.randint(3, 9)) for _ in range(rng.randint(3, 8)))


def _noise(rng: random.Random) -> str:
    return "\n".join(_noise_line(rng) for _ in range(rng.randint(1, 3)))


BOILERPLATE = tuple(WORDS["boilerplate"])
_TITLES = tuple(WORDS["titles"])
_PROSE = tuple(WORDS["prose"])
_LEADINS = tuple(WORDS["leadins"])


def _merge_spans(pieces: Iterable[tuple[str, str]]) -> tuple[str, list[list]]:
    text_parts: list[str] = []
    spans: list[list] = []
    pos = 0
    for piece, kind in pieces:
        if not piece:
            continue
        end = pos + len(piece)
        if spans and spans[-1][2] == kind:
            spans[-1][1] = end
        else:
            spans.append([pos, end, kind])
        text_parts.append(piece)
        pos = end
    return "".join(text_parts), spans


def _wrong_pieces(text: str, problem: Problem) -> list[tuple[str, str]]:
    """Split a rendered wrong problem so the wrong result itself is labelled ``wrong_result``:
    the few tokens that are misaligned, inside a segment that is otherwise ordinary math text."""
    a, op, b, c = next(step for step in problem.steps if _apply(*step[:3]) != step[3])
    expression = f"{a} {op} {b} = "
    start = text.index(expression) + len(expression)
    end = start + len(str(c))
    return [(text[:start], "wrong_math"), (text[start:end], "wrong_result"), (text[end:], "wrong_math")]


def _make_doc(
    rng: random.Random,
    kinds: Sequence[str],
    weights: Sequence[float],
    draw: _ProblemSource,
) -> dict:
    pieces: list[tuple[str, str]] = []
    if rng.random() < 0.6:
        pieces.append((rng.choice(_TITLES), "other"))
    for _ in range(rng.randint(*SEGMENTS_PER_DOC)):
        kind = rng.choices(kinds, weights)[0]
        if pieces:
            pieces.append(("\n\n" if rng.random() < 0.3 else "\n", "other"))
        if kind in ("math", "wrong_math"):
            if rng.random() < 0.25:
                pieces.append((rng.choice(_LEADINS) + "\n", "other"))
            p = draw()
            if kind == "math":
                pieces.append((_render_problem(rng, p), kind))
            else:
                pieces.extend(_wrong_pieces(_render_problem(rng, wrong := _corrupt(rng, p)), wrong))
        elif kind == "noise":
            pieces.append((_noise(rng), kind))
        elif kind == "boilerplate":
            pieces.append((rng.choice(BOILERPLATE), kind))
        else:
            pieces.append((rng.choice(_PROSE), "other"))
    text, spans = _merge_spans(pieces)
    return {"text": text, "spans": spans}


# --------------------------------------------------------------------------------------------
# Held-out sets
# --------------------------------------------------------------------------------------------


def _mc_item(rng: random.Random, p: Problem) -> dict:
    ans = p.answer
    distractors: list[int] = []

    def add(x: int) -> None:
        if x >= 0 and x != ans and x not in distractors and len(distractors) < MC_CHOICES - 1:
            distractors.append(x)

    add(_corrupt(rng, p).answer)  # the answer you get with one wrong step
    pool = [ans + d for d in range(-10, 11) if d]
    if len(p.steps) >= 2:
        pool.append(p.steps[-2][3])  # stopping one step early
    a, op, b, _ = p.steps[-1]
    if op in "+-":
        pool.append(_apply(a, "-" if op == "+" else "+", b))  # last operation flipped
    swapped = _swap_digits(rng, ans) if ans >= 10 else None
    if swapped is not None:
        pool.append(swapped)
    rng.shuffle(pool)
    for x in pool:
        add(x)
    choices = [ans, *distractors]
    rng.shuffle(choices)
    return {
        "question": p.question,
        "choices": [str(c) for c in choices],
        "label": choices.index(ans),
        "answer": str(ans),
        "solution": p.solution(),
    }


# --------------------------------------------------------------------------------------------
# I/O helpers
# --------------------------------------------------------------------------------------------


def _dumps(obj) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(", ", ": "))


def _write_jsonl(path: Path, records: Sequence[dict]) -> str:
    """Write the records atomically; return the file's sha256."""
    text = "".join(_dumps(r) + "\n" for r in records)
    atomic_write_text(path, text)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# --------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------


def _chars_per_kind(docs: Iterable[dict]) -> dict[str, int]:
    counts = dict.fromkeys(KIND_NAMES, 0)
    for d in docs:
        for s, e, k in d["spans"]:
            counts[k] += e - s
    return counts


@dataclass(frozen=True)
class GeneratorParams:
    """What the generator makes: ``data.generator`` of the config and the config's ``seed``. The ranges
    and defaults are the config schema's (:meth:`from_spec` checks a spec against it)."""

    seed: int
    """seeds every output's random stream"""
    hq_problems: int
    """clean worked problems of the high-quality set (the reference model's data)"""
    corpus_shards: int
    """shards of the web-like corpus"""
    docs_per_shard: int
    """documents per corpus shard"""
    pretrain_docs: int
    """corpus-like documents for the base model's pretraining"""
    eval_problems: int
    """held-out problems of arith_gen (and of the tool-integrated evaluation)"""
    eval_mc_problems: int
    """held-out multiple-choice problems (arith_mc)"""
    eval_ppl_docs: int
    """held-out documents of clean worked problems (math_ppl)"""
    fewshot_problems: int
    """held-out problems the few-shot examples are drawn from"""
    max_operand: int
    """largest start value and operand of + and -"""
    min_steps: int
    """fewest steps of a problem"""
    max_steps: int
    """most steps of a problem"""
    kind_weights: dict[str, float]
    """relative share of each kind of corpus segment (other, math, noise, boilerplate, wrong_math)"""
    validation_docs: int
    """corpus-like documents that no model trains on (the token dynamics' and Figure 6's slice)"""
    tir_problems: int
    """tool-integrated (ToRA-style) solutions for the fine-tuning of Table 2"""

    @classmethod
    def from_spec(cls, spec: dict) -> GeneratorParams:
        """The parameters of a spec (``{"seed": ..., **data.generator}``), checked against the config
        schema with its defaults filled in; a bad entry is a ConfigError naming its config key."""
        spec = dict(spec)
        seed = check_section(spec.pop("seed", None), "/properties/seed", "seed")
        generator = check_section(spec, "/properties/data/properties/generator", "data.generator")
        check_generator(generator)
        return cls(seed=seed, **generator)


@dataclass(frozen=True)
class HarderSet:
    """A held-out set of tool-integrated problems harder than anything the generator trains on
    (``tool_integrated.harder_sets.<name>``, with the defaults of :func:`slm.config.harder_sets` filled in):
    problems are drawn within these bounds and kept only when they lie :func:`beyond` the training bounds
    (:class:`GeneratorParams`): each has more steps than any training problem or an operand larger than
    any, so none is a question any model saw."""

    problems: int
    """how many problems"""
    min_steps: int
    """fewest steps of a problem"""
    max_steps: int
    """most steps of a problem"""
    max_operand: int
    """largest start value and operand of + and -"""


def generate_harder_set(out_jsonl: Path, name: str, harder: dict, **spec) -> dict:
    """Write the held-out problems of harder set ``name`` (``harder``: :class:`HarderSet`'s fields) to
    ``out_jsonl``, in the format of ``eval/arith_gen.jsonl``, from their own random stream of the config's
    seed; ``spec``: the generator's spec (``{"seed": ..., **data.generator}``), whose bounds the problems
    lie outside. Returns ``{count, sha256}``."""
    params = GeneratorParams.from_spec(spec)
    bounds = HarderSet(**harder)
    source = _ProblemSource(
        random.Random(f"slm-synth-{params.seed}-tir-harder-{name}"), bounds, set(), unique=True, beyond_bounds=params
    )
    records = [_qa(source()) for _ in range(bounds.problems)]
    return {"count": len(records), "sha256": _write_jsonl(Path(out_jsonl), records)}


def _qa(p: Problem) -> dict:
    """A held-out problem as the evaluation reads it."""
    return {"question": p.question, "solution": p.solution(), "answer": str(p.answer)}


def generate_all(out_dir: Path, **spec) -> dict:
    """Generate every synthetic data file under ``out_dir`` from ``spec`` (:class:`GeneratorParams`'
    fields); returns the manifest (also written to ``out_dir/manifest.json``, last). See the module
    docstring for the formats."""
    params = GeneratorParams.from_spec(spec)
    seed = params.seed
    # kinds in KIND_NAMES order: the order of rng.choices' population
    weights = {k: float(params.kind_weights[k]) for k in KIND_NAMES if k in params.kind_weights}
    kinds, kind_w = list(weights), list(weights.values())
    out_dir = Path(out_dir)

    def stream(name: str) -> random.Random:
        return random.Random(f"slm-synth-{seed}-{name}")

    files: dict[str, dict] = {}

    def emit(rel: str, records: list[dict]) -> None:
        files[rel] = {
            "count": len(records),
            "sha256": _write_jsonl(out_dir / rel, records),
        }

    # Held-out sets first (pairwise disjoint), so that they do not depend on training sizes.
    heldout: set[str] = set()

    def heldout_source(name: str) -> _ProblemSource:
        return _ProblemSource(stream(name), params, forbidden=set(), unique=True, seen=heldout)

    src = heldout_source("eval-gen")
    gen = [src() for _ in range(params.eval_problems)]
    src = heldout_source("eval-fewshot")
    fewshot = [src() for _ in range(params.fewshot_problems)]
    src = heldout_source("eval-mc")
    mc_rng = stream("eval-mc-choices")
    mc = [_mc_item(mc_rng, src()) for _ in range(params.eval_mc_problems)]
    src = heldout_source("eval-ppl")
    ppl_rng = stream("eval-ppl-layout")
    ppl = []
    for _ in range(params.eval_ppl_docs):
        probs = [src() for _ in range(ppl_rng.randint(*PPL_PROBLEMS_PER_DOC))]
        ppl.append({"text": "\n\n".join(p.canonical() for p in probs)})

    # Training data: never a held-out question.
    src = _ProblemSource(stream("hq"), params, forbidden=heldout, unique=True)
    hq = [{"text": src().canonical()} for _ in range(params.hq_problems)]

    corpus_chars = dict.fromkeys(KIND_NAMES, 0)
    corpus_counts: list[tuple[str, list[dict]]] = []
    for i in range(params.corpus_shards):
        rng = stream(f"corpus-{i}")
        draw = _ProblemSource(stream(f"corpus-{i}-problems"), params, forbidden=heldout, unique=False)
        docs = [_make_doc(rng, kinds, kind_w, draw) for _ in range(params.docs_per_shard)]
        for k, n in _chars_per_kind(docs).items():
            corpus_chars[k] += n
        corpus_counts.append((f"corpus/shard-{i:03d}.jsonl", docs))

    rng = stream("pretrain")
    draw = _ProblemSource(stream("pretrain-problems"), params, forbidden=heldout, unique=False)
    pretrain = [_make_doc(rng, kinds, kind_w, draw) for _ in range(params.pretrain_docs)]

    # Corpus-like documents that no model trains on: the validation slice of the token dynamics
    # and of Figure 6. Own streams, so the training files do not depend on its size.
    rng = stream("validation")
    draw = _ProblemSource(stream("validation-problems"), params, forbidden=heldout, unique=False)
    validation = [_make_doc(rng, kinds, kind_w, draw) for _ in range(params.validation_docs)]

    # Tool-integrated (ToRA-style) solutions for the supervised fine-tuning behind Table 2.
    src = _ProblemSource(stream("tir"), params, forbidden=heldout, unique=True)
    tir = []
    for _ in range(params.tir_problems):
        p = src()
        tir.append({"text": f"Question: {p.question}\nAnswer: {p.tool_solution()}"})

    emit("eval/arith_gen.jsonl", [_qa(p) for p in gen])
    emit("eval/arith_fewshot.jsonl", [_qa(p) for p in fewshot])
    emit("eval/arith_mc.jsonl", mc)
    emit("eval/math_ppl.jsonl", ppl)
    emit("hq.jsonl", hq)
    for rel, docs in corpus_counts:
        emit(rel, docs)
    emit("pretrain.jsonl", pretrain)
    emit("validation.jsonl", validation)
    emit("tir.jsonl", tir)

    manifest = {
        "format_version": 1,
        "seed": seed,
        "params": {**asdict(params), "kind_weights": {k: float(v) for k, v in sorted(params.kind_weights.items())}},
        "kind_names": list(KIND_NAMES),
        "files": dict(sorted(files.items())),
        "corpus_shards": [rel for rel, _ in corpus_counts],
        "corpus_chars_per_kind": corpus_chars,
        "pretrain_chars_per_kind": _chars_per_kind(pretrain),
    }
    atomic_write_text(out_dir / "manifest.json", json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest
