"""The task layer on the real engine with a tiny random-weight model: a random model cannot show
quality, so these check structure — constrained outputs always parse and stay inside their label
set, spans slice the input, POS has one tag per word — and that bad inputs get one clear error."""

from __future__ import annotations

import pytest

from llmos.config import Settings
from llmos.engine.outputs import Completion
from llmos.errors import InvalidRequest
from llmos.runtime.model_runtime import ModelRuntime, load_runtime
from llmos.tasks import TASKS, TaskRun, run_task
from llmos.tasks.context import ItemContext
from llmos.tasks.generation import extract_code, python_error
from llmos.tasks.methods import TaskMethods
from llmos.tasks.segment import words
from llmos.tasks.spec import Diagnostics, Generation
from llmos.tasks.words import UPOS

CONTEXT = 4096  # tiny_bpe_chat_folder's context (conftest.BPE_CONTEXT)


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory, tiny_bpe_chat_folder) -> ModelRuntime:
    """The byte-BPE tiny chat model loaded (the WordLevel one cannot spell JSON)."""
    loaded = load_runtime(
        tiny_bpe_chat_folder, Settings(home=tmp_path_factory.mktemp("home"), dtype="float32")
    )
    yield loaded
    loaded.close()


def assert_no_parse_failures(run: TaskRun) -> None:
    assert [r.diagnostics["parse_failed"] for r in run.results] == [False] * len(run.results)


def test_every_task_has_a_version_an_input_model_and_an_output_schema() -> None:
    assert list(TASKS) == [
        "translate",
        "summarize",
        "qa",
        "classify",
        "sentiment",
        "ner",
        "pos",
        "tokenize",
        "code",
    ]
    for name, spec in TASKS.items():
        assert spec.name == name and spec.version.isdigit() and spec.description
        assert spec.input_model.model_json_schema()["type"] == "object"
        assert spec.output_schema["type"] == "object" and spec.output_schema["required"]


def test_classify_never_leaves_the_label_set_even_at_temperature_one(runtime: ModelRuntime) -> None:
    labels = ["sports", "politics", "technology", "天气"]
    items = [{"text": f"Item {i}: something happened, 第{i}条。", "labels": labels} for i in range(20)]
    run = run_task("classify", runtime, items, temperature=1.0, seed=7)
    assert_no_parse_failures(run)
    assert all(r.output["label"] in labels and r.output["labels"] == [r.output["label"]] for r in run.results)
    multi = run_task("classify", runtime, [{**item, "multi": True} for item in items[:5]], temperature=1.0)
    assert_no_parse_failures(multi)
    for result in multi.results:
        chosen = result.output["labels"]
        assert set(chosen) <= set(labels) and len(chosen) == len(set(chosen))
        assert result.output["label"] == (chosen[0] if chosen else None)


def test_sentiment_is_one_of_three_labels_with_a_score_in_range(runtime: ModelRuntime) -> None:
    run = run_task(
        "sentiment", runtime, [{"text": "I love it."}, {"text": "这太糟糕了。"}], temperature=1.0, seed=1
    )
    assert_no_parse_failures(run)
    for result in run.results:
        assert result.output["label"] in {"positive", "negative", "neutral"}
        assert -1.0 <= result.output["score"] <= 1.0
        assert result.diagnostics["score_from"] in {"logprobs", "label"}


def test_ner_spans_always_slice_the_input(runtime: ModelRuntime) -> None:
    texts = ["Angela Merkel visited Paris in 2019.", "马云在杭州创办了阿里巴巴。"]
    run = run_task("ner", runtime, [{"text": t} for t in texts], temperature=1.0, seed=3)
    assert_no_parse_failures(run)
    for text, result in zip(texts, run.results):
        for entity in result.output["entities"]:
            assert text[entity["start"] : entity["end"]] == entity["text"]
            assert entity["label"] in {"PER", "ORG", "LOC", "MISC"}
        assert result.diagnostics["unaligned"] == len(result.output["unaligned"])


def test_pos_gives_one_tag_per_word_of_the_fixed_tokenization(runtime: ModelRuntime) -> None:
    texts = ["The cat sat on the mat.", "我喜欢北京。 It's 3.5 km!"]
    run = run_task("pos", runtime, [{"text": t} for t in texts], temperature=1.0, seed=2)
    assert_no_parse_failures(run)
    for text, result in zip(texts, run.results):
        tokens = result.output["tokens"]
        assert [(t["start"], t["end"]) for t in tokens] == words(text)
        assert all(text[t["start"] : t["end"]] == t["text"] for t in tokens)
        assert all(t["tag"] in UPOS for t in tokens)


