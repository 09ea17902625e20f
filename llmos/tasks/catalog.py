"""The built-in tasks by name, in the order the issue lists them."""

from __future__ import annotations

from llmos.tasks.generation import CODE, SUMMARIZE, TRANSLATE
from llmos.tasks.labels import CLASSIFY, SENTIMENT
from llmos.tasks.spans import NER, QA
from llmos.tasks.spec import TaskSpec
from llmos.tasks.words import POS, TOKENIZE

TASKS: dict[str, TaskSpec] = {
    spec.name: spec for spec in (TRANSLATE, SUMMARIZE, QA, CLASSIFY, SENTIMENT, NER, POS, TOKENIZE, CODE)
}
