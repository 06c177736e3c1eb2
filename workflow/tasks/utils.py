"""Helpers for the Rho-1 paper's extra math tasks (lm-eval 0.4.13 task YAMLs in this folder).

Every task here maps its dataset's rows onto the two fields the GSM8K chain-of-thought prompt
uses (``question``, ``answer``) in ``process_docs``, so one prompt template (``Q: ...\\nA:``,
the 8 ``gsm8k_cot`` exemplars) serves all of them.  Gold answers and extracted model answers go
through the same :func:`normalize_answer`, so ``5.0``, ``5``, ``$5``, ``5.`` and ``5.00`` compare
equal under lm-eval's ``exact_match``.

Question construction follows the paper's harness (math-evaluation-harness, ``parser.py`` /
``data_loader.py``, also used by ToRA); see README.md in this folder for the sources.
Only the standard library and ``datasets`` (for the SVAMP loader) are used.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from typing import Any

INVALID = "[invalid]"  # lm-eval's RegexFilter fallback; passed through untouched

_NUMBER = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?")
_GROUPED = re.compile(r"[-+]?\d{1,3}(?:,\d{3})+(?:\.\d*)?")
_FRACTION = re.compile(r"([-+]?\d+)\s*/\s*(\d+)")
_NUMBER_WITH_UNIT = re.compile(r"([-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d*)?)\s+[A-Za-z][A-Za-z\s.]*")


def _format_decimal(value: Decimal) -> str:
    if not value.is_finite():
        return str(value).lower()
    text = format(value.normalize(), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "+0", "") else text


def _format_number(value: int | float | Decimal | Fraction) -> str:
    if isinstance(value, Fraction):
        if value.denominator == 1:
            return str(value.numerator)
        value = float(value)
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            return str(value)
        value = Decimal(repr(value))
    return _format_decimal(Decimal(value))


def normalize_answer(value: Any) -> str:
    """Canonical string for a gold or extracted answer.

    Numbers: ``$`` removed, thousands separators removed, a trailing ``.``/``%`` removed, then
    written without exponent and without trailing zeros (``"5.0"`` -> ``"5"``, ``"1,234.50"``
    -> ``"1234.5"``, ``2.1e6`` -> ``"2100000"``, ``"-0"`` -> ``"0"``); an integer fraction
    ``a/b`` becomes its decimal value (``"3/4"`` -> ``"0.75"``); a number followed only by words
    (a unit) keeps the number (``"8 apples"`` -> ``"8"``).  Anything else is lower-cased with
    whitespace collapsed and a trailing full stop removed.  ``None`` gives ``""``.
    """
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (int, float, Decimal, Fraction)):
        return _format_number(value)
    text = " ".join(str(value).split())
    if text == INVALID:
        return text
    text = text.strip().rstrip(".").strip()
    number = text.replace("$", "").strip()
    if number.endswith("%"):
        number = number[:-1].strip()
    if _GROUPED.fullmatch(number):
        number = number.replace(",", "")
    if _NUMBER.fullmatch(number):
        try:
            return _format_decimal(Decimal(number))
        except InvalidOperation:  # pragma: no cover - the regex only admits valid decimals
            pass
    if match := _FRACTION.fullmatch(number):
        numerator, denominator = int(match.group(1)), int(match.group(2))
        if denominator != 0:
            return _format_number(Fraction(numerator, denominator))
    if match := _NUMBER_WITH_UNIT.fullmatch(number):
        return _format_decimal(Decimal(match.group(1).replace(",", "")))
    return text.lower()


def normalize_filter(resps, docs):
    """lm-eval ``custom`` filter step: normalise every extracted answer (list of lists)."""
    return [[normalize_answer(r) for r in inst] for inst in resps]


def _yes_no_suffix(answer: str) -> str:
    # math-evaluation-harness parser.parse_question appends these for boolean golds.
    if answer in ("yes", "no"):
        return " (Yes or No)"
    if answer in ("true", "false"):
        return " (True or False)"
    return ""


def _first(doc: dict, keys: tuple[str, ...]) -> Any:
    for key in keys:
        if key in doc and doc[key] is not None and doc[key] != "":
            return doc[key]
    raise KeyError(f"none of the fields {keys} in doc with fields {sorted(doc)}")


# --- SVAMP -----------------------------------------------------------------------------------


def svamp_question(doc: dict) -> str:
    body = str(doc["Body"]).strip()
    if not body.endswith("."):
        body += "."
    return f"{body} {str(doc['Question']).strip()}"


def svamp_doc(doc: dict) -> dict:
    answer = normalize_answer(doc["Answer"])
    return {"question": svamp_question(doc) + _yes_no_suffix(answer), "answer": answer}


def process_docs_svamp(dataset):
    return dataset.map(svamp_doc)


def load_svamp(**kwargs):
    """``custom_dataset``: ChilleD/SVAMP train (700) + test (300) = the 1000 SVAMP problems.

    The paper's harness evaluates on the concatenation (``data_loader.py``: "evaluate on training
    set + test set"); lm-eval can only name one split, hence this loader.  ``svamp_path`` (via
    ``--metadata``) points it at another copy, e.g. a local directory with the same splits.
    """
    import datasets

    path = kwargs.get("svamp_path", "ChilleD/SVAMP")
    raw = datasets.load_dataset(path)
    test = datasets.concatenate_datasets([raw["train"], raw["test"]])
    return datasets.DatasetDict({"test": test})


# --- MAWPS -----------------------------------------------------------------------------------

MAWPS_QUESTION_FIELDS = ("question", "input", "Question", "problem")
MAWPS_ANSWER_FIELDS = ("result_float", "target", "result", "answer", "Answer")


def mawps_doc(doc: dict) -> dict:
    """MU-NLPC/Calc-mawps rows (``question``, ``result_float``/``result``); also accepts the
    harness/ToRA MAWPS jsonl rows (``input``, ``target``) if the dataset is swapped."""
    answer = normalize_answer(_first(doc, MAWPS_ANSWER_FIELDS))
    question = str(_first(doc, MAWPS_QUESTION_FIELDS)).strip()
    return {"question": question + _yes_no_suffix(answer), "answer": answer}


def process_docs_mawps(dataset):
    return dataset.map(mawps_doc)


# --- TabMWP ----------------------------------------------------------------------------------


def tabmwp_answer(doc: dict) -> str:
    return normalize_answer(doc["answer"])


def tabmwp_question(doc: dict) -> str:
    """As math-evaluation-harness ``parse_question`` for ``tabmwp``."""
    title = doc.get("table_title")
    title_str = f'regarding "{title}" ' if title else ""
    question = f"Read the following table {title_str}and answer a question:\n"
    question += f"{doc['table']}\n{doc['question']}"
    choices = doc.get("choices")
    if choices:  # a list (as in the TabMWP json), printed as Python prints it; a string as is
        shown = choices if isinstance(choices, str) else list(choices)
        question += f" Please select from the following options: {shown}"
    return question.strip()


def tabmwp_doc(doc: dict) -> dict:
    answer = tabmwp_answer(doc)
    return {"question": tabmwp_question(doc) + _yes_no_suffix(answer), "answer": answer}


def process_docs_tabmwp(dataset):
    return dataset.map(tabmwp_doc)


# --- GSM-Hard --------------------------------------------------------------------------------


def gsm_hard_doc(doc: dict) -> dict:
    answer = normalize_answer(doc["target"])
    return {"question": str(doc["input"]).strip(), "answer": answer}


def process_docs_gsm_hard(dataset):
    return dataset.map(gsm_hard_doc)


# --- ASDiv (CoT) -----------------------------------------------------------------------------


def asdiv_answer(raw: str) -> str:
    # harness: re.sub(r"\(.*?\)", "", answer) -> "9 (apples)" -> "9"
    return normalize_answer(re.sub(r"\(.*?\)", "", str(raw)).strip())


def asdiv_doc(doc: dict) -> dict:
    answer = asdiv_answer(doc["answer"])
    question = f"{str(doc['body']).strip()} {str(doc['question']).strip()}"
    return {"question": question + _yes_no_suffix(answer), "answer": answer}


def process_docs_asdiv(dataset):
    # harness: drop the multi-answer problems ("a; b")
    return dataset.filter(lambda doc: ";" not in str(doc["answer"])).map(asdiv_doc)