def test_tokenize_offsets_slice_the_text_and_need_no_generation(runtime: ModelRuntime) -> None:
    text = "Hello world, 你好世界！"
    (result,) = run_task("tokenize", runtime, [{"text": text}]).results
    tokens = result.output["tokens"]
    assert [t["id"] for t in tokens] == runtime.tokenizer.encode(text, add_special_tokens=False)
    assert all(text[t["start"] : t["end"]] == t["text"] for t in tokens)
    assert [w["text"] for w in result.output["words"]] == ["Hello", "world", ",", "你好", "世界", "！"]
    assert result.usage.total_tokens == 0


def test_qa_evidence_is_a_slice_of_the_context_or_none(runtime: ModelRuntime) -> None:
    context = "Paris is the capital of France. Berlin is the capital of Germany."
    run = run_task("qa", runtime, [{"question": "What is the capital of France?", "context": context}])
    assert_no_parse_failures(run)
    evidence = run.results[0].output["evidence"]
    assert evidence is None or context[evidence["start"] : evidence["end"]] == evidence["text"]
    closed = run_task("qa", runtime, [{"question": "Why?"}], max_tokens=8).results[0]
    assert isinstance(closed.output["answer"], str) and closed.output["evidence"] is None


def test_free_text_tasks_return_their_shape_and_report_re_asks(runtime: ModelRuntime) -> None:
    translated = run_task("translate", runtime, [{"text": "Hello there.", "to": "French"}], max_tokens=8)
    out = translated.results[0]
    assert (
        out.output["source"] == "en" and out.output["target"] == "fr" and isinstance(out.output["text"], str)
    )
    assert set(out.diagnostics) >= {"parse_failed", "reasked", "unaligned", "shards", "latency_ms"}
    same = run_task("translate", runtime, [{"text": "你好，世界。", "to": "中文"}]).results[0]
    assert same.output == {"text": "你好，世界。", "source": "zh", "target": "zh"}
    summary = run_task(
        "summarize", runtime, [{"text": "The cat sat. It was happy.", "max_words": 3}], max_tokens=8
    )
    assert isinstance(summary.results[0].output["text"], str)
    code = run_task("code", runtime, [{"task": "add two numbers"}], max_tokens=16).results[0]
    assert code.output["language"] == "python" and isinstance(code.output["syntax_ok"], bool)
    if not code.output["syntax_ok"]:  # invalid Python is asked for once more, and reported
        assert code.diagnostics["reasked"] and code.diagnostics["parse_failed"]


def test_code_replies_lose_their_fences_and_python_is_checked_without_running() -> None:
    assert extract_code("Here:\n```python\nprint(1)\n```\nDone.") == "print(1)"
    assert extract_code("x = 1\n") == "x = 1"
    assert python_error("def f(:\n  pass") is not None and python_error("import os; os.remove('x')") is None


def _completion(text: str) -> Completion:
    return Completion("r", text, [], None, "stop", None, num_prompt_tokens=1, num_output_tokens=1)


def test_a_failed_check_is_asked_again_once_with_the_error(runtime: ModelRuntime) -> None:
    ctx = ItemContext("code", runtime.tokenizer, CONTEXT, True, Diagnostics())
    first = Generation([{"role": "user", "content": "write code"}], 16)

    def check(c: Completion) -> tuple[str, str | None]:
        return c.text, python_error(c.text)

    steps = ctx.ask_checked([first, first], check)
    assert steps.send(None) == [first, first]
    (again,) = steps.send([_completion("x = 1"), _completion("def (")])  # only the bad one comes back
    assert again.messages[-2] == {"role": "assistant", "content": "def ("}
    assert "not valid Python" in again.messages[-1]["content"]
    with pytest.raises(StopIteration) as done:
        steps.send([_completion("y = 2")])
    assert done.value.value == ["x = 1", "y = 2"]
    assert ctx.diagnostics.reasked and not ctx.diagnostics.parse_failed


def test_when_the_re_ask_fails_too_the_first_answer_stays_and_is_reported(runtime: ModelRuntime) -> None:
    ctx = ItemContext("code", runtime.tokenizer, CONTEXT, True, Diagnostics())
    steps = ctx.ask_checked(
        [Generation([{"role": "user", "content": "code"}], 16)], lambda c: (c.text, "bad")
    )
    steps.send(None)
    steps.send([_completion("first")])
    with pytest.raises(StopIteration) as done:
        steps.send([_completion("Sorry for the confusion.")])
    assert done.value.value == ["first"] and ctx.diagnostics.parse_failed


