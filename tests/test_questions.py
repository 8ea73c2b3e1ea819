"""Question-set loaders: our format and the authors' format; malformed files name file and line."""

from __future__ import annotations

import textwrap
import warnings

import pytest

from selfaware.errors import DatasetError
from selfaware.evals.questions import (IgnoredJudgeWarning, load_judge_calibration, load_question_files,
                                       load_questions)
from selfaware.paths import data_dir

THEMES = {"wish", "bored", "philosophy", "money", "rule_the_world", "dinner_party", "gender_roles", "husband"}

# Structure of the authors' files (anchors, a JSON system prompt), with placeholder wording.
AUTHORS_FORMAT = """\
- id: q_one
  type: free_form_judge_0_100
  paraphrases: &one
    - |-
      First placeholder question?
  samples_per_paraphrase: &samples 100
  judge: &judge gpt-4o-2024-08-06
  judge_prompts: &prompts
    aligned: |-
      Rate it. [QUESTION START]{question}[QUESTION END] [ANSWER START]{answer}[ANSWER END] {{braces}} stay.
    coherent: |-
      Coherent? {question} / {answer}
- id: q_one_json
  type: free_form_judge_0_100
  system: Answer in JSON.
  paraphrases: *one
  samples_per_paraphrase: *samples
  judge: *judge
  judge_prompts: *prompts
"""


def write(tmp_path, text, name="questions.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_first_plot_questions_cover_the_eight_themes_in_three_forms():
    questions = load_questions(data_dir() / "em" / "first_plot_questions.yaml")
    assert {q.category for q in questions} == THEMES
    for theme in THEMES:
        forms = [q for q in questions if q.category == theme]
        assert len(forms) == 3
        assert any(q.system and "JSON" in q.system for q in forms)
        assert any(q.id.endswith("_template") and "[" in q.paraphrases[0] for q in forms)
    assert all({"aligned", "coherent"} <= set(q.judge_prompts) for q in questions)


def test_preregistered_set_is_large_and_grouped():
    questions = load_questions(data_dir() / "em" / "preregistered.yaml")
    assert 40 <= len(questions) <= 60
    assert len({q.category for q in questions}) >= 6


def test_judge_calibration_set_has_all_labels():
    rows = load_judge_calibration(data_dir() / "em" / "judge_calibration.yaml")
    labels = [r.label for r in rows]
    assert labels.count("aligned") >= 8 and labels.count("misaligned") >= 8 and labels.count("incoherent") >= 2


def test_authors_format_with_anchors_loads(tmp_path):
    questions = load_questions(write(tmp_path, AUTHORS_FORMAT))
    assert [q.id for q in questions] == ["q_one", "q_one_json"]
    assert questions[1].paraphrases == ("First placeholder question?",)
    assert questions[1].system == "Answer in JSON." and questions[1].judge == "gpt-4o-2024-08-06"
    assert questions[0].samples_per_paraphrase == 100
    assert questions[0].messages("Hi") == [{"role": "user", "content": "Hi"}]
    assert questions[1].messages("Hi")[0] == {"role": "system", "content": "Answer in JSON."}
    assert questions[1].source.endswith(":13")


@pytest.mark.parametrize("text, line, message", [
    ("- id: a\n  type: free_form_judge_0_100\n  paraphrases: [x\n", 4, "not valid YAML"),
    ("- id: a\n  type: free_form\n  paraphrases: [x]\n- id: b\n  type: free_form\n", 4, "no 'paraphrases'"),
    ("- id: a\n  type: free_form\n  paraphrases: [x]\n- id: b\n  type: multiple_choice\n  paraphrases: [y]\n", 5,
     "unknown question type"),
    ("- id: a\n  type: free_form_judge_0_100\n  paraphrases: [x]\n  judge_prompts:\n    aligned: 'no slots'\n"
     "    coherent: '{question} {answer}'\n", 5, "must be text containing"),
    ("- id: a\n  type: free_form_judge_0_100\n  paraphrases: [x]\n  judge_prompts:\n    coherent: '{question} {answer}'\n",
     4, "needs judge prompts 'aligned'"),
    ("- id: a\n  type: free_form\n  paraphrases: [x]\n  samples_per_paraphrase: many\n", 4, "positive integer"),
    ("- id: a\n  type: free_form\n  paraphrases: [x]\n- id: a\n  type: free_form\n  paraphrases: [y]\n", 4,
     "duplicate question id"),
    ("questions:\n  - id: a\n    paraphrases: [x]\n    temprature: 1\n", 4, "unknown key 'temprature'"),
    ("questions:\n  - id: a\n    paraphrases:\n      - ok\n      - ''\n", 5, "item 1"),
])
def test_malformed_files_name_file_and_line(tmp_path, text, line, message):
    path = write(tmp_path, text)
    with pytest.raises(DatasetError) as error:
        load_questions(path)
    assert f"{path}:{line}:" in str(error.value)
    assert message in str(error.value)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(DatasetError, match="no such question file"):
        load_questions(tmp_path / "absent.yaml")


def test_calibration_with_a_bad_label_names_its_line(tmp_path):
    path = write(tmp_path, "answers:\n  - id: a\n    label: aligned\n    question: q\n    answer: a\n"
                           "  - id: b\n    label: evil\n    question: q\n    answer: a\n")
    with pytest.raises(DatasetError, match=f"{path}:7: label 'evil'"):
        load_judge_calibration(path)


OUR_FORMAT = """\
questions:
  - id: own_one
    paraphrases: ["First own question?"]
  - id: q_one
    paraphrases: ["Same id as a question of the authors?"]
"""


def test_an_id_in_two_files_is_an_error_naming_both(tmp_path):
    authors, ours = write(tmp_path, AUTHORS_FORMAT, "authors.yaml"), write(tmp_path, OUR_FORMAT, "ours.yaml")
    with pytest.raises(DatasetError) as error, warnings.catch_warnings():
        warnings.simplefilter("ignore", IgnoredJudgeWarning)
        load_question_files([authors, ours])
    assert str(error.value) == f"{ours}:4: duplicate question id 'q_one' (first at {authors}:1)"


def test_a_file_listed_twice_is_an_error(tmp_path):
    ours = write(tmp_path, OUR_FORMAT.replace("q_one", "own_two"), "ours.yaml")
    with pytest.raises(DatasetError, match="ours.yaml: listed twice among the question files"):
        load_question_files([ours, tmp_path / "." / "ours.yaml"])


def test_ignored_judges_are_named_in_one_warning_per_call(tmp_path):
    authors = write(tmp_path, AUTHORS_FORMAT, "authors.yaml")
    own_judge = "    judge: local:smollm2-135m\n"
    ours = write(tmp_path, OUR_FORMAT.replace("q_one", "own_two") + own_judge, "ours.yaml")
    with pytest.warns(IgnoredJudgeWarning) as caught:
        questions = load_question_files([authors, ours])
    assert [q.id for q in questions] == ["q_one", "q_one_json", "own_one", "own_two"]
    assert len(caught) == 1
    message = str(caught[0].message)
    assert "gpt-4o-2024-08-06 by 2 questions (q_one, q_one_json)" in message
    assert "local:smollm2-135m by 1 question (own_two)" in message
    assert "own_one" not in message


def test_no_warning_when_no_question_names_a_judge(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        questions = load_question_files([data_dir() / "em" / "first_plot_questions.yaml",
                                         data_dir() / "em" / "preregistered.yaml"])
    assert len(questions) == len({q.id for q in questions})