def test_long_inputs_are_sharded_and_offsets_map_back(runtime: ModelRuntime) -> None:
    text = " ".join(
        f"Sentence number {i} mentions Paris." for i in range(100)
    )  # more than fits with NER's output
    (result,) = run_task("ner", runtime, [{"text": text}], max_tokens=32).results
    assert result.diagnostics["shards"] > 1
    assert all(text[e["start"] : e["end"]] == e["text"] for e in result.output["entities"])
    # a 500-word summary reserves most of the context, so the text is summarised in shards, then reduced
    (summary,) = run_task("summarize", runtime, [{"text": text, "max_words": 500}], max_tokens=8).results
    assert summary.diagnostics["shards"] > 1 and isinstance(summary.output["text"], str)


@pytest.mark.parametrize(
    ("task", "item", "param", "words_in_message"),
    [
        ("nope", {"text": "x"}, "task", "known tasks: translate, summarize"),
        ("ner", {"text": "  "}, "text", "text is empty"),
        ("classify", {"text": "x", "labels": []}, "labels", "labels is empty"),
        ("classify", {"text": "x", "labels": ["a", "a"]}, "labels", "repeats 'a'"),
        ("translate", {"text": "x", "to": "klingon"}, "to", "not a language"),
        ("qa", {"question": "Why?", "context": ""}, "context", "context is empty"),
        ("summarize", {"text": "x", "max_words": 0}, "max_words", "greater than or equal to 1"),
        ("sentiment", {"text": "x", "colour": "red"}, "colour", "Extra inputs"),
        ("code", {"task": "x", "language": " "}, "language", "language is empty"),
    ],
)
def test_bad_inputs_get_one_clear_error(
    runtime: ModelRuntime, task: str, item: dict, param: str, words_in_message: str
) -> None:
    with pytest.raises(InvalidRequest, match=words_in_message) as caught:
        run_task(task, runtime, [item])
    assert caught.value.param == param


def test_one_bad_item_rejects_the_whole_batch(runtime: ModelRuntime) -> None:
    with pytest.raises(InvalidRequest, match="input 1: labels") as caught:
        run_task("classify", runtime, [{"text": "x", "labels": ["a"]}, {"text": "y", "labels": "a"}])
    assert caught.value.param == "labels"


def test_text_over_the_context_with_sharding_off_is_an_error(runtime: ModelRuntime) -> None:
    text = "A long sentence about Paris. " * 400
    with pytest.raises(InvalidRequest, match="shard=True") as caught:
        run_task("ner", runtime, [{"text": text}], shard=False)
    assert caught.value.param == "text"


def test_an_empty_batch_is_an_error(runtime: ModelRuntime) -> None:
    with pytest.raises(InvalidRequest, match="at least one"):
        run_task("sentiment", runtime, [])


class LocalModel(TaskMethods):
    def __init__(self, runtime: ModelRuntime):
        self.runtime = runtime

    def _task(self, task: str, item: dict, **options: object) -> dict:
        return run_task(task, self.runtime, [item], **options).results[0].output  # type: ignore[arg-type]


def test_the_methods_mixin_returns_typed_values(runtime: ModelRuntime) -> None:
    model = LocalModel(runtime)
    text = "Angela Merkel visited Paris."
    assert all(text[e.start : e.end] == e.text for e in model.entities(text, max_tokens=64))
    assert model.classify(text, ["a", "b"]) in {"a", "b"}
    assert set(model.classify(text, ["a", "b"], multi=True)) <= {"a", "b"}  # type: ignore[arg-type]
    assert model.sentiment(text).label in {"positive", "negative", "neutral"}
    assert [w.text for w in model.pos(text)] == ["Angela", "Merkel", "visited", "Paris", "."]
    tokens = model.tokens(text)
    assert tokens.ids == runtime.tokenizer.encode(text, add_special_tokens=False)
    assert [w.text for w in tokens.words] == ["Angela", "Merkel", "visited", "Paris", "."]
    answer = model.answer("Who?", context=text, max_tokens=64)
    assert (
        answer.evidence is None or text[answer.evidence.start : answer.evidence.end] == answer.evidence.text
    )
    assert isinstance(model.translate("Hallo", to="en", source="de", max_tokens=4), str)


def test_a_summary_over_its_limit_is_cut_to_whole_sentences_within_it() -> None:
    from llmos.tasks.generation import count_words, trim_to_words

    text = "The council met on Tuesday. Members voted to fund the library. It opens in two years."
    assert trim_to_words(text, 12) == "The council met on Tuesday. Members voted to fund the library."
    assert trim_to_words(text, 3) == "The council met"  # even the first sentence is too long
    assert trim_to_words(text, 100) == text
    assert all(count_words(trim_to_words(text, n)) <= n for n in range(1, 20))
